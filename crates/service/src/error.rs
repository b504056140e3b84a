//! The one error type of Wardline's operations: each error has one stable code, one HTTP
//! status and a message, whatever transport shows it (a REST body, an MQTT reason
//! string, a FHIR `OperationOutcome`, the command line).

use wardline_domain::PayloadError;
use wardline_store::StoreError;

/// What an error means to a client: its stable code, its HTTP status and a sentence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorSpec {
    pub code: &'static str,
    pub status: u16,
    pub meaning: &'static str,
}

/// Every failure a caller can see.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{message}")]
    InvalidRequest {
        field: Option<String>,
        message: String,
    },
    #[error(transparent)]
    InvalidPayload(PayloadError),
    #[error("authentication required")]
    Unauthenticated,
    /// The session ended because its person did nothing for the idle timeout.
    #[error("the session ended after {idle} without activity; log in again")]
    SessionIdle { idle: String },
    /// The account's password was set by someone else and must be changed first.
    #[error(
        "this account's password was set by someone else: change it (POST /api/v1/me/password) before anything else"
    )]
    PasswordChangeRequired,
    /// The account's role must have a second factor and this one has none yet.
    #[error(
        "accounts of this role must set up a second factor (POST /api/v1/me/second-factor) before anything else"
    )]
    SecondFactorSetupRequired,
    /// The password was right; the account has a second factor and no code came with it.
    #[error("this account has a second factor: send its current one-time code as one_time_code")]
    SecondFactorRequired,
    /// The one-time code was wrong, out of date or used before.
    #[error("the one-time code is wrong, out of date or already used; wait for the next one")]
    BadOneTimeCode,
    #[error("wrong username or password")]
    BadLogin,
    /// A share link that no longer opens, and why (expired, revoked, used, disabled).
    #[error("{reason}")]
    ShareLinkClosed { reason: String },
    /// A specialist's invitation that no longer opens, and why (used, expired).
    #[error("{reason}")]
    InvitationClosed { reason: String },
    /// A share link's passcode was wrong; so many attempts are left before it is disabled.
    #[error("wrong passcode: {remaining} of {limit} attempts left before the link is disabled")]
    BadPasscode { remaining: u32, limit: u32 },
    #[error("not allowed")]
    Forbidden,
    /// A request that changes state, authenticated by the session cookie alone, came
    /// without the header that only Wardline's own pages send: a guard against
    /// cross-site request forgery. `field` names the header.
    #[error("{message}")]
    CsrfHeaderMissing { field: String, message: String },
    /// A well-formed request the caller may not make, for a reason the message gives
    /// (an admin adding themselves to a care team, a wrong current password).
    #[error("{message}")]
    NotPermitted { field: String, message: String },
    /// A well-formed FHIR resource that cannot be taken as it is (not a measurement, a
    /// code Wardline does not store, a device that is not enrolled), naming the element.
    #[error("{message}")]
    Unprocessable { field: String, message: String },
    #[error("{0} not found")]
    NotFound(String),
    #[error("this method is not allowed on this path")]
    MethodNotAllowed,
    #[error("{0} already exists")]
    Conflict(String),
    #[error("{0}")]
    DeviceNotAssigned(String),
    /// A device reused a `seq` for a different reading.
    #[error("{0}")]
    SeqConflict(String),
    /// The resource is not in a state that allows the action (acknowledging a resolved
    /// alarm, a care plan version written concurrently).
    #[error("{0}")]
    InvalidState(String),
    #[error("payload is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("too many login attempts; try again in {retry_after_secs} s")]
    TooManyAttempts { retry_after_secs: u64 },
    /// An account sent more invitations than an inviter needs: each is an e-mail in
    /// Wardline's name, so they are limited per account.
    #[error("too many invitations from this account; the next one can go in {retry_after_secs} s")]
    TooManyInvitations { retry_after_secs: u64 },
    /// A requester with as many bulk exports under way as one may have: each reads
    /// whole records, so they are limited per requester.
    #[error(
        "{open} bulk exports of this requester are under way, the most there may be; wait for one to finish or cancel one (DELETE its status URL)"
    )]
    TooManyExports { open: usize, retry_after_secs: u64 },
    #[error("service temporarily unavailable")]
    Unavailable,
    /// The cause is logged, never shown.
    #[error("internal error")]
    Internal(String),
}

impl Error {
    const INVALID_REQUEST: ErrorSpec = ErrorSpec {
        code: "invalid_request",
        status: 400,
        meaning: "the request is malformed; `field` names the culprit",
    };
    const INVALID_PAYLOAD: ErrorSpec = ErrorSpec {
        code: "invalid_payload",
        status: 400,
        meaning: "a device payload failed validation; `field` and `kind` say where and why",
    };
    const UNAUTHENTICATED: ErrorSpec = ErrorSpec {
        code: "unauthenticated",
        status: 401,
        meaning: "no valid session or device credential",
    };
    const SESSION_IDLE: ErrorSpec = ErrorSpec {
        code: "session_idle",
        status: 401,
        meaning: "the session ended because nobody used it for the idle timeout; log in again",
    };
    const PASSWORD_CHANGE_REQUIRED: ErrorSpec = ErrorSpec {
        code: "password_change_required",
        status: 403,
        meaning: "the account's password was generated, reset or set by an administrator: the account may only change it, read itself and log out until it does",
    };
    const SECOND_FACTOR_SETUP_REQUIRED: ErrorSpec = ErrorSpec {
        code: "second_factor_setup_required",
        status: 403,
        meaning: "the account's role requires a second factor and it has none: the account may only set one up, change its password, read itself and log out until it does",
    };
    const SECOND_FACTOR_REQUIRED: ErrorSpec = ErrorSpec {
        code: "second_factor_required",
        status: 401,
        meaning: "the account has a second factor: log in again with the authenticator app's current code in `one_time_code`",
    };
    const BAD_ONE_TIME_CODE: ErrorSpec = ErrorSpec {
        code: "bad_one_time_code",
        status: 401,
        meaning: "the one-time code is wrong, out of date, or was used before (each code is good once)",
    };
    const SHARE_LINK_CLOSED: ErrorSpec = ErrorSpec {
        code: "share_link_closed",
        status: 410,
        meaning: "the share link no longer opens: it expired, the patient revoked it, it was for one use and was used, or too many wrong passcodes disabled it (the message says which)",
    };
    const INVITATION_CLOSED: ErrorSpec = ErrorSpec {
        code: "invitation_closed",
        status: 410,
        meaning: "the specialist's invitation no longer opens: it was used, or it expired (the message says which)",
    };
    const BAD_PASSCODE: ErrorSpec = ErrorSpec {
        code: "bad_passcode",
        status: 403,
        meaning: "the share link's passcode is wrong; the message says how many attempts are left before the link is disabled",
    };
    const BAD_LOGIN: ErrorSpec = ErrorSpec {
        code: "bad_login",
        status: 401,
        meaning: "wrong username or password",
    };
    const FORBIDDEN: ErrorSpec = ErrorSpec {
        code: "forbidden",
        status: 403,
        meaning: "authenticated, but not allowed to do this (for example, not on the patient's care team)",
    };
    const CSRF_HEADER_MISSING: ErrorSpec = ErrorSpec {
        code: "csrf_header_missing",
        status: 403,
        meaning: "a request that changes state with the session cookie lacks the header the web app sends; `field` names it",
    };
    const NOT_PERMITTED: ErrorSpec = ErrorSpec {
        code: "not_permitted",
        status: 403,
        meaning: "the request is well formed, but this account may not make it, for the reason given",
    };
    const NOT_FOUND: ErrorSpec = ErrorSpec {
        code: "not_found",
        status: 404,
        meaning: "no such resource",
    };
    const METHOD_NOT_ALLOWED: ErrorSpec = ErrorSpec {
        code: "method_not_allowed",
        status: 405,
        meaning: "the path exists, but not with this method",
    };
    const CONFLICT: ErrorSpec = ErrorSpec {
        code: "conflict",
        status: 409,
        meaning: "the resource already exists",
    };
    const DEVICE_NOT_ASSIGNED: ErrorSpec = ErrorSpec {
        code: "device_not_assigned",
        status: 409,
        meaning: "the device has no patient at the reading's time; nothing was stored",
    };
    const SEQ_CONFLICT: ErrorSpec = ErrorSpec {
        code: "seq_conflict",
        status: 409,
        meaning: "the device used this seq before for a different reading; nothing of the message was stored",
    };
    const UNPROCESSABLE: ErrorSpec = ErrorSpec {
        code: "unprocessable",
        status: 422,
        meaning: "a well-formed FHIR resource that cannot be taken as it is (not a measurement, a code Wardline does not store, a device not enrolled); `field` names the element",
    };
    const INVALID_STATE: ErrorSpec = ErrorSpec {
        code: "invalid_state",
        status: 409,
        meaning: "the resource's state does not allow this (for example, acknowledging a resolved alarm)",
    };
    const PAYLOAD_TOO_LARGE: ErrorSpec = ErrorSpec {
        code: "payload_too_large",
        status: 413,
        meaning: "the body exceeds the size limit",
    };
    const TOO_MANY_INVITATIONS: ErrorSpec = ErrorSpec {
        code: "too_many_invitations",
        status: 429,
        meaning: "this account sent as many specialist invitations as it may for now; `Retry-After` says when the next can go",
    };
    const TOO_MANY_ATTEMPTS: ErrorSpec = ErrorSpec {
        code: "too_many_attempts",
        status: 429,
        meaning: "too many failed logins for this account or from this address, or too many login attempts overall; `Retry-After` says when to try again",
    };
    const TOO_MANY_EXPORTS: ErrorSpec = ErrorSpec {
        code: "too_many_exports",
        status: 429,
        meaning: "the requester has as many bulk exports under way as it may; `Retry-After` says when to ask again",
    };
    const UNAVAILABLE: ErrorSpec = ErrorSpec {
        code: "unavailable",
        status: 503,
        meaning: "storage is unavailable; nothing was stored, retry later",
    };
    const INTERNAL: ErrorSpec = ErrorSpec {
        code: "internal",
        status: 500,
        meaning: "an unexpected failure; nothing was acknowledged",
    };

    /// Every error a client can see, for documentation.
    pub const ALL: [ErrorSpec; 28] = [
        Self::INVALID_REQUEST,
        Self::INVALID_PAYLOAD,
        Self::UNAUTHENTICATED,
        Self::SESSION_IDLE,
        Self::PASSWORD_CHANGE_REQUIRED,
        Self::SECOND_FACTOR_SETUP_REQUIRED,
        Self::SECOND_FACTOR_REQUIRED,
        Self::BAD_ONE_TIME_CODE,
        Self::BAD_LOGIN,
        Self::SHARE_LINK_CLOSED,
        Self::INVITATION_CLOSED,
        Self::BAD_PASSCODE,
        Self::FORBIDDEN,
        Self::CSRF_HEADER_MISSING,
        Self::NOT_PERMITTED,
        Self::NOT_FOUND,
        Self::METHOD_NOT_ALLOWED,
        Self::CONFLICT,
        Self::DEVICE_NOT_ASSIGNED,
        Self::SEQ_CONFLICT,
        Self::UNPROCESSABLE,
        Self::INVALID_STATE,
        Self::PAYLOAD_TOO_LARGE,
        Self::TOO_MANY_ATTEMPTS,
        Self::TOO_MANY_INVITATIONS,
        Self::TOO_MANY_EXPORTS,
        Self::UNAVAILABLE,
        Self::INTERNAL,
    ];

    pub fn spec(&self) -> ErrorSpec {
        match self {
            Error::InvalidRequest { .. } => Self::INVALID_REQUEST,
            Error::InvalidPayload(_) => Self::INVALID_PAYLOAD,
            Error::Unauthenticated => Self::UNAUTHENTICATED,
            Error::SessionIdle { .. } => Self::SESSION_IDLE,
            Error::PasswordChangeRequired => Self::PASSWORD_CHANGE_REQUIRED,
            Error::SecondFactorSetupRequired => Self::SECOND_FACTOR_SETUP_REQUIRED,
            Error::SecondFactorRequired => Self::SECOND_FACTOR_REQUIRED,
            Error::BadOneTimeCode => Self::BAD_ONE_TIME_CODE,
            Error::BadLogin => Self::BAD_LOGIN,
            Error::ShareLinkClosed { .. } => Self::SHARE_LINK_CLOSED,
            Error::InvitationClosed { .. } => Self::INVITATION_CLOSED,
            Error::BadPasscode { .. } => Self::BAD_PASSCODE,
            Error::Forbidden => Self::FORBIDDEN,
            Error::CsrfHeaderMissing { .. } => Self::CSRF_HEADER_MISSING,
            Error::NotPermitted { .. } => Self::NOT_PERMITTED,
            Error::Unprocessable { .. } => Self::UNPROCESSABLE,
            Error::NotFound(_) => Self::NOT_FOUND,
            Error::MethodNotAllowed => Self::METHOD_NOT_ALLOWED,
            Error::Conflict(_) => Self::CONFLICT,
            Error::DeviceNotAssigned(_) => Self::DEVICE_NOT_ASSIGNED,
            Error::SeqConflict(_) => Self::SEQ_CONFLICT,
            Error::InvalidState(_) => Self::INVALID_STATE,
            Error::PayloadTooLarge { .. } => Self::PAYLOAD_TOO_LARGE,
            Error::TooManyAttempts { .. } => Self::TOO_MANY_ATTEMPTS,
            Error::TooManyInvitations { .. } => Self::TOO_MANY_INVITATIONS,
            Error::TooManyExports { .. } => Self::TOO_MANY_EXPORTS,
            Error::Unavailable => Self::UNAVAILABLE,
            Error::Internal(_) => Self::INTERNAL,
        }
    }

    pub fn code(&self) -> &'static str {
        self.spec().code
    }

    pub fn status(&self) -> u16 {
        self.spec().status
    }

    /// A well-formed request this account may not make, naming the field and why.
    pub fn not_permitted(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::NotPermitted {
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::InvalidRequest {
            field: Some(field.into()),
            message: message.into(),
        }
    }

    /// The request field at fault, when one is.
    pub fn field(&self) -> Option<&str> {
        match self {
            Error::InvalidRequest { field, .. } => field.as_deref(),
            Error::CsrfHeaderMissing { field, .. }
            | Error::NotPermitted { field, .. }
            | Error::Unprocessable { field, .. } => Some(field.as_str()),
            Error::InvalidPayload(error) => Some(error.field.as_str()),
            _ => None,
        }
    }

    /// For a refused device payload, what kind of fault it was.
    pub fn kind(&self) -> Option<&'static str> {
        match self {
            Error::InvalidPayload(error) => Some(error.kind.as_str()),
            _ => None,
        }
    }

    /// The sentence shown to the client (never an internal cause).
    pub fn message(&self) -> String {
        match self {
            Error::InvalidPayload(error) => error.reason.clone(),
            other => other.to_string(),
        }
    }
}

impl From<StoreError> for Error {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound { what } => Error::NotFound(what),
            StoreError::Conflict { what } => Error::Conflict(what),
            StoreError::Invalid(message) => Error::InvalidRequest {
                field: None,
                message,
            },
            StoreError::Closed | StoreError::CommitFailed(_) | StoreError::Unavailable(_) => {
                tracing::error!(%error, "storage unavailable");
                Error::Unavailable
            }
            other => Error::Internal(other.to_string()),
        }
    }
}

impl From<wardline_alarms::AlarmsError> for Error {
    fn from(error: wardline_alarms::AlarmsError) -> Self {
        use wardline_alarms::AlarmsError as E;
        use wardline_alerting::AlertingError as A;
        match error {
            E::Alerting(A::IllegalTransition { .. } | A::UnknownAlarm(_)) | E::InvalidState(_) => {
                Error::InvalidState(error.to_string())
            }
            E::Alerting(other) => Error::InvalidRequest {
                field: None,
                message: other.to_string(),
            },
            E::Store(StoreError::Conflict { what }) => {
                Error::InvalidState(format!("{what} was written concurrently; retry"))
            }
            E::Store(store) => store.into(),
            E::Invalid { field, message } => Error::invalid(field, message),
            E::NotFound(what) => Error::NotFound(what),
            E::Stopped => Error::Unavailable,
            E::Forwarded(forwarded) => {
                use wardline_alarms::forward::ForwardedErrorKind as K;
                match forwarded.kind {
                    K::InvalidState => Error::InvalidState(forwarded.message),
                    K::InvalidRequest { field } => Error::InvalidRequest {
                        field,
                        message: forwarded.message,
                    },
                    K::NotFound => Error::NotFound(forwarded.message),
                    K::Unavailable => Error::Unavailable,
                    K::Internal => Error::Internal(forwarded.message),
                }
            }
            other => Error::Internal(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_has_one_distinct_spec() {
        let samples = [
            Error::invalid("x", "y"),
            Error::InvalidPayload(PayloadError {
                kind: wardline_domain::PayloadErrorKind::MissingField,
                field: "code".into(),
                reason: "missing".into(),
            }),
            Error::Unauthenticated,
            Error::SessionIdle {
                idle: "15 minutes".into(),
            },
            Error::PasswordChangeRequired,
            Error::SecondFactorSetupRequired,
            Error::SecondFactorRequired,
            Error::BadOneTimeCode,
            Error::BadLogin,
            Error::ShareLinkClosed {
                reason: "expired".into(),
            },
            Error::InvitationClosed {
                reason: "used".into(),
            },
            Error::BadPasscode {
                remaining: 4,
                limit: 5,
            },
            Error::Forbidden,
            Error::CsrfHeaderMissing {
                field: "x-wardline-request".into(),
                message: "send the header".into(),
            },
            Error::NotPermitted {
                field: "user_id".into(),
                message: "not oneself".into(),
            },
            Error::NotFound("p".into()),
            Error::MethodNotAllowed,
            Error::Conflict("c".into()),
            Error::DeviceNotAssigned("d".into()),
            Error::SeqConflict("s".into()),
            Error::Unprocessable {
                field: "Observation.status".into(),
                message: "not a measurement".into(),
            },
            Error::InvalidState("s".into()),
            Error::PayloadTooLarge { limit: 1 },
            Error::TooManyAttempts {
                retry_after_secs: 1,
            },
            Error::TooManyInvitations {
                retry_after_secs: 60,
            },
            Error::TooManyExports {
                open: 3,
                retry_after_secs: 60,
            },
            Error::Unavailable,
            Error::Internal("boom".into()),
        ];
        assert_eq!(samples.len(), Error::ALL.len());
        for (error, spec) in samples.iter().zip(Error::ALL) {
            assert_eq!(error.spec(), spec);
        }
        let mut codes: Vec<&str> = Error::ALL.iter().map(|spec| spec.code).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), Error::ALL.len(), "codes are unique");
        assert_eq!(Error::Forbidden.status(), 403);
        let csrf = Error::CsrfHeaderMissing {
            field: "x-wardline-request".into(),
            message: "send the header".into(),
        };
        assert_eq!(
            (csrf.status(), csrf.field(), csrf.message().as_str()),
            (403, Some("x-wardline-request"), "send the header")
        );
        assert_eq!(Error::PayloadTooLarge { limit: 1 }.status(), 413);
        assert_eq!(
            Error::Internal("secret cause".into()).message(),
            "internal error"
        );
    }
}
