//! The routes, by what they are about.

pub(crate) mod alarms;
pub(crate) mod analytics;
pub(crate) mod backend_clients;
pub(crate) mod clinical;
pub(crate) mod devices;
pub(crate) mod emergency;
pub(crate) mod export;
pub(crate) mod fhir;
pub(crate) mod fhir_bulk;
pub(crate) mod fhir_care;
pub(crate) mod fhir_uploads;
pub(crate) mod gateways;
pub(crate) mod imports;
pub(crate) mod nightscout;
pub(crate) mod people;
pub(crate) mod shares;
pub(crate) mod system;
pub(crate) mod templates;
pub(crate) mod visits;
