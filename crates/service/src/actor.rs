//! Who is acting: a person with a session, or Wardline's own command line. Every change
//! is audited under its actor.

use chrono::{DateTime, Utc};
use wardline_domain::{DeviceId, PatientId, Role, UserId};
use wardline_store::{AuditEvent, AuditOutcome, User};

/// A person authenticated by a session, and where the request came from.
#[derive(Debug, Clone)]
pub struct Person {
    pub user: User,
    /// The SHA-256 of the session token (to end this session at logout).
    pub token_hash: [u8; 32],
    pub remote_addr: Option<String>,
}

/// An uploader app writing for one patient with a Nightscout site's secret (xDrip+,
/// AndroidAPS, Loop, Trio): it reads and writes that patient's Nightscout data only.
#[derive(Debug, Clone)]
pub struct Uploader {
    pub site: String,
    pub device_id: DeviceId,
    pub patient_id: PatientId,
    pub remote_addr: Option<String>,
}

/// A hospital's system with an access token from SMART Backend Services: it bulk exports
/// the patients of the care teams it is registered for, within the scopes it was
/// granted, and does nothing else.
#[derive(Debug, Clone)]
pub struct BackendCaller {
    pub client_id: String,
    pub name: String,
    pub care_teams: Vec<wardline_domain::CareTeamId>,
    /// The resource types its token may read (`*` for all).
    pub readable: Vec<String>,
    pub remote_addr: Option<String>,
}

impl BackendCaller {
    /// Whether its token may read resources of `resource_type`.
    pub fn may_read(&self, resource_type: &str) -> bool {
        self.readable
            .iter()
            .any(|granted| granted == "*" || granted == resource_type)
    }
}

/// Who asks for an operation.
#[derive(Debug, Clone)]
pub enum Actor {
    Person(Person),
    Client(BackendCaller),
    /// `wardline admin …` on the server's own machine: trusted as an administrator,
    /// audited as `cli`.
    CommandLine,
    Uploader(Uploader),
}

impl Actor {
    pub fn user(&self) -> Option<&User> {
        match self {
            Actor::Person(person) => Some(&person.user),
            Actor::CommandLine | Actor::Uploader(_) | Actor::Client(_) => None,
        }
    }

    pub fn user_id(&self) -> Option<UserId> {
        self.user().map(|user| user.id)
    }

    /// The name the audit trail and care plan history show.
    pub fn label(&self) -> String {
        match self {
            Actor::Person(person) => person.user.username.clone(),
            Actor::CommandLine => "cli".into(),
            Actor::Uploader(uploader) => format!("device {}", uploader.device_id),
            Actor::Client(client) => format!("client {}", client.client_id),
        }
    }

    pub fn is_admin(&self) -> bool {
        match self {
            Actor::Person(person) => person.user.role == Role::Admin,
            Actor::CommandLine => true,
            Actor::Uploader(_) | Actor::Client(_) => false,
        }
    }

    pub fn remote_addr(&self) -> Option<String> {
        match self {
            Actor::Person(person) => person.remote_addr.clone(),
            Actor::CommandLine => None,
            Actor::Uploader(uploader) => uploader.remote_addr.clone(),
            Actor::Client(client) => client.remote_addr.clone(),
        }
    }

    /// An audit entry for `action` by this actor.
    pub fn audit(
        &self,
        action: &str,
        patient_id: Option<PatientId>,
        outcome: AuditOutcome,
        detail: Option<String>,
        time: DateTime<Utc>,
    ) -> AuditEvent {
        AuditEvent {
            time,
            actor: self.user_id(),
            actor_label: self.label(),
            action: action.to_owned(),
            patient_id,
            outcome,
            remote_addr: self.remote_addr(),
            detail,
        }
    }

    /// The entry of an allowed change.
    pub fn allowed(
        &self,
        action: &str,
        patient_id: Option<PatientId>,
        detail: Option<String>,
    ) -> AuditEvent {
        self.audit(
            action,
            patient_id,
            AuditOutcome::Allowed,
            detail,
            Utc::now(),
        )
    }
}

impl From<Person> for Actor {
    fn from(person: Person) -> Self {
        Actor::Person(person)
    }
}
