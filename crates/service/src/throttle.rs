//! Slows password guessing. After `MAX_FAILURES` failed logins for one username from one
//! address within `WINDOW`, that pair is refused for `LOCKOUT` without checking the
//! password (which also spares the Argon2 work). Keying on the pair, not the username
//! alone, keeps an attacker elsewhere from locking a clinician out of their own ward.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const MAX_FAILURES: u32 = 5;
const WINDOW: Duration = Duration::from_secs(15 * 60);
const LOCKOUT: Duration = Duration::from_secs(15 * 60);
/// Bounds memory under a spray of usernames; expired entries go first.
const MAX_TRACKED: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Attempts {
    failures: u32,
    first_failure: Instant,
    locked_until: Option<Instant>,
}

/// Failed-login bookkeeping, shared by all requests.
#[derive(Debug, Default)]
pub struct LoginThrottle {
    attempts: Mutex<HashMap<(String, String), Attempts>>,
}

fn key(username: &str, remote: &str) -> (String, String) {
    (username.to_lowercase(), remote.to_owned())
}

impl LoginThrottle {
    /// `Some(wait)` while this username and address are locked out.
    pub fn locked(&self, username: &str, remote: &str, now: Instant) -> Option<Duration> {
        let attempts = self.attempts.lock().ok()?;
        let entry = attempts.get(&key(username, remote))?;
        entry
            .locked_until
            .filter(|until| *until > now)
            .map(|until| until - now)
    }

    /// Records a failure; returns true when this failure starts a lockout.
    pub fn failed(&self, username: &str, remote: &str, now: Instant) -> bool {
        let Ok(mut attempts) = self.attempts.lock() else {
            return false;
        };
        if attempts.len() >= MAX_TRACKED {
            attempts.retain(|_, entry| {
                now.duration_since(entry.first_failure) < WINDOW
                    || entry.locked_until.is_some_and(|until| until > now)
            });
        }
        let entry = attempts.entry(key(username, remote)).or_insert(Attempts {
            failures: 0,
            first_failure: now,
            locked_until: None,
        });
        if now.duration_since(entry.first_failure) >= WINDOW
            && entry.locked_until.is_none_or(|until| until <= now)
        {
            *entry = Attempts {
                failures: 0,
                first_failure: now,
                locked_until: None,
            };
        }
        entry.failures += 1;
        if entry.failures >= MAX_FAILURES && entry.locked_until.is_none() {
            entry.locked_until = Some(now + LOCKOUT);
            return true;
        }
        false
    }

    /// A successful login clears the record.
    pub fn succeeded(&self, username: &str, remote: &str) {
        if let Ok(mut attempts) = self.attempts.lock() {
            attempts.remove(&key(username, remote));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_failures_lock_the_pair_for_a_while() {
        let throttle = LoginThrottle::default();
        let start = Instant::now();
        for attempt in 1..=4 {
            assert!(
                !throttle.failed("Nora", "10.0.0.1", start),
                "attempt {attempt}"
            );
            assert_eq!(throttle.locked("nora", "10.0.0.1", start), None);
        }
        assert!(throttle.failed("nora", "10.0.0.1", start));
        assert!(throttle.locked("NORA", "10.0.0.1", start).is_some());
        assert_eq!(
            throttle.locked("nora", "10.0.0.2", start),
            None,
            "other addresses are not locked"
        );
        assert_eq!(
            throttle.locked("nora", "10.0.0.1", start + LOCKOUT),
            None,
            "the lockout ends"
        );
    }

    #[test]
    fn old_failures_and_successes_reset_the_count() {
        let throttle = LoginThrottle::default();
        let start = Instant::now();
        for _ in 0..4 {
            throttle.failed("ben", "::1", start);
        }
        assert!(
            !throttle.failed("ben", "::1", start + WINDOW),
            "a new window starts"
        );
        for _ in 0..3 {
            throttle.failed("ben", "::1", start + WINDOW);
        }
        throttle.succeeded("ben", "::1");
        assert!(!throttle.failed("ben", "::1", start + WINDOW));
        assert_eq!(throttle.locked("ben", "::1", start + WINDOW), None);
    }
}
