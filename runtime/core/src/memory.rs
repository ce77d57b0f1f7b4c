//! Bounded reflection memory (Reflexion's "long-term memory").
//!
//! Holds the most recent reflections, oldest dropped first. The capacity is chosen at run time
//! (the papers use 1 to 3) up to the compile-time bound [`MAX_REFLECTIONS`], so the memory can
//! never grow without bound on a device, and it lives in a `heapless` deque.

use alloc::string::String;
use alloc::vec::Vec;
use heapless::Deque;
use serde::{Deserialize, Serialize};

use crate::wire::{Record, RecordKind};

/// The largest capacity a memory can be configured with.
pub const MAX_REFLECTIONS: usize = 8;

/// Why a memory could not be created.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MemoryError {
    /// Capacity 0 or above [`MAX_REFLECTIONS`].
    #[error("memory capacity must be between 1 and {MAX_REFLECTIONS}, got {0}")]
    BadCapacity(usize),
}

/// The last `capacity` reflections, oldest first.
#[derive(Debug, Clone)]
pub struct ReflectionMemory {
    capacity: usize,
    items: Deque<String, MAX_REFLECTIONS>,
}

impl ReflectionMemory {
    /// An empty memory that keeps at most `capacity` reflections.
    pub fn new(capacity: usize) -> Result<Self, MemoryError> {
        if capacity == 0 || capacity > MAX_REFLECTIONS {
            return Err(MemoryError::BadCapacity(capacity));
        }
        Ok(Self {
            capacity,
            items: Deque::new(),
        })
    }

    /// The configured capacity.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Number of reflections held.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// True when no reflection is held.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Adds a reflection, dropping the oldest ones when full. Returns what was dropped.
    pub fn push(&mut self, reflection: String) -> Option<String> {
        let mut dropped = None;
        while self.items.len() >= self.capacity {
            dropped = self.items.pop_front();
        }
        // Cannot fail: the loop above leaves room (capacity <= MAX_REFLECTIONS).
        let _ = self.items.push_back(reflection);
        dropped
    }

    /// The reflections, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.items.iter().map(String::as_str)
    }

    /// Removes every reflection.
    pub fn clear(&mut self) {
        self.items.clear();
    }
}

impl PartialEq for ReflectionMemory {
    fn eq(&self, other: &Self) -> bool {
        self.capacity == other.capacity && self.items.iter().eq(other.items.iter())
    }
}

impl Eq for ReflectionMemory {}

#[derive(Serialize, Deserialize)]
struct MemoryRepr {
    capacity: u8,
    items: Vec<String>,
}

impl Serialize for ReflectionMemory {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        MemoryRepr {
            capacity: self.capacity as u8,
            items: self.items.iter().cloned().collect(),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for ReflectionMemory {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let repr = MemoryRepr::deserialize(d)?;
        let mut mem =
            ReflectionMemory::new(repr.capacity as usize).map_err(serde::de::Error::custom)?;
        if repr.items.len() > mem.capacity {
            return Err(serde::de::Error::custom(
                "more reflections than the capacity",
            ));
        }
        for item in repr.items {
            mem.push(item);
        }
        Ok(mem)
    }
}

impl Record for ReflectionMemory {
    const KIND: RecordKind = RecordKind::Memory;
    const VERSION: u16 = 1;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{decode, encode, WireError};
    use alloc::string::ToString;

    #[test]
    fn oldest_reflection_is_dropped_first_when_full() {
        let mut m = ReflectionMemory::new(2).unwrap();
        assert_eq!(m.push("a".into()), None);
        assert_eq!(m.push("b".into()), None);
        assert_eq!(m.push("c".into()), Some("a".to_string()));
        assert_eq!(m.iter().collect::<Vec<_>>(), ["b", "c"]);
    }

    #[test]
    fn capacity_outside_the_bound_is_rejected() {
        assert_eq!(ReflectionMemory::new(0), Err(MemoryError::BadCapacity(0)));
        assert!(ReflectionMemory::new(MAX_REFLECTIONS + 1).is_err());
        assert!(ReflectionMemory::new(MAX_REFLECTIONS).is_ok());
    }

    #[test]
    fn memory_round_trips_through_the_envelope() {
        let mut m = ReflectionMemory::new(3).unwrap();
        m.push("first plan".into());
        m.push("second plan, with ünïcode".into());
        let bytes = encode(&m).unwrap();
        assert_eq!(&bytes[..4], b"RFMR");
        let back: ReflectionMemory = decode(&bytes).unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn a_record_with_more_items_than_its_capacity_is_rejected() {
        let repr = MemoryRepr {
            capacity: 1,
            items: alloc::vec!["a".into(), "b".into()],
        };
        let mut bytes = alloc::vec::Vec::from(crate::wire::MAGIC);
        bytes.push(RecordKind::Memory as u8);
        bytes.extend_from_slice(&1u16.to_le_bytes());
        bytes.extend_from_slice(&postcard::to_allocvec(&repr).unwrap());
        assert!(matches!(
            decode::<ReflectionMemory>(&bytes),
            Err(WireError::Payload(_))
        ));
    }

    #[test]
    fn truncated_wrong_kind_and_future_version_are_distinct_errors() {
        let m = ReflectionMemory::new(1).unwrap();
        let bytes = encode(&m).unwrap();
        assert_eq!(
            decode::<ReflectionMemory>(&bytes[..3]),
            Err(WireError::Truncated { len: 3 })
        );
        let mut wrong = bytes.clone();
        wrong[4] = RecordKind::Trajectory as u8;
        assert!(matches!(
            decode::<ReflectionMemory>(&wrong),
            Err(WireError::WrongKind { found: 2, .. })
        ));
        let mut future = bytes.clone();
        future[5] = 99;
        assert!(matches!(
            decode::<ReflectionMemory>(&future),
            Err(WireError::UnsupportedVersion { found: 99, .. })
        ));
        let mut magic = bytes;
        magic[0] = b'X';
        assert_eq!(decode::<ReflectionMemory>(&magic), Err(WireError::BadMagic));
    }
}
