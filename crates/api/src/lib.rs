//! Wardline's HTTP API. Every route that touches a patient's data goes through
//! [`access::authorize_patient`], which decides and audits in one place.

pub mod access;
pub mod auth;
pub mod error;
pub mod openapi;
mod routes;
pub mod state;
pub mod throttle;

pub use error::ApiError;
pub use routes::router;
pub use state::{ApiSettings, AppState, DeviceDisconnector};
