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
//!
//! The first two are decided from the failed logins stored in the database, so they hold
//! across every worker of an installation and across restarts; the last two are each
//! process's own protection of its CPU.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

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
/// Bounds memory under a spray of addresses; full buckets go first.
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
/// How far back failed logins matter: a lockout can begin at the end of a window and
/// last its whole length.
pub const LOOK_BACK: Duration = Duration::from_secs(WINDOW.as_secs() + LOCKOUT.as_secs());

fn chrono_of(duration: Duration) -> chrono::Duration {
    chrono::Duration::from_std(duration).unwrap_or(chrono::Duration::MAX)
}

/// Failed logins before this time no longer matter at `now` (see [`LOOK_BACK`]).
pub fn looked_back_to(now: DateTime<Utc>) -> DateTime<Utc> {
    now - chrono_of(LOOK_BACK)
}

/// Until when one account's failed logins from one address (oldest first) lock that
/// pair, if they do: `MAX_FAILURES` within `WINDOW` of the first lock it for `LOCKOUT`
/// from the last of them; a window with no lockout in force starts again.
pub fn pair_locked_until(failures: &[DateTime<Utc>]) -> Option<DateTime<Utc>> {
    let (window, lockout) = (chrono_of(WINDOW), chrono_of(LOCKOUT));
    let mut count = 0;
    let mut first: Option<DateTime<Utc>> = None;
    let mut locked_until: Option<DateTime<Utc>> = None;
    for &at in failures {
        let restart = first.is_none_or(|first| {
            at - first >= window && locked_until.is_none_or(|until| until <= at)
        });
        if restart {
            count = 0;
            first = Some(at);
            locked_until = None;
        }
        count += 1;
        if count >= MAX_FAILURES && locked_until.is_none() {
            locked_until = Some(at + lockout);
        }
    }
    locked_until
}

/// Whether the newest of these failures (oldest first) is the one that locked the pair.
pub fn newest_failure_locks(failures: &[DateTime<Utc>]) -> bool {
    failures
        .last()
        .is_some_and(|&newest| pair_locked_until(failures) == Some(newest + chrono_of(LOCKOUT)))
}

/// When an account may try again after its failed logins from anywhere (oldest first):
/// at once after `ACCOUNT_FREE_FAILURES`, then after a wait that doubles with each
/// failure up to `MOST_ACCOUNT_DELAY`. A gap of `WINDOW` forgives the earlier ones.
pub fn account_next_allowed(failures: &[DateTime<Utc>]) -> Option<DateTime<Utc>> {
    let window = chrono_of(WINDOW);
    let mut count = 0u32;
    let mut last: Option<DateTime<Utc>> = None;
    for &at in failures {
        if last.is_some_and(|last| at - last >= window) {
            count = 0;
        }
        count += 1;
        last = Some(at);
    }
    let over = count.saturating_sub(ACCOUNT_FREE_FAILURES);
    let delay = Duration::from_secs(1u64 << over.saturating_sub(1).min(16)).min(MOST_ACCOUNT_DELAY);
    last.filter(|_| over > 0)
        .map(|last| last + chrono_of(delay))
}

/// The part of the login throttle each process keeps for itself: how fast one address
/// may fail, and how many logins all addresses together may try. They protect the
/// process's CPU from floods (a password check is deliberately slow); the lockouts of an
/// account, which must hold across workers, are decided from the failures stored in the
/// database ([`pair_locked_until`], [`account_next_allowed`]).
#[derive(Debug, Default)]
pub struct LoginThrottle {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    addresses: HashMap<String, Bucket>,
    global: Option<Bucket>,
}

fn per_second(every: Duration) -> f64 {
    1.0 / every.as_secs_f64()
}

impl LoginThrottle {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// How long `remote` must wait before it may try a login, if it must; an attempt that
    /// may go ahead takes its place in the overall rate.
    pub fn locked(&self, remote: &str, now: Instant) -> Option<Duration> {
        let mut state = self.state();
        let address = state.addresses.get_mut(remote).and_then(|bucket| {
            bucket.wait(
                now,
                ADDRESS_FAILURE_BURST,
                per_second(ADDRESS_FAILURE_EVERY),
            )
        });
        if let Some(wait) = address {
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

    /// Counts a failed login from `remote`.
    pub fn failed(&self, remote: &str, now: Instant) {
        let mut state = self.state();
        let rate = per_second(ADDRESS_FAILURE_EVERY);
        bucket_of(
            &mut state.addresses,
            remote.to_owned(),
            now,
            ADDRESS_FAILURE_BURST,
            rate,
        )
        .take(now, ADDRESS_FAILURE_BURST, rate);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + seconds, 0).expect("a valid time")
    }

    fn seconds(duration: Duration) -> i64 {
        duration.as_secs() as i64
    }

    #[test]
    fn five_failures_lock_the_pair_for_a_while() {
        let step = seconds(MOST_ACCOUNT_DELAY);
        let failures: Vec<_> = (1..=4).map(|n| at(step * n)).collect();
        assert_eq!(pair_locked_until(&failures), None);
        let mut failures = failures;
        failures.push(at(step * 5));
        assert!(newest_failure_locks(&failures));
        assert_eq!(
            pair_locked_until(&failures),
            Some(at(step * 5 + seconds(LOCKOUT)))
        );
        // A failure while locked does not move the end.
        failures.push(at(step * 6));
        assert!(!newest_failure_locks(&failures));
        assert_eq!(
            pair_locked_until(&failures),
            Some(at(step * 5 + seconds(LOCKOUT)))
        );
    }

    #[test]
    fn old_failures_start_a_new_window() {
        let mut failures: Vec<_> = (0..4).map(|_| at(0)).collect();
        failures.push(at(seconds(WINDOW)));
        assert_eq!(pair_locked_until(&failures), None, "a new window starts");
        failures.extend((0..3).map(|_| at(seconds(WINDOW))));
        assert_eq!(pair_locked_until(&failures), None, "four in the new window");
        failures.push(at(seconds(WINDOW) + 1));
        assert!(
            pair_locked_until(&failures).is_some(),
            "five in the new window"
        );
    }

    #[test]
    fn an_accounts_failures_from_anywhere_delay_its_next_attempt() {
        // Two failures cost nothing; from the third the wait doubles.
        assert_eq!(account_next_allowed(&[at(0), at(0)]), None);
        assert_eq!(account_next_allowed(&[at(0), at(0), at(0)]), Some(at(1)));
        assert_eq!(
            account_next_allowed(&[at(0), at(0), at(0), at(0)]),
            Some(at(2))
        );
        let many: Vec<_> = (0..40).map(|_| at(0)).collect();
        assert_eq!(
            account_next_allowed(&many),
            Some(at(seconds(MOST_ACCOUNT_DELAY))),
            "the delay has a ceiling, so nobody can lock the account"
        );
        let mut forgiven = many;
        forgiven.push(at(seconds(WINDOW)));
        assert_eq!(
            account_next_allowed(&forgiven),
            None,
            "a quiet window forgives"
        );
    }

    #[test]
    fn an_address_that_tries_many_usernames_is_slowed() {
        let throttle = LoginThrottle::default();
        let start = Instant::now();
        for _ in 0..30 {
            assert_eq!(throttle.locked("10.0.0.1", start), None);
            throttle.failed("10.0.0.1", start);
        }
        let wait = throttle.locked("10.0.0.1", start).expect("slowed");
        assert!(wait <= ADDRESS_FAILURE_EVERY, "{wait:?}");
        assert_eq!(throttle.locked("10.0.0.2", start), None);
        assert_eq!(
            throttle.locked("10.0.0.1", start + ADDRESS_FAILURE_EVERY),
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
                    .locked(&format!("10.1.{}.{}", n / 250, n % 250), start)
                    .is_none()
            })
            .count();
        assert_eq!(admitted, GLOBAL_ATTEMPT_BURST as usize);
        let later = start + Duration::from_secs(1);
        let admitted = (0..1000)
            .filter(|_| throttle.locked("10.2.0.1", later).is_none())
            .count();
        assert_eq!(admitted, GLOBAL_ATTEMPTS_PER_SECOND as usize);
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
