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
    service_on(data_dir, None).await
}

/// As [`service`], on the store `store` names (`None`: the data folder's own).
pub(crate) async fn service_on(
    data_dir: &std::path::Path,
    store: Option<&str>,
) -> anyhow::Result<Wardline> {
    let database_env = std::env::vars()
        .filter(|(name, _)| name.starts_with("WARDLINE_DATABASE_"))
        .collect();
    let config: Config = config::load(
        None,
        &database_env,
        &Overrides {
            data_dir: Some(data_dir.to_owned()),
            store: Some(store.unwrap_or("embedded").to_owned()),
            ..Overrides::default()
        },
    )?;
    wardline_server::server::offline_service(&config).await
}

/// A database of its own on a PostgreSQL server, made for one run and dropped after it.
#[derive(Debug)]
pub(crate) struct ScratchDatabase {
    server: String,
    name: String,
    url: String,
}

impl ScratchDatabase {
    /// `server` is the URL of any database on the server (its `postgres` one, say); the
    /// new database is made beside it.
    pub(crate) async fn create(server: &str) -> anyhow::Result<Self> {
        let name = format!("wardline_bench_{}", std::process::id());
        let client = admin_client(server).await?;
        // One statement each: PostgreSQL runs neither inside a transaction block.
        for statement in [
            format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            format!("CREATE DATABASE {name}"),
        ] {
            client
                .batch_execute(&statement)
                .await
                .with_context(|| format!("creating the database {name}"))?;
        }
        let mut url = url_of(server)?;
        url.set_path(&format!("/{name}"));
        Ok(Self {
            server: server.to_owned(),
            name,
            url: url.to_string(),
        })
    }

    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    pub(crate) async fn drop_now(self) -> anyhow::Result<()> {
        admin_client(&self.server)
            .await?
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .await
            .with_context(|| format!("dropping the database {}", self.name))
    }
}

fn url_of(server: &str) -> anyhow::Result<url::Url> {
    url::Url::parse(server).with_context(|| {
        format!(
            "--postgres must be a postgres:// URL, not {}",
            config::redact_password(server)
        )
    })
}

async fn admin_client(server: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(server, tokio_postgres::NoTls)
        .await
        .with_context(|| format!("connecting to {}", config::redact_password(server)))?;
    tokio::spawn(connection);
    Ok(client)
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
