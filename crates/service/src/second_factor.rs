//! A second factor for logging in: one-time codes from an authenticator app (TOTP, RFC
//! 6238: HMAC-SHA-1, six digits, 30-second steps, the codes of one step either side
//! accepted for clocks that drift). Any account may set one up; the roles in
//! [`crate::ServiceSettings::second_factor_roles`] (administrators, by default) must, and
//! until they have, their sessions may do no more than an account that must change its
//! password.
//!
//! The secret is sealed with a key derived from the notification key (kept outside the
//! data folder) and bound to the account's id, so neither a copy of the database nor a
//! secret moved to another account gives anyone codes. Each code is accepted once: the
//! step of the last code accepted is stored, and a code of that step or an earlier one
//! is refused.

use serde::Serialize;
use totp_rs::{Algorithm, Builder, Totp};
use wardline_domain::UserId;
use wardline_store::{AuditOutcome, SecondFactorSecret, User};

use crate::Wardline;
use crate::actor::{Actor, Person};
use crate::error::Error;

/// The name authenticator apps show beside the account name.
const ISSUER: &str = "Wardline";
/// 160 bits, the length RFC 4226 recommends and authenticator apps expect.
const SECRET_BYTES: usize = 20;
const DIGITS: usize = 6;
const STEP_SECONDS: u64 = 30;

/// What an authenticator app needs to produce an account's codes: shown once, when the
/// second factor is being set up.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Serialize)]
pub struct SecondFactorSetup {
    /// The secret in base 32, for typing into an app that cannot scan.
    pub secret: String,
    /// An `otpauth://totp/…` address holding the secret and the account name, for a QR
    /// code.
    pub otpauth_uri: String,
    /// Digits per code.
    pub digits: usize,
    /// Seconds each code lasts.
    pub period_seconds: u64,
}

impl std::fmt::Debug for SecondFactorSetup {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("SecondFactorSetup(…)")
    }
}

/// A code as typed: six digits, spaces allowed between them (apps show "123 456").
pub fn parse_code(code: &str) -> Result<String, Error> {
    let digits: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    if digits.len() == DIGITS && digits.chars().all(|c| c.is_ascii_digit()) {
        Ok(digits)
    } else {
        Err(Error::invalid(
            "one_time_code",
            "six digits, from the authenticator app",
        ))
    }
}

fn totp(secret: Vec<u8>, username: &str) -> Result<Totp, Error> {
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(DIGITS as u8)
        .with_skew(1)
        .with_step_duration(STEP_SECONDS)
        .with_secret(secret)
        .with_account_name(username)
        .with_issuer(Some(ISSUER))
        .build()
        .map_err(|error| Error::Internal(format!("a TOTP secret: {error}")))
}

/// A code that does not confirm a second factor being set up: well formed, but not proof
/// of holding the key (as a wrong current password at a password change). Not
/// `BadOneTimeCode` (401): the caller is signed in, and their session goes on.
fn wrong_code() -> Error {
    Error::not_permitted(
        "one_time_code",
        "is not the authenticator app's current code for the key just shown (or was used already)",
    )
}

/// Seconds since the Unix epoch, as TOTP counts time.
fn unix_seconds(now: chrono::DateTime<chrono::Utc>) -> u64 {
    u64::try_from(now.timestamp()).unwrap_or(0)
}

impl Wardline {
    /// The sealer for second-factor secrets: only a server with its notification key
    /// (one running the alarm engine) can set up or check them.
    fn second_factor_sealer(&self) -> Result<wardline_alarms::Sealer, Error> {
        let alarms = self.alarm_service().ok_or_else(|| {
            Error::Internal("second factors need the server's notification key".into())
        })?;
        alarms
            .sealer()
            .for_purpose("account second factors")
            .map_err(|error| Error::Internal(error.to_string()))
    }

    fn open_secret(&self, user: UserId, secret: &SecondFactorSecret) -> Result<Vec<u8>, Error> {
        self.second_factor_sealer()?
            .open_bound(&secret.sealed, user.to_string().as_bytes())
            .map_err(|_| Error::Internal("a second-factor secret does not open".into()))
    }

    /// The time step of `code` if it is one of the secret's codes now (within a step
    /// either side) and later than the last code accepted.
    pub(crate) fn code_step(
        &self,
        user: &User,
        secret: &SecondFactorSecret,
        code: &str,
    ) -> Result<Option<i64>, Error> {
        let code = parse_code(code)?;
        let totp = totp(self.open_secret(user.id, secret)?, &user.username)?;
        let step = totp
            .check(&code, unix_seconds(self.now()))
            .and_then(|step| i64::try_from(step).ok());
        Ok(step.filter(|step| secret.last_step.is_none_or(|last| *step > last)))
    }

    /// Whether the account's role must have a second factor.
    pub fn second_factor_missing(&self, user: &User) -> bool {
        !user.second_factor && self.settings.second_factor_roles.contains(&user.role)
    }

    /// Starts setting up the caller's second factor: a new secret, shown this once, which
    /// logging in asks for once [`Wardline::confirm_second_factor`] has seen one of its
    /// codes. Starting again replaces a secret not yet confirmed; one that is confirmed
    /// stays until an administrator resets it, so a session left open cannot swap it.
    pub async fn begin_second_factor(&self, person: &Person) -> Result<SecondFactorSetup, Error> {
        if person.user.password_change_required {
            return Err(Error::PasswordChangeRequired);
        }
        if person.user.second_factor {
            return Err(Error::Conflict(
                "this account has a second factor; an administrator can reset it".into(),
            ));
        }
        let mut secret = vec![0u8; SECRET_BYTES];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut secret)
            .map_err(|_| Error::Internal("no randomness".into()))?;
        let totp = totp(secret.clone(), &person.user.username)?;
        let setup = SecondFactorSetup {
            secret: totp.secret().to_base32(),
            otpauth_uri: totp
                .to_url()
                .map_err(|error| Error::Internal(error.to_string()))?,
            digits: DIGITS,
            period_seconds: STEP_SECONDS,
        };
        let sealed = self
            .second_factor_sealer()?
            .seal_bound(&secret, person.user.id.to_string().as_bytes())
            .map_err(|error| Error::Internal(error.to_string()))?;
        let audit = Actor::from(person.clone()).allowed("second_factor.begin", None, None);
        self.store
            .set_second_factor(person.user.id, Some(sealed), audit)
            .await?;
        Ok(setup)
    }

    /// Confirms the second factor being set up with one of its codes: from now on
    /// logging in asks for a code. Returns the account as it now is.
    pub async fn confirm_second_factor(&self, person: &Person, code: &str) -> Result<User, Error> {
        let credentials = self
            .store
            .user_credentials(&person.user.username)
            .await?
            .ok_or(Error::Unauthenticated)?;
        let secret = match credentials.second_factor {
            Some(secret) if !secret.confirmed => secret,
            Some(_) => {
                return Err(Error::Conflict(
                    "this account's second factor is already set up".into(),
                ));
            }
            None => {
                return Err(Error::InvalidState(
                    "no second factor is being set up: start with POST /api/v1/me/second-factor"
                        .into(),
                ));
            }
        };
        let user = credentials.user;
        let Some(step) = self.code_step(&user, &secret, code)? else {
            self.audit(Actor::from(person.clone()).audit(
                "second_factor.confirm",
                None,
                AuditOutcome::Denied,
                Some("wrong one-time code".into()),
                self.now(),
            ))
            .await?;
            return Err(wrong_code());
        };
        let audit = Actor::from(person.clone()).allowed("second_factor.confirm", None, None);
        if !self
            .store
            .accept_second_factor_step(user.id, secret.sealed, step, Some(audit))
            .await?
        {
            // Set up again, or the same code sent twice, in the meantime.
            return Err(wrong_code());
        }
        Ok(User {
            second_factor: true,
            ..user
        })
    }

    /// Removes an account's second factor (admin; never one's own, which another
    /// administrator resets, or the command line): for a lost or replaced phone. The
    /// account's next login takes its password alone, and an account whose role requires
    /// a second factor must then set up a new one before anything else.
    pub async fn reset_second_factor(&self, actor: &Actor, user_id: UserId) -> Result<(), Error> {
        let allowed = self
            .require_admin_over_another(
                actor,
                "users.reset_second_factor",
                user_id,
                "another administrator resets your second factor",
            )
            .await?;
        self.store
            .set_second_factor(user_id, None, allowed.audit)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_six_digits_with_spaces_allowed() {
        assert_eq!(parse_code("123 456").ok().as_deref(), Some("123456"));
        assert_eq!(parse_code(" 012345 ").ok().as_deref(), Some("012345"));
        for wrong in ["12345", "1234567", "12345a", "", "١٢٣٤٥٦"] {
            assert!(
                matches!(parse_code(wrong), Err(Error::InvalidRequest { .. })),
                "{wrong:?}"
            );
        }
    }

    /// RFC 6238's test vector for SHA-1 (appendix B), shortened to six digits: the codes
    /// are the ones every authenticator app computes.
    #[test]
    fn codes_match_the_rfc_test_vectors() {
        let totp = totp(b"12345678901234567890".to_vec(), "alice").expect("totp");
        for (time, eight_digits) in [
            (59u64, "94287082"),
            (1_111_111_109, "07081804"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
        ] {
            assert_eq!(totp.generate(time).to_string(), eight_digits[2..], "{time}");
        }
        assert!(
            totp.to_url().expect("url").starts_with(
                "otpauth://totp/Wardline:alice?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
            )
        );
    }
}
