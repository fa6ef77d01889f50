//! `lacnet-clock`: the one door to the wall clock. Time is injected (as
//! Janus's `core/src/time.rs`): the hub asks its [`Clock`] for "now" when it
//! judges a submission (is the period started? is the revision plausible?)
//! and stamps what it stores; the agent asks it for today (embargo, ingest
//! checks) and for the revision numbers it gives releases; the CLI asks it
//! which reports are due. Production uses [`SystemClock`]; a test sets a
//! [`MockClock`] and says "the future" as `clock.advance(..)` instead of a
//! far-off year. Nothing else in lacnet reads `SystemTime`: intervals and
//! deadlines use `Instant`, which is monotonic and not a date.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use lacnet_core::Date;

/// A source of the current time.
pub trait Clock: std::fmt::Debug + Send + Sync {
    /// Milliseconds since the Unix epoch (0 before 1970).
    fn now_ms(&self) -> u64;

    /// Whole seconds since the Unix epoch.
    fn now_unix(&self) -> i64 {
        i64::try_from(self.now_ms() / 1000).unwrap_or(i64::MAX)
    }

    /// Today's date in UTC.
    fn today(&self) -> Date {
        Date::from_unix_seconds(self.now_unix())
    }

    /// Nanoseconds since the Unix epoch, for seeds and unique names that
    /// need more than millisecond resolution (a mock clock gives its
    /// milliseconds scaled).
    fn now_nanos(&self) -> u128 {
        u128::from(self.now_ms()) * 1_000_000
    }
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.now_nanos() / 1_000_000).unwrap_or(u64::MAX)
    }

    fn now_nanos(&self) -> u128 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    }
}

/// A clock that stands still until a test moves it. Clones share the time.
#[derive(Debug, Clone, Default)]
pub struct MockClock {
    ms: Arc<AtomicU64>,
}

impl MockClock {
    /// A clock showing `unix_ms`.
    pub fn at_ms(unix_ms: u64) -> MockClock {
        MockClock {
            ms: Arc::new(AtomicU64::new(unix_ms)),
        }
    }

    /// A clock showing midnight UTC at the start of `date` (`YYYY-MM-DD`).
    pub fn at_date(date: &str) -> Result<MockClock, lacnet_core::date::DateError> {
        let d = Date::parse(date)?;
        Ok(MockClock::at_ms(
            u64::try_from(d.days_since_epoch()).unwrap_or(0) * 86_400_000,
        ))
    }

    /// Moves the clock on by `by`.
    pub fn advance(&self, by: Duration) {
        let by = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.ms.fetch_add(by, Ordering::SeqCst);
    }
}

impl Clock for MockClock {
    fn now_ms(&self) -> u64 {
        self.ms.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mock_clock_stands_still_and_advances() {
        let c = MockClock::at_date("2016-06-30").unwrap();
        let shared = c.clone();
        assert_eq!(c.now_unix(), 1_467_244_800);
        shared.advance(Duration::from_secs(86_400));
        assert_eq!(c.now_unix(), 1_467_331_200);
        assert_eq!(c.today(), Date::parse("2016-07-01").unwrap());
        assert!(SystemClock.now_unix() > 1_700_000_000);
    }
}
