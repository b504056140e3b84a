//! Enrolling what a benchmark needs, through the service layer as the command line.

use anyhow::Context;
use wardline_domain::{DeviceId, DeviceKind, PatientId};
use wardline_server::config::{self, Config, Overrides};
use wardline_service::devices::Enrolment;
use wardline_service::people::PatientDetails;
use wardline_service::{Actor, Wardline};

/// A device's credential as a load generator uses it.
#[derive(Debug, Clone)]
pub(crate) struct Credential {
    pub(crate) device_id: String,
    pub(crate) secret: String,
}

pub(crate) fn fail(error: wardline_service::Error) -> anyhow::Error {
    anyhow::anyhow!("{}", error.message())
}

/// The service over a data folder, with the defaults of every other setting but the
/// database's encryption, which follows the environment as the server it sets up for
/// does (so `WARDLINE_DATABASE_ENCRYPTION=off` measures a server without it).
pub(crate) async fn service(data_dir: &std::path::Path) -> anyhow::Result<Wardline> {
    let database_env = std::env::vars()
        .filter(|(name, _)| name.starts_with("WARDLINE_DATABASE_"))
        .collect();
    let config: Config = config::load(
        None,
        &database_env,
        &Overrides {
            data_dir: Some(data_dir.to_owned()),
            ..Overrides::default()
        },
    )?;
    wardline_server::server::offline_service(&config).await
}

pub(crate) async fn patient(service: &Wardline, name: &str) -> anyhow::Result<PatientId> {
    Ok(service
        .create_patient(
            &Actor::CommandLine,
            PatientDetails {
                display_name: name.into(),
                birth_date: None,
                mrn: None,
            },
        )
        .await
        .map_err(fail)?
        .id)
}

/// Enrols a device and assigns it to `patient` from a day ago (a load generator's
/// timestamps may lag a little).
pub(crate) async fn device(
    service: &Wardline,
    id: &str,
    kind: DeviceKind,
    patient: PatientId,
    since: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<Credential> {
    device_of_model(service, id, kind, "bench", patient, since).await
}

/// [`device`] of a given model (one with a mapping template in force, say).
pub(crate) async fn device_of_model(
    service: &Wardline,
    id: &str,
    kind: DeviceKind,
    model: &str,
    patient: PatientId,
    since: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<Credential> {
    let device_id = DeviceId::parse(id).map_err(|error| anyhow::anyhow!("{error}"))?;
    let cli = Actor::CommandLine;
    let enrolled = service
        .enrol_device(
            &cli,
            Enrolment {
                kind,
                model: model.into(),
                serial: id.into(),
                device_id: Some(device_id.clone()),
                patient_id: None,
            },
        )
        .await
        .map_err(fail)
        .with_context(|| format!("enrolling {id}"))?;
    service
        .assign_device(&cli, &device_id, patient, Some(since))
        .await
        .map_err(fail)?;
    Ok(Credential {
        device_id: device_id.to_string(),
        secret: enrolled.secret.expose().to_owned(),
    })
}
