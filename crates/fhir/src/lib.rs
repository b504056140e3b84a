//! HL7 FHIR R4, the standard a hospital's record system speaks: Wardline's readings as
//! `Observation`s conforming to the R4 vital-signs profile where their code is a vital
//! sign, patients as `Patient`s, errors as `OperationOutcome`s, search results as
//! `searchset` Bundles, and the search parameters Wardline reads. Pure: the API does the
//! I/O, and every code, unit and display comes from the domain's one catalogue.

mod bulk;
mod care;
mod inbound;
mod resources;
mod scores;
mod search;
mod waveforms;

pub use bulk::*;
pub use care::*;
pub use inbound::*;
pub use resources::*;
pub use scores::*;
pub use search::*;
pub use waveforms::*;

/// The media type of FHIR's JSON.
pub const FHIR_JSON: &str = "application/fhir+json";
/// The FHIR version these resources are.
pub const FHIR_VERSION: &str = "4.0.1";
pub const LOINC: &str = "http://loinc.org";
pub const UCUM: &str = "http://unitsofmeasure.org";
