//! Wardline's storage, by capability: people, emergency access, devices, ingest, clinical
//! data, audit, alarms, the outbox, gateways, Nightscout sites, mapping templates, telehealth visits and the committed event log. [`Store`] is all of them;
//! every backend implements each trait and passes the one conformance suite
//! (`testsuite` feature). SQLite is the embedded backend.

mod alarms;
mod audit;
mod backend_clients;
mod bulk_exports;
mod clinical;
mod devices;
mod emergency;
mod error;
mod events;
mod gateways;
mod ingest;
mod model;
mod nightscout;
mod outbox;
mod people;
pub mod postgres;
mod shares;
pub mod sqlite;
mod templates;
#[cfg(feature = "testsuite")]
pub mod testsuite;
mod visits;

pub use alarms::*;
pub use audit::*;
pub use backend_clients::*;
pub use bulk_exports::*;
pub use clinical::*;
pub use devices::*;
pub use emergency::*;
pub use error::StoreError;
pub use events::*;
pub use gateways::{GatewayReport, GatewayStatus, GatewayStore};
pub use ingest::IngestStore;
pub use model::*;
pub use nightscout::*;
pub use outbox::*;
pub use people::PeopleStore;
pub use postgres::{EvaluationFence, PostgresStore};
pub use shares::*;
pub use sqlite::SqliteStore;
pub use templates::*;
pub use visits::*;

/// Everything Wardline stores. Code that needs one capability takes that trait; code
/// that wires the server together holds an `Arc<dyn Store>`.
pub trait Store:
    PeopleStore
    + EmergencyAccessStore
    + ShareStore
    + DeviceStore
    + IngestStore
    + ClinicalStore
    + AuditStore
    + AlarmStore
    + OutboxStore
    + GatewayStore
    + NightscoutStore
    + TemplateStore
    + VisitStore
    + BulkExportStore
    + BackendClientStore
    + EventLog
    + std::fmt::Debug
    + 'static
{
}

impl<T> Store for T where
    T: PeopleStore
        + EmergencyAccessStore
        + ShareStore
        + DeviceStore
        + IngestStore
        + ClinicalStore
        + AuditStore
        + AlarmStore
        + OutboxStore
        + GatewayStore
        + NightscoutStore
        + TemplateStore
        + VisitStore
        + BulkExportStore
        + BackendClientStore
        + EventLog
        + std::fmt::Debug
        + 'static
{
}

/// The capability traits, to bring their methods into scope at once.
pub mod prelude {
    pub use crate::{
        AlarmStore, AuditStore, BackendClientStore, BulkExportStore, ClinicalStore, DeviceStore,
        EmergencyAccessStore, EventLog, GatewayStore, IngestStore, NightscoutStore, OutboxStore,
        PeopleStore, Store, TemplateStore,
    };
}
