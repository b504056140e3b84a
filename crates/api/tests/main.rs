//! The integration tests of wardline-api, as one test binary: each file beside this
//! one is a module, so a fresh build compiles and links them once.

mod access_matrix;
mod backend_services;
mod common;
mod emergency;
mod errors;
mod exports;
mod fhir;
mod fhir_bulk;
mod fhir_uploads;
mod imports;
mod nightscout;
mod openapi;
mod routes;
mod second_factor;
mod sessions;
mod sharing;
mod streams;
mod templates;
mod visits;
