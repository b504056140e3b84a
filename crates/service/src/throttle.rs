//! Slows password guessing, in four ways, each refused before the password is checked
//! (which also spares the Argon2 work):
//!
//! - After `MAX_FAILURES` failed logins for one username from one address within
//!   `WINDOW`, that pair is locked for `LOCKOUT`. Keying on the pair, not the username
//!   alone, keeps an attacker elsewhere from locking a clinician out of their own ward.
//! - An account's failures from anywhere delay its next attempt, doubling from the
//!   third failure up to `MOST_ACCOUNT_DELAY`: guessing one password from many addresses
//!   is slowed without letting anyone lock the account.
//! - Each address may fail `ADDRESS_FAILURE_BURST` times, and then once every
//!   `ADDRESS_FAILURE_EVERY`: trying many usernames from one address (spraying) is slowed.
//! - All addresses together may try `GLOBAL_ATTEMPT_BURST` logins, and then
//!   `GLOBAL_ATTEMPTS_PER_SECOND`: a flood from many addresses cannot take the server.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const MAX_FAILURES: u32 = 5;
const WINDOW: Duration = Duration::from_secs(15 * 60);
const LOCKOUT: Duration = Duration::from_secs(15 * 60);
/// Failures of an account before its attempts are delayed, and the longest delay.
const ACCOUNT_FREE_FAILURES: u32 = 2;
const MOST_ACCOUNT_DELAY: Duration = Duration::from_secs(30);
const ADDRESS_FAILURE_BURST: f64 = 30.0;
const ADDRESS_FAILURE_EVERY: Duration = Duration::from_secs(10);
const GLOBAL_ATTEMPT_BURST: f64 = 200.0;
const GLOBAL_ATTEMPTS_PER_SECOND: f64 = 50.0;
/// Bounds memory under a spray of usernames; expired entries go first.
const MAX_TRACKED: usize = 100_000;

/// A token bucket: `capacity` at most, refilled at `per_second`.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl Bucket {
    fn full(capacity: f64, now: Instant) -> Self {
        Self {
            tokens: capacity,
            updated: now,
        }
    }

    fn refill(&mut self, now: Instant, capacity: f64, per_second: f64) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * per_second).min(capacity);
        self.updated = now;
    }

    /// How long until a token is there, if it is not now.
    fn wait(&mut self, now: Instant, capacity: f64, per_second: f64) -> Option<Duration> {
        self.refill(now, capacity, per_second);
        (self.tokens < 1.0).then(|| Duration::from_secs_f64((1.0 - self.tokens) / per_second))
    }

    fn take(&mut self, now: Instant, capacity: f64, per_second: f64) {
        self.refill(now, capacity, per_second);
        self.tokens = (self.tokens - 1.0).max(0.0);
    }
}

/// The bucket of `key`, made full if there is none. At `MAX_TRACKED` entries the full
/// buckets go first: a full bucket is the same as none.
fn bucket_of<K: std::hash::Hash + Eq>(
    buckets: &mut HashMap<K, Bucket>,
    key: K,
    now: Instant,
    capacity: f64,
    per_second: f64,
) -> &mut Bucket {
    if buckets.len() >= MAX_TRACKED {
        buckets.retain(|_, bucket| {
            bucket.refill(now, capacity, per_second);
            bucket.tokens < capacity
        });
    }
    buckets
        .entry(key)
        .or_insert_with(|| Bucket::full(capacity, now))
}

/// An account's recent failures, from any address.
#[derive(Debug, Clone, Copy)]
struct AccountFailures {
    failures: u32,
    last: Instant,
}

impl AccountFailures {
    fn next_allowed(&self) -> Instant {
        let over = self.failures.saturating_sub(ACCOUNT_FREE_FAILURES);
        if over == 0 {
            return self.last;
        }
        let delay = Duration::from_secs(1u64 << (over - 1).min(16)).min(MOST_ACCOUNT_DELAY);
        self.last + delay
    }
}

#[derive(Debug, Clone, Copy)]
struct Attempts {
    failures: u32,
    first_failure: Instant,
    locked_until: Option<Instant>,
}

/// Failed-login bookkeeping, shared by all requests, behind one lock: a login takes it
/// once to decide and once to record, not once per rule.
#[derive(Debug, Default)]
pub struct LoginThrottle {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    attempts: HashMap<(String, String), Attempts>,
    accounts: HashMap<String, AccountFailures>,
    addresses: HashMap<String, Bucket>,
    global: Option<Bucket>,
}

fn per_second(every: Duration) -> f64 {
    1.0 / every.as_secs_f64()
}

fn key(username: &str, remote: &str) -> (String, String) {
    (username.to_lowercase(), remote.to_owned())
}

impl LoginThrottle {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // The bookkeeping stays usable after a panic elsewhere: at worst one count is off.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `Some(wait)` while an attempt to log in as `username` from `remote` must wait; an
    /// attempt that may go ahead is counted against the global limit.
    pub fn locked(&self, username: &str, remote: &str, now: Instant) -> Option<Duration> {
        let mut state = self.state();
        let pair = state
            .attempts
            .get(&key(username, remote))
            .and_then(|attempts| attempts.locked_until)
            .filter(|until| *until > now)
            .map(|until| until - now);
        let account = state
            .accounts
            .get(&username.to_lowercase())
            .map(AccountFailures::next_allowed)
            .filter(|next| *next > now)
            .map(|next| next - now);
        let address = state.addresses.get_mut(remote).and_then(|bucket| {
            bucket.wait(
                now,
                ADDRESS_FAILURE_BURST,
                per_second(ADDRESS_FAILURE_EVERY),
            )
        });
        if let Some(wait) = pair.or(account).or(address) {
            return Some(wait);
        }
        let bucket = state
            .global
            .get_or_insert_with(|| Bucket::full(GLOBAL_ATTEMPT_BURST, now));
        if let Some(wait) = bucket.wait(now, GLOBAL_ATTEMPT_BURST, GLOBAL_ATTEMPTS_PER_SECOND) {
            return Some(wait);
        }
        bucket.take(now, GLOBAL_ATTEMPT_BURST, GLOBAL_ATTEMPTS_PER_SECOND);
        None
    }

    /// Records a failure; returns true when this failure starts a lockout.
    pub fn failed(&self, username: &str, remote: &str, now: Instant) -> bool {
        let mut state = self.state();
        let State {
            attempts,
            accounts,
            addresses,
            ..
        } = &mut *state;
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
        let locks = entry.failures >= MAX_FAILURES && entry.locked_until.is_none();
        if locks {
            entry.locked_until = Some(now + LOCKOUT);
        }
        if accounts.len() >= MAX_TRACKED {
            accounts.retain(|_, account| now.duration_since(account.last) < WINDOW);
        }
        let account = accounts
            .entry(username.to_lowercase())
            .or_insert(AccountFailures {
                failures: 0,
                last: now,
            });
        if now.duration_since(account.last) >= WINDOW {
            account.failures = 0;
        }
        account.failures += 1;
        account.last = now;
        let rate = per_second(ADDRESS_FAILURE_EVERY);
        bucket_of(
            addresses,
            remote.to_owned(),
            now,
            ADDRESS_FAILURE_BURST,
            rate,
        )
        .take(now, ADDRESS_FAILURE_BURST, rate);
        locks
    }

    /// A successful login clears the account's record (not the address's).
    pub fn succeeded(&self, username: &str, remote: &str) {
        let mut state = self.state();
        state.attempts.remove(&key(username, remote));
        state.accounts.remove(&username.to_lowercase());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_failures_lock_the_pair_for_a_while() {
        let throttle = LoginThrottle::default();
        let start = Instant::now();
        // Failures spaced past the account's own delay, to see the pair's lockout alone.
        let step = MOST_ACCOUNT_DELAY;
        for attempt in 1..=4 {
            let at = start + step * attempt;
            assert!(
                !throttle.failed("Nora", "10.0.0.1", at),
                "attempt {attempt}"
            );
            assert_eq!(throttle.locked("nora", "10.0.0.1", at + step), None);
        }
        let at = start + step * 5;
        assert!(throttle.failed("nora", "10.0.0.1", at));
        assert!(throttle.locked("NORA", "10.0.0.1", at + step).is_some());
        assert_eq!(
            throttle.locked("nora", "10.0.0.2", at + step),
            None,
            "other addresses are not locked"
        );
        assert_eq!(
            throttle.locked("nora", "10.0.0.1", at + LOCKOUT),
            None,
            "the lockout ends"
        );
    }

    #[test]
    fn an_accounts_failures_from_anywhere_delay_its_next_attempt() {
        let throttle = LoginThrottle::default();
        let start = Instant::now();
        // Two failures cost nothing; from the third the wait doubles.
        throttle.failed("nora", "10.0.0.1", start);
        throttle.failed("nora", "10.0.0.2", start);
        assert_eq!(throttle.locked("nora", "10.0.0.9", start), None);
        throttle.failed("nora", "10.0.0.3", start);
        assert_eq!(
            throttle.locked("nora", "10.0.0.9", start),
            Some(Duration::from_secs(1))
        );
        throttle.failed("nora", "10.0.0.4", start);
        assert_eq!(
            throttle.locked("NORA", "10.0.0.9", start),
            Some(Duration::from_secs(2))
        );
        for address in 5..40 {
            throttle.failed("nora", &format!("10.0.0.{address}"), start);
        }
        assert_eq!(
            throttle.locked("nora", "10.0.0.9", start),
            Some(MOST_ACCOUNT_DELAY),
            "the delay has a ceiling, so nobody can lock the account"
        );
        assert_eq!(
            throttle.locked("ben", "10.0.0.9", start),
            None,
            "others are not delayed"
        );
        throttle.succeeded("nora", "10.0.0.9");
        assert_eq!(throttle.locked("nora", "10.0.0.9", start), None);
    }

    #[test]
    fn an_address_that_tries_many_usernames_is_slowed() {
        let throttle = LoginThrottle::default();
        let start = Instant::now();
        for user in 0..30 {
            assert_eq!(
                throttle.locked(&format!("user{user}"), "10.0.0.1", start),
                None
            );
            throttle.failed(&format!("user{user}"), "10.0.0.1", start);
        }
        let wait = throttle
            .locked("user99", "10.0.0.1", start)
            .expect("slowed");
        assert!(wait <= ADDRESS_FAILURE_EVERY, "{wait:?}");
        assert_eq!(throttle.locked("user99", "10.0.0.2", start), None);
        assert_eq!(
            throttle.locked("user99", "10.0.0.1", start + ADDRESS_FAILURE_EVERY),
            None,
            "one more attempt per interval"
        );
    }

    #[test]
    fn all_addresses_together_have_a_rate() {
        let throttle = LoginThrottle::default();
        let start = Instant::now();
        let admitted = (0..1000)
            .filter(|n| {
                throttle
                    .locked(
                        &format!("user{n}"),
                        &format!("10.1.{}.{}", n / 250, n % 250),
                        start,
                    )
                    .is_none()
            })
            .count();
        assert_eq!(admitted, GLOBAL_ATTEMPT_BURST as usize);
        let later = start + Duration::from_secs(1);
        let admitted = (0..1000)
            .filter(|n| {
                throttle
                    .locked(&format!("late{n}"), "10.2.0.1", later)
                    .is_none()
            })
            .count();
        assert_eq!(admitted, GLOBAL_ATTEMPTS_PER_SECOND as usize);
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

/// Invitations one account may send at once, and how fast it earns more: each is an
/// e-mail in Wardline's name to an address the inviter chose, so an account cannot make
/// Wardline a mass mailer. A patient or a clinic needs a few a week.
const INVITATION_BURST: f64 = 20.0;
const INVITATION_EVERY: Duration = Duration::from_secs(60 * 60);

/// Limits the specialist invitations each account sends (in memory: a restart gives
/// every account its burst again, which bounds the harm to one burst per restart).
#[derive(Debug, Default)]
pub struct InvitationThrottle {
    inviters: Mutex<HashMap<wardline_domain::UserId, Bucket>>,
}

impl InvitationThrottle {
    /// Takes one invitation from the account's allowance, or says how long until it has
    /// one.
    pub fn take(&self, inviter: wardline_domain::UserId) -> Result<(), Duration> {
        let now = Instant::now();
        let rate = per_second(INVITATION_EVERY);
        let mut inviters = self
            .inviters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let bucket = bucket_of(&mut inviters, inviter, now, INVITATION_BURST, rate);
        if let Some(wait) = bucket.wait(now, INVITATION_BURST, rate) {
            return Err(wait);
        }
        bucket.take(now, INVITATION_BURST, rate);
        Ok(())
    }
}
