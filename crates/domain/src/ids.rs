//! Identifiers. Patients, users and care teams get random UUIDs so that an identifier
//! reveals nothing (no counts, no order). Device identifiers appear in MQTT topics, so
//! they are restricted to characters every broker and NATS subject accepts.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Why a text is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("not a valid {kind} id: expected a UUID")]
    NotUuid { kind: &'static str },
    #[error("not a valid device id: {0}")]
    Device(&'static str),
}

macro_rules! uuid_id {
    ($name:ident, $kind:literal) => {
        #[doc = concat!("Identifier of a ", $kind, ".")]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A fresh random identifier.
            pub fn random() -> Self {
                Self(Uuid::new_v4())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(text: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(text)
                    .map(Self)
                    .map_err(|_| IdError::NotUuid { kind: $kind })
            }
        }
    };
}

uuid_id!(PatientId, "patient");
uuid_id!(UserId, "user");
uuid_id!(CareTeamId, "care team");

/// Identifier of a device: 3 to 64 characters from `[A-Za-z0-9_-]`.
///
/// The alphabet is what MQTT topic levels and NATS subjects both accept unescaped, so
/// a device keeps its identifier when ingest moves to another bus.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DeviceId(String);

impl DeviceId {
    pub const MIN_LEN: usize = 3;
    pub const MAX_LEN: usize = 64;
    /// What [`DeviceId::parse`] accepts besides the length, as a regular expression.
    pub const PATTERN: &'static str = "^[A-Za-z0-9_-]+$";

    pub fn parse(text: &str) -> Result<Self, IdError> {
        if text.len() < Self::MIN_LEN {
            return Err(IdError::Device("shorter than 3 characters"));
        }
        if text.len() > Self::MAX_LEN {
            return Err(IdError::Device("longer than 64 characters"));
        }
        if !text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(IdError::Device(
                "only letters, digits, '_' and '-' are allowed",
            ));
        }
        Ok(Self(text.to_owned()))
    }

    /// A fresh random identifier, `dev_` and 16 hex digits.
    pub fn random() -> Self {
        let uuid = Uuid::new_v4();
        let hex = uuid.simple().to_string();
        Self(format!("dev_{}", &hex[..16]))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The schema says what [`DeviceId::parse`] accepts, so that a client can tell a valid
/// identifier without asking.
#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for DeviceId {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::Type::String)
            .description(Some(
                "Identifier of a device: 3 to 64 characters from `[A-Za-z0-9_-]`.\n\n\
                 The alphabet is what MQTT topic levels and NATS subjects both accept \
                 unescaped, so a device keeps its identifier when ingest moves to another bus.",
            ))
            .min_length(Some(Self::MIN_LEN))
            .max_length(Some(Self::MAX_LEN))
            .pattern(Some(Self::PATTERN))
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for DeviceId {}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for DeviceId {
    type Err = IdError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

impl TryFrom<String> for DeviceId {
    type Error = IdError;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        Self::parse(&text)
    }
}

impl From<DeviceId> for String {
    fn from(id: DeviceId) -> Self {
        id.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_ids_are_topic_safe() {
        assert!(DeviceId::parse("cgm-0042_a").is_ok());
        assert!(DeviceId::parse("ab").is_err());
        assert!(DeviceId::parse("a/b/c").is_err());
        assert!(DeviceId::parse("dev+1").is_err());
        assert!(DeviceId::parse("dev.1").is_err());
        assert!(DeviceId::parse(&"x".repeat(65)).is_err());
        let random = DeviceId::random();
        assert_eq!(DeviceId::parse(random.as_str()).unwrap(), random);
    }

    #[test]
    fn uuid_ids_reject_garbage() {
        assert!("not-a-uuid".parse::<PatientId>().is_err());
        let id = PatientId::random();
        assert_eq!(id.to_string().parse::<PatientId>().unwrap(), id);
    }
}
