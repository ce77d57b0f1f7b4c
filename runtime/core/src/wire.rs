//! The storage and wire envelope: every record the runtime persists or sends is
//! `MAGIC (4 bytes) | kind (1 byte) | format version (u16, LE) | postcard payload`.
//!
//! The envelope lets a reader reject a file of another kind or a newer format with a clear
//! error instead of mis-decoding it. Payloads are `postcard`, which is compact, `no_std` and
//! stable for a given Rust type.

use alloc::vec::Vec;
use serde::{de::DeserializeOwned, Serialize};

/// The four bytes every Retroformer record starts with.
pub const MAGIC: [u8; 4] = *b"RFMR";

/// Header length in bytes: magic, kind, version.
pub const HEADER_LEN: usize = 7;

/// What a record holds. The byte values are part of the format and never change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum RecordKind {
    /// A [`crate::memory::ReflectionMemory`].
    Memory = 1,
    /// A [`crate::trajectory::Trajectory`].
    Trajectory = 2,
}

impl RecordKind {
    fn from_byte(b: u8) -> Option<Self> {
        match b {
            1 => Some(Self::Memory),
            2 => Some(Self::Trajectory),
            _ => None,
        }
    }
}

/// A type that is stored inside the envelope.
pub trait Record: Serialize + DeserializeOwned {
    /// The record kind written into the header.
    const KIND: RecordKind;
    /// The current format version of this record. Bump it when the Rust type changes.
    const VERSION: u16;
}

/// Why a record could not be read or written.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    /// Fewer bytes than the header.
    #[error("record is truncated: {len} bytes, the header alone needs {HEADER_LEN}")]
    Truncated {
        /// Bytes available.
        len: usize,
    },
    /// The first four bytes are not [`MAGIC`].
    #[error("not a Retroformer record (bad magic)")]
    BadMagic,
    /// The header names another record kind.
    #[error("record holds kind {found}, expected {expected:?}")]
    WrongKind {
        /// The kind byte found.
        found: u8,
        /// The kind expected by the caller.
        expected: RecordKind,
    },
    /// The header's format version is not the one this build reads.
    #[error(
        "record format version {found} is not supported (this build reads version {supported})"
    )]
    UnsupportedVersion {
        /// Version in the header.
        found: u16,
        /// Version this build reads.
        supported: u16,
    },
    /// The payload does not decode (corrupt or of another type).
    #[error("record payload is corrupt: {0}")]
    Payload(postcard::Error),
}

/// Encodes `value` with its header.
pub fn encode<T: Record>(value: &T) -> Result<Vec<u8>, WireError> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&MAGIC);
    out.push(T::KIND as u8);
    out.extend_from_slice(&T::VERSION.to_le_bytes());
    let out = postcard::to_extend(value, out).map_err(WireError::Payload)?;
    Ok(out)
}

/// Decodes a record written by [`encode`], checking magic, kind and version.
pub fn decode<T: Record>(bytes: &[u8]) -> Result<T, WireError> {
    if bytes.len() < HEADER_LEN {
        return Err(WireError::Truncated { len: bytes.len() });
    }
    if bytes[..4] != MAGIC {
        return Err(WireError::BadMagic);
    }
    match RecordKind::from_byte(bytes[4]) {
        Some(k) if k == T::KIND => {}
        _ => {
            return Err(WireError::WrongKind {
                found: bytes[4],
                expected: T::KIND,
            })
        }
    }
    let version = u16::from_le_bytes([bytes[5], bytes[6]]);
    if version != T::VERSION {
        return Err(WireError::UnsupportedVersion {
            found: version,
            supported: T::VERSION,
        });
    }
    let (value, rest) =
        postcard::take_from_bytes(&bytes[HEADER_LEN..]).map_err(WireError::Payload)?;
    if !rest.is_empty() {
        return Err(WireError::Payload(postcard::Error::DeserializeBadEncoding));
    }
    Ok(value)
}
