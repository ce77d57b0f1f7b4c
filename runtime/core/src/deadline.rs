//! Deadlines for agent steps and trials, on `embassy-time`.
//!
//! On desktop the `std` time driver is used; tests enable the `mock-time` feature (embassy's
//! `mock-driver`) to advance time deterministically. The core is `no_std`: a device without an
//! OS supplies its own embassy time driver.

use embassy_time::{Duration, Instant};

/// A point in time after which work should stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline {
    at: Instant,
}

impl Deadline {
    /// A deadline `budget` from now.
    pub fn after(budget: Duration) -> Self {
        Self {
            at: Instant::now().checked_add(budget).unwrap_or(Instant::MAX),
        }
    }

    /// A deadline `budget_ms` milliseconds from now.
    pub fn after_millis(budget_ms: u64) -> Self {
        Self::after(Duration::from_millis(budget_ms))
    }

    /// A deadline that never expires.
    pub fn never() -> Self {
        Self { at: Instant::MAX }
    }

    /// True once the deadline has passed.
    pub fn expired(&self) -> bool {
        Instant::now() >= self.at
    }

    /// Time left, zero once expired.
    pub fn remaining(&self) -> Duration {
        self.at
            .checked_duration_since(Instant::now())
            .unwrap_or(Duration::from_ticks(0))
    }
}

#[cfg(all(test, feature = "mock-time"))]
mod tests {
    use super::*;
    use embassy_time::MockDriver;

    #[test]
    fn a_deadline_expires_exactly_when_its_budget_has_elapsed() {
        let driver = MockDriver::get();
        driver.reset();
        let d = Deadline::after_millis(100);
        assert!(!d.expired());
        driver.advance(Duration::from_millis(99));
        assert!(!d.expired());
        assert_eq!(d.remaining(), Duration::from_millis(1));
        driver.advance(Duration::from_millis(1));
        assert!(d.expired());
        assert_eq!(d.remaining(), Duration::from_ticks(0));
        assert!(!Deadline::never().expired());
    }
}
