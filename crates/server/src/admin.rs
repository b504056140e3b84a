//! `wardline admin …`: the same operations as the admin API, through the same service
//! layer, straight on a data folder (safe beside a running server: SQLite's WAL lets both
//! write in turn). Every change is audited with the actor `cli`.

use std::io::Read;

use anyhow::{Context, bail};
use clap::Subcommand;
use wardline_alarms::CarePlanRequest;
use wardline_domain::topics::{errors_topic, readings_topic};
use wardline_domain::{CareTeamId, DeviceId, DeviceKind, PatientId, Role, UserId};
use wardline_service::devices::Enrolment;
use wardline_service::people::{AuditVerdict, NewAccount, PatientDetails};
use wardline_service::{Actor, Wardline};

use crate::config::{Config, StoreLocation};
use crate::server::offline_service;

#[derive(Subcommand, Debug)]
pub enum AdminCommand {
    /// Create a user. The password is read from standard input with --password-stdin,
    /// otherwise generated and printed once.
    CreateUser {
        #[arg(long)]
        username: String,
        #[arg(long)]
        display_name: String,
        /// admin, clinician, nurse or patient
        #[arg(long)]
        role: Role,
        /// For a patient account: the patient record it belongs to (its id, its MRN, or
        /// its name when no other patient has it).
        #[arg(long)]
        patient: Option<String>,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Disable a user: their sessions end at once and they can no longer log in.
    DisableUser {
        #[arg(long)]
        username: String,
    },
    /// Remove a user's second factor (a lost phone): their next login takes the password
    /// alone, and a role that requires one must set up a new one first. For the last
    /// administrator; others are reset by an administrator in the web app.
    ResetSecondFactor {
        #[arg(long)]
        username: String,
    },
    /// Create a patient record.
    CreatePatient {
        #[arg(long)]
        name: String,
        /// YYYY-MM-DD
        #[arg(long)]
        birth_date: Option<chrono::NaiveDate>,
        #[arg(long)]
        mrn: Option<String>,
    },
    /// Create a care team.
    CreateCareTeam {
        #[arg(long)]
        name: String,
    },
    /// Add a clinician or nurse to a care team. Teams, users and patients are named by
    /// id or by name (a user by user name, a patient also by MRN).
    AddMember {
        #[arg(long)]
        team: String,
        #[arg(long)]
        user: String,
    },
    /// Put a patient in a care team's care.
    AddPatient {
        #[arg(long)]
        team: String,
        #[arg(long)]
        patient: String,
    },
    /// Take a clinician or nurse off a care team; their access to its patients ends.
    RemoveMember {
        #[arg(long)]
        team: String,
        #[arg(long)]
        user: String,
    },
    /// End a care team's care of a patient; its members' access to the patient ends.
    RemovePatient {
        #[arg(long)]
        team: String,
        #[arg(long)]
        patient: String,
    },
    /// Register a hospital system for SMART Backend Services (docs/fhir.md): its public
    /// keys and the care teams whose patients it may bulk export. Prints its client_id.
    RegisterBackendClient {
        #[arg(long)]
        name: String,
        /// A file holding its JSON Web Key Set: public RS384 or ES384 keys, each with a
        /// `kid`.
        #[arg(long)]
        jwks: std::path::PathBuf,
        /// A care team (id or name); repeat for each.
        #[arg(long = "team", required = true)]
        teams: Vec<String>,
    },
    /// List the registered backend clients.
    BackendClients,
    /// Revoke a backend client: its tokens end at once and it gets no more.
    RevokeBackendClient {
        /// Its client_id.
        #[arg(long)]
        client: String,
    },
    /// Enrol a device and print its credential (once) and connection settings.
    EnrolDevice {
        /// cgm, glucose_meter, ecg, pulse_oximeter, thermometer, blood_pressure_cuff, scale,
        /// peak_flow_meter, wearable, gateway
        #[arg(long)]
        kind: DeviceKind,
        #[arg(long)]
        model: String,
        #[arg(long)]
        serial: String,
        /// Identifier to use instead of a random one.
        #[arg(long)]
        device_id: Option<DeviceId>,
        /// Assign to this patient (id, MRN or name) from now on.
        #[arg(long)]
        patient: Option<String>,
    },
    /// Assign a device to a patient (id, MRN or name) from now on.
    AssignDevice {
        #[arg(long)]
        device: DeviceId,
        #[arg(long)]
        patient: String,
    },
    /// Revoke a device's credential (it can no longer connect or send).
    RevokeDevice {
        #[arg(long)]
        device: DeviceId,
    },
    /// Assign a monitoring programme's default rules to a patient (a new care plan
    /// version; a running server picks it up within a minute).
    SetCarePlan {
        /// The patient: id, MRN or name.
        #[arg(long)]
        patient: String,
        /// diabetes, cardiac, respiratory, post_surgery or general_vitals
        #[arg(long)]
        program: String,
        #[arg(long, default_value = "assigned from the command line")]
        reason: String,
        /// Best peak expiratory flow in L/min (respiratory programme's peak-flow rules).
        #[arg(long)]
        peak_flow_best: Option<f64>,
    },
    /// List users, patients, care teams and devices.
    List,
    /// Register the next version of a device model's mapping templates (iomt-fhir
    /// device content and FHIR mapping JSON files), as a draft: every problem is named.
    RegisterTemplate {
        /// The device model, as its devices are enrolled.
        #[arg(long)]
        model: String,
        #[arg(long)]
        device_template: std::path::PathBuf,
        #[arg(long)]
        fhir_template: std::path::PathBuf,
    },
    /// List every mapping template version, newest first.
    ListTemplates,
    /// Show what a template version makes of a sample message (a JSON file), storing
    /// nothing.
    TryTemplate {
        #[arg(long)]
        template: String,
        #[arg(long)]
        payload: std::path::PathBuf,
        /// The device that would send it (its measurements must name it).
        #[arg(long)]
        device: Option<DeviceId>,
    },
    /// Put a template version in force for its model (a running server picks it up
    /// within ten seconds).
    PutTemplateInForce {
        #[arg(long)]
        template: String,
    },
    /// Take a template version out of force: its model's messages are format v1 again.
    RetireTemplate {
        #[arg(long)]
        template: String,
    },
    /// Re-encrypt the database under a new key (with the server stopped). With the key
    /// in a file, a new random key replaces it there; with a key from the environment
    /// or a command, the new key is read from standard input.
    RotateDatabaseKey {
        /// Read the new key (64 hex digits) from standard input.
        #[arg(long)]
        new_key_stdin: bool,
    },
    /// Check the audit trail: its keyed chain, and that the newest exported checkpoint
    /// is still in it.
    VerifyAudit,
}

/// A patient as the command line names it: by id, by MRN, or by name when exactly one
/// patient has it.
async fn patient_named(service: &Wardline, text: &str) -> anyhow::Result<PatientId> {
    if let Ok(id) = text.parse() {
        return Ok(id);
    }
    let patients = service
        .list_patients(&Actor::CommandLine)
        .await
        .map_err(fail)?;
    if let Some(patient) = patients
        .iter()
        .find(|patient| patient.mrn.as_deref() == Some(text))
    {
        return Ok(patient.id);
    }
    let named: Vec<_> = patients
        .iter()
        .filter(|patient| patient.display_name == text)
        .collect();
    match named.as_slice() {
        [patient] => Ok(patient.id),
        [] => {
            bail!("no patient with the id, MRN or name {text:?} (`wardline admin list` shows them)")
        }
        _ => bail!(
            "{} patients are named {text:?}: give the id or the MRN instead ({})",
            named.len(),
            named
                .iter()
                .map(|patient| patient.id.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// A care team by id or by name.
async fn team_named(service: &Wardline, text: &str) -> anyhow::Result<CareTeamId> {
    if let Ok(id) = text.parse() {
        return Ok(id);
    }
    let teams = service
        .list_care_teams(&Actor::CommandLine)
        .await
        .map_err(fail)?;
    let named: Vec<_> = teams.iter().filter(|team| team.name == text).collect();
    match named.as_slice() {
        [team] => Ok(team.id),
        [] => bail!("no care team with the id or name {text:?} (`wardline admin list` shows them)"),
        _ => bail!(
            "{} care teams are named {text:?}: give the id instead",
            named.len()
        ),
    }
}

/// An account by id or by user name.
async fn user_named(service: &Wardline, text: &str) -> anyhow::Result<UserId> {
    if let Ok(id) = text.parse() {
        return Ok(id);
    }
    Ok(service.user_named(text).await.map_err(fail)?.id)
}

fn print_template(template: &wardline_store::MappingTemplate, warnings: &[String]) {
    println!(
        "template {}  {:<24} version {:<3} {}",
        template.id,
        template.model,
        template.version,
        template.status.as_str()
    );
    for warning in warnings {
        println!("  warning  {warning}");
    }
}

/// The command line's errors read as the service's message.
/// A refusal as the operator reads it: the field at fault, when there is one, and why.
fn fail(error: wardline_service::Error) -> anyhow::Error {
    match error.field() {
        Some(field) => anyhow::anyhow!("{field}: {}", error.message()),
        None => anyhow::anyhow!("{}", error.message()),
    }
}

/// `wardline import clarity|libreview FILE --patient … --time-zone …`.
#[derive(Subcommand, Debug)]
pub enum ImportCommand {
    /// A Dexcom Clarity CSV export.
    Clarity(ImportArgs),
    /// A LibreView glucose CSV export (FreeStyle Libre readers, the LibreLink app).
    Libreview(ImportArgs),
}

#[derive(clap::Args, Debug)]
pub struct ImportArgs {
    /// The export file.
    pub file: std::path::PathBuf,
    /// The patient: their id, medical record number or name.
    #[arg(long)]
    pub patient: String,
    /// The time zone the export's clock times are in (the patient's), an IANA name such
    /// as Europe/London.
    #[arg(long)]
    pub time_zone: String,
}

/// Imports a CGM export into a patient's record on the data folder's database, and
/// prints what it did. Importing the same file again adds nothing.
pub async fn import(config: &Config, command: ImportCommand) -> anyhow::Result<()> {
    use wardline_service::imports::ImportSource;
    let (source, args) = match command {
        ImportCommand::Clarity(args) => (ImportSource::Clarity, args),
        ImportCommand::Libreview(args) => (ImportSource::Libreview, args),
    };
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("reading {} (a UTF-8 CSV export)", args.file.display()))?;
    if config.store == StoreLocation::Embedded {
        let database = crate::database_key::database_path(config);
        if !database
            .try_exists()
            .with_context(|| format!("looking for {}", database.display()))?
        {
            bail!(
                "no Wardline database in {}: run this where `wardline serve` keeps its data, or name that folder with --data-dir",
                config.data_dir.display()
            );
        }
    }
    eprintln!("{}", store_description(config));
    let service = offline_service(config).await?;
    let patient = patient_named(&service, &args.patient).await?;
    let summary = service
        .import_cgm(&Actor::CommandLine, patient, source, &text, &args.time_zone)
        .await
        .map_err(fail)?;
    println!(
        "imported {} readings ({} stored before) under device {}",
        summary.imported, summary.duplicates, summary.device_id
    );
    if let (Some(first), Some(last)) = (summary.first, summary.last) {
        println!("from {first} to {last} ({})", summary.time_zone);
    }
    if summary.ambiguous_times > 0 {
        println!(
            "{} clock times happened twice (the autumn change) and were read as the first",
            summary.ambiguous_times
        );
    }
    println!(
        "{} other rows (alerts, insulin, food, details) skipped",
        summary.other_rows
    );
    if summary.refused > 0 {
        println!("{} rows refused:", summary.refused);
        for row in &summary.refused_rows {
            println!("  line {}: {}: {}", row.line, row.field, row.reason);
        }
    }
    Ok(())
}

/// Where the command works, for its first line of output (never a password).
fn store_description(config: &Config) -> String {
    match &config.store {
        StoreLocation::Embedded => format!("data folder {}", config.data_dir.display()),
        StoreLocation::Postgres { url, .. } => {
            format!(
                "PostgreSQL database {}",
                crate::config::redact_password(url)
            )
        }
    }
}

/// Runs one administrative command on the data folder's database. Without `init`, the
/// database must exist already: a command run in the wrong folder stops and says where it
/// looked, instead of making an empty database there that no server reads.
pub async fn run(config: &Config, command: AdminCommand, init: bool) -> anyhow::Result<()> {
    // A PostgreSQL database is made by its administrator and migrated by whoever opens
    // it first; only the embedded one can be looked for in the wrong folder.
    if config.store == StoreLocation::Embedded {
        let database = crate::database_key::database_path(config);
        let present = database
            .try_exists()
            .with_context(|| format!("looking for {}", database.display()))?;
        if !init && !present {
            anyhow::bail!(
                "no Wardline database in {}: run this where `wardline serve` keeps its data, name that folder with --data-dir (or WARDLINE_DATA_DIR), or pass --init to make a new one",
                config.data_dir.display()
            );
        }
    }
    eprintln!("{}", store_description(config));
    // Before anything opens the database: the rotation needs it to itself.
    if let AdminCommand::RotateDatabaseKey { new_key_stdin } = command {
        if config.store != StoreLocation::Embedded {
            anyhow::bail!(
                "the database key encrypts the embedded database; a PostgreSQL database is encrypted at rest by its server's storage"
            );
        }
        let new_key = new_key_stdin
            .then(crate::database_key::key_from_stdin)
            .transpose()?;
        // Nothing else runs in this process yet; the rewrite may block it.
        let done = crate::database_key::rotate(config, new_key)?;
        println!("{done}");
        return Ok(());
    }
    let service = offline_service(config).await?;
    let cli = Actor::CommandLine;
    match command {
        AdminCommand::CreateUser {
            username,
            display_name,
            role,
            patient,
            password_stdin,
        } => {
            let password = if password_stdin {
                let mut text = String::new();
                std::io::stdin()
                    .read_to_string(&mut text)
                    .context("reading the password")?;
                Some(text.trim_end_matches(['\r', '\n']).to_owned())
            } else {
                None
            };
            let created = service
                .create_user(
                    &cli,
                    NewAccount {
                        username,
                        display_name,
                        role,
                        password,
                        patient_id: match patient {
                            Some(patient) => Some(patient_named(&service, &patient).await?),
                            None => None,
                        },
                        password_change_required: None,
                    },
                )
                .await
                .map_err(fail)?;
            let user = created.user;
            println!("user {} ({}) id {}", user.username, user.role, user.id);
            if let Some(password) = created.generated_password {
                println!("password (shown only now): {password}");
            }
            if user.password_change_required {
                println!("  (to be changed at the first login)");
            }
        }
        AdminCommand::DisableUser { username } => {
            let user = service.user_named(&username).await.map_err(fail)?;
            service.disable_user(&cli, user.id).await.map_err(fail)?;
            println!("disabled {username}; their sessions are revoked");
        }
        AdminCommand::ResetSecondFactor { username } => {
            let user = service.user_named(&username).await.map_err(fail)?;
            service
                .reset_second_factor(&cli, user.id)
                .await
                .map_err(fail)?;
            println!(
                "{username}'s second factor is removed; they set up a new one at their next login"
            );
        }
        AdminCommand::CreatePatient {
            name,
            birth_date,
            mrn,
        } => {
            let patient = service
                .create_patient(
                    &cli,
                    PatientDetails {
                        display_name: name,
                        birth_date,
                        mrn,
                    },
                )
                .await
                .map_err(fail)?;
            println!("patient {} id {}", patient.display_name, patient.id);
        }
        AdminCommand::RegisterBackendClient { name, jwks, teams } => {
            let text = std::fs::read_to_string(&jwks)
                .with_context(|| format!("reading the key set {}", jwks.display()))?;
            let jwks: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not JSON", jwks.display()))?;
            let mut care_teams = Vec::with_capacity(teams.len());
            for team in &teams {
                care_teams.push(team_named(&service, team).await?);
            }
            let client = service
                .register_backend_client(
                    &cli,
                    wardline_service::backend_services::ClientRegistration {
                        name,
                        jwks,
                        care_teams,
                    },
                )
                .await
                .map_err(fail)?;
            println!("backend client {} client_id {}", client.name, client.id);
        }
        AdminCommand::BackendClients => {
            for client in service.backend_clients(&cli).await.map_err(fail)? {
                let state = match client.revoked {
                    Some(at) => format!("revoked {}", at.to_rfc3339()),
                    None => "active".to_owned(),
                };
                println!(
                    "{}  {}  {} care teams  {state}",
                    client.id,
                    client.name,
                    client.care_teams.len()
                );
            }
        }
        AdminCommand::RevokeBackendClient { client } => {
            service
                .revoke_backend_client(&cli, &client)
                .await
                .map_err(fail)?;
            println!("revoked");
        }
        AdminCommand::CreateCareTeam { name } => {
            let team = service.create_care_team(&cli, &name).await.map_err(fail)?;
            println!("care team {} id {}", team.name, team.id);
        }
        AdminCommand::AddMember { team, user } => {
            let (team, user) = (
                team_named(&service, &team).await?,
                user_named(&service, &user).await?,
            );
            service
                .add_care_team_member(&cli, team, user)
                .await
                .map_err(fail)?;
            println!("added");
        }
        AdminCommand::AddPatient { team, patient } => {
            let (team, patient) = (
                team_named(&service, &team).await?,
                patient_named(&service, &patient).await?,
            );
            service
                .add_care_team_patient(&cli, team, patient)
                .await
                .map_err(fail)?;
            println!("added");
        }
        AdminCommand::RemoveMember { team, user } => {
            let (team, user) = (
                team_named(&service, &team).await?,
                user_named(&service, &user).await?,
            );
            service
                .remove_care_team_member(&cli, team, user)
                .await
                .map_err(fail)?;
            println!("removed");
        }
        AdminCommand::RemovePatient { team, patient } => {
            let (team, patient) = (
                team_named(&service, &team).await?,
                patient_named(&service, &patient).await?,
            );
            service
                .remove_care_team_patient(&cli, team, patient)
                .await
                .map_err(fail)?;
            println!("removed");
        }
        AdminCommand::EnrolDevice {
            kind,
            model,
            serial,
            device_id,
            patient,
        } => {
            let enrolled = service
                .enrol_device(
                    &cli,
                    Enrolment {
                        kind,
                        model,
                        serial,
                        device_id,
                        patient_id: match patient {
                            Some(patient) => Some(patient_named(&service, &patient).await?),
                            None => None,
                        },
                    },
                )
                .await
                .map_err(fail)?;
            let device_id = enrolled.device.id;
            println!("device      {device_id}");
            println!(
                "secret      {}   (shown only now)",
                enrolled.secret.expose()
            );
            println!(
                "mqtt        username {device_id}, password = the secret, client id {device_id}"
            );
            println!("  publish   {}  (QoS 1)", readings_topic(&device_id));
            println!("  errors    {}", errors_topic(&device_id));
            println!(
                "http        POST /api/v1/devices/{device_id}/readings  Authorization: Bearer <secret>"
            );
        }
        AdminCommand::AssignDevice { device, patient } => {
            let patient = patient_named(&service, &patient).await?;
            service
                .assign_device(&cli, &device, patient, None)
                .await
                .map_err(fail)?;
            println!("assigned");
        }
        AdminCommand::RevokeDevice { device } => {
            service.revoke_device(&cli, &device).await.map_err(fail)?;
            println!("revoked {device}");
        }
        AdminCommand::SetCarePlan {
            patient,
            program,
            reason,
            peak_flow_best,
        } => {
            let patient = patient_named(&service, &patient).await?;
            let record = service
                .set_care_plan(
                    &cli,
                    patient,
                    CarePlanRequest {
                        reason,
                        program: Some(parse_program(&program)?),
                        baseline: Some(wardline_alerting::PatientBaseline {
                            peak_flow_personal_best_l_min: peak_flow_best,
                        }),
                        edit: None,
                    },
                )
                .await
                .map_err(fail)?;
            println!(
                "care plan version {} for patient {patient}: {} rules",
                record.version,
                record.plan.rules.len()
            );
        }
        AdminCommand::List => {
            for user in service.list_users(&cli).await.map_err(fail)? {
                println!(
                    "user     {}  {:<24} {:<10} {}",
                    user.id,
                    user.username,
                    user.role,
                    if user.disabled { "disabled" } else { "" }
                );
            }
            for patient in service.list_patients(&cli).await.map_err(fail)? {
                println!("patient  {}  {}", patient.id, patient.display_name);
            }
            for team in service.list_care_teams(&cli).await.map_err(fail)? {
                println!(
                    "team     {}  {} ({} members, {} patients)",
                    team.id,
                    team.name,
                    team.members.len(),
                    team.patients.len()
                );
            }
            for device in service.list_devices(&cli).await.map_err(fail)? {
                println!(
                    "device   {:<24} {:<20} {}",
                    device.id,
                    device.kind,
                    device.status.as_str()
                );
            }
        }
        AdminCommand::RotateDatabaseKey { .. } => {
            bail!("the key rotation runs before the database is opened, not after")
        }
        AdminCommand::RegisterTemplate {
            model,
            device_template,
            fhir_template,
        } => {
            let read = |path: &std::path::Path| {
                std::fs::read(path).with_context(|| format!("reading {}", path.display()))
            };
            let checked = service
                .register_mapping_template(
                    &cli,
                    &model,
                    &read(&device_template)?,
                    &read(&fhir_template)?,
                )
                .await
                .map_err(fail)?;
            print_template(&checked.template, &checked.warnings);
        }
        AdminCommand::ListTemplates => {
            for checked in service.mapping_templates(&cli).await.map_err(fail)? {
                print_template(&checked.template, &checked.warnings);
            }
        }
        AdminCommand::TryTemplate {
            template,
            payload,
            device,
        } => {
            let payload = std::fs::read(&payload)
                .with_context(|| format!("reading {}", payload.display()))?;
            let trial = service
                .try_mapping_template(&cli, &template, &payload, device.as_ref())
                .await
                .map_err(fail)?;
            match &trial.refused {
                Some(error) => println!("refused     {error}"),
                None => println!("this payload would give:"),
            }
            for reading in &trial.readings {
                println!("  {}", reading.description);
            }
            for not_kept in &trial.not_kept {
                println!("not kept    {not_kept}");
            }
            if !trial.device_checked {
                println!("(the device a message names was not checked: give --device)");
            }
        }
        AdminCommand::PutTemplateInForce { template } => {
            let checked = service
                .put_mapping_template_in_force(&cli, &template)
                .await
                .map_err(fail)?;
            print_template(&checked.template, &checked.warnings);
        }
        AdminCommand::RetireTemplate { template } => {
            let checked = service
                .retire_mapping_template(&cli, &template)
                .await
                .map_err(fail)?;
            print_template(&checked.template, &checked.warnings);
        }
        AdminCommand::VerifyAudit => {
            let key = crate::audit::load_or_create_key(&config.keys_dir)?;
            let checkpoint =
                crate::audit::newest_checkpoint(&key, &config.audit_checkpoint_file)
                    .map_err(|error| anyhow::anyhow!("audit trail check failed: {error:#}"))?;
            match service.verify_audit(&cli, Some(&checkpoint)).await {
                Ok(AuditVerdict::Intact { events, .. }) => println!(
                    "audit trail intact: {events} events verified; the newest checkpoint \
                     (entry {}, {}) is in it",
                    checkpoint.sequence, checkpoint.time
                ),
                Ok(AuditVerdict::Broken(reason)) => bail!("audit trail check failed: {reason}"),
                Err(error) => bail!("audit trail check failed: {}", error.message()),
            }
        }
    }
    Ok(())
}

/// A programme by its name (`diabetes`, `cardiac`, `respiratory`, `post_surgery`,
/// `general_vitals`).
pub fn parse_program(name: &str) -> anyhow::Result<wardline_alerting::Program> {
    serde_json::from_value(serde_json::Value::String(name.replace('-', "_"))).map_err(|_| {
        anyhow::anyhow!(
            "unknown program {name:?}: diabetes, cardiac, respiratory, post_surgery or general_vitals"
        )
    })
}
