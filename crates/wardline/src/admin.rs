//! `wardline admin …`: the same operations as the admin API, straight on a data folder
//! (safe beside a running server: SQLite's WAL lets both write in turn). Every change is
//! audited with the actor `cli`.

use std::io::Read;
use std::path::Path;

use anyhow::{Context, bail};
use chrono::Utc;
use clap::Subcommand;
use wardline_domain::{CareTeamId, DeviceId, DeviceKind, PatientId, Role, UserId};
use wardline_ingest::DeviceSecret;
use wardline_ingest::mqtt::{errors_topic, readings_topic};
use wardline_store::{
    AuditEvent, AuditOutcome, DeviceStatus, NewDevice, NewPatient, NewUser, Store,
};

use crate::server::open_store;

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
        /// For a patient account: the patient record it belongs to.
        #[arg(long)]
        patient: Option<PatientId>,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Disable a user: their sessions end at once and they can no longer log in.
    DisableUser {
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
    /// Add a clinician or nurse to a care team.
    AddMember {
        #[arg(long)]
        team: CareTeamId,
        #[arg(long)]
        user: UserId,
    },
    /// Put a patient in a care team's care.
    AddPatient {
        #[arg(long)]
        team: CareTeamId,
        #[arg(long)]
        patient: PatientId,
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
        /// Assign to this patient from now on.
        #[arg(long)]
        patient: Option<PatientId>,
    },
    /// Assign a device to a patient from now on.
    AssignDevice {
        #[arg(long)]
        device: DeviceId,
        #[arg(long)]
        patient: PatientId,
    },
    /// Revoke a device's credential (it can no longer connect or send).
    RevokeDevice {
        #[arg(long)]
        device: DeviceId,
    },
    /// Assign a monitoring programme's default rules to a patient (a new care plan
    /// version; a running server picks it up within a minute).
    SetCarePlan {
        #[arg(long)]
        patient: PatientId,
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
    /// Check the audit trail's hash chain.
    VerifyAudit,
}

async fn audit(
    store: &dyn Store,
    action: &str,
    patient_id: Option<PatientId>,
    detail: String,
) -> anyhow::Result<()> {
    store
        .append_audit(vec![AuditEvent {
            time: Utc::now(),
            actor: None,
            actor_label: "cli".into(),
            action: action.into(),
            patient_id,
            outcome: AuditOutcome::Allowed,
            remote_addr: None,
            detail: Some(detail),
        }])
        .await?;
    Ok(())
}

pub async fn run(data_dir: &Path, command: AdminCommand) -> anyhow::Result<()> {
    let store = open_store(data_dir).await?;
    match command {
        AdminCommand::CreateUser {
            username,
            display_name,
            role,
            patient,
            password_stdin,
        } => {
            let (password, generated) = if password_stdin {
                let mut text = String::new();
                std::io::stdin()
                    .read_to_string(&mut text)
                    .context("reading the password")?;
                let password = text.trim_end_matches(['\r', '\n']).to_owned();
                wardline_api::auth::check_password_strength(&password)
                    .map_err(|error| anyhow::anyhow!("{error}"))?;
                (password, false)
            } else {
                (
                    wardline_api::auth::generate_password()
                        .map_err(|error| anyhow::anyhow!("{error}"))?,
                    true,
                )
            };
            let password_hash = wardline_api::auth::hash_password(password.clone())
                .await
                .map_err(|error| anyhow::anyhow!("{error}"))?;
            let user = store
                .create_user(NewUser {
                    username,
                    display_name,
                    role,
                    password_hash,
                    patient_id: patient,
                })
                .await?;
            audit(&store, "users.create", None, user.username.clone()).await?;
            println!("user {} ({}) id {}", user.username, user.role, user.id);
            if generated {
                println!("password (shown only now): {password}");
            }
        }
        AdminCommand::DisableUser { username } => {
            let Some(credentials) = store.user_credentials(&username).await? else {
                bail!("no user {username:?}");
            };
            store.set_user_disabled(credentials.user.id, true).await?;
            audit(&store, "users.disable", None, username.clone()).await?;
            println!("disabled {username}; their sessions are revoked");
        }
        AdminCommand::CreatePatient {
            name,
            birth_date,
            mrn,
        } => {
            let patient = store
                .create_patient(NewPatient {
                    display_name: name,
                    birth_date,
                    mrn,
                })
                .await?;
            audit(&store, "patients.create", Some(patient.id), String::new()).await?;
            println!("patient {} id {}", patient.display_name, patient.id);
        }
        AdminCommand::CreateCareTeam { name } => {
            let team = store.create_care_team(&name).await?;
            audit(&store, "care_teams.create", None, name).await?;
            println!("care team {} id {}", team.name, team.id);
        }
        AdminCommand::AddMember { team, user } => {
            store.add_care_team_member(team, user).await?;
            audit(
                &store,
                "care_teams.add_member",
                None,
                format!("team {team} user {user}"),
            )
            .await?;
            println!("added");
        }
        AdminCommand::AddPatient { team, patient } => {
            store.add_care_team_patient(team, patient).await?;
            audit(
                &store,
                "care_teams.add_patient",
                Some(patient),
                format!("team {team}"),
            )
            .await?;
            println!("added");
        }
        AdminCommand::EnrolDevice {
            kind,
            model,
            serial,
            device_id,
            patient,
        } => {
            let device_id = device_id.unwrap_or_else(DeviceId::random);
            let secret =
                DeviceSecret::generate().map_err(|_| anyhow::anyhow!("no randomness available"))?;
            store
                .create_device(NewDevice {
                    id: device_id.clone(),
                    kind,
                    model,
                    serial,
                    secret_hash: secret.hash(),
                })
                .await?;
            if let Some(patient) = patient {
                store.assign_device(&device_id, patient, Utc::now()).await?;
            }
            audit(&store, "devices.enrol", patient, device_id.to_string()).await?;
            println!("device      {device_id}");
            println!("secret      {}   (shown only now)", secret.expose());
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
            store.assign_device(&device, patient, Utc::now()).await?;
            audit(&store, "devices.assign", Some(patient), device.to_string()).await?;
            println!("assigned");
        }
        AdminCommand::RevokeDevice { device } => {
            store
                .set_device_status(&device, DeviceStatus::Revoked)
                .await?;
            audit(&store, "devices.revoke", None, device.to_string()).await?;
            println!("revoked {device}");
        }
        AdminCommand::SetCarePlan {
            patient,
            program,
            reason,
            peak_flow_best,
        } => {
            let program = parse_program(&program)?;
            let baseline = wardline_alerting::PatientBaseline {
                peak_flow_personal_best_l_min: peak_flow_best,
            };
            let record = set_care_plan(&store, patient, program, &baseline, &reason, "cli").await?;
            let rules = record.plan["rules"].as_array().map_or(0, Vec::len);
            println!(
                "care plan version {} for patient {patient}: {rules} rules",
                record.version
            );
        }
        AdminCommand::List => {
            for user in store.users().await? {
                println!(
                    "user     {}  {:<24} {:<10} {}",
                    user.id,
                    user.username,
                    user.role,
                    if user.disabled { "disabled" } else { "" }
                );
            }
            for patient in store.patients().await? {
                println!("patient  {}  {}", patient.id, patient.display_name);
            }
            for team in store.care_teams().await? {
                println!(
                    "team     {}  {} ({} members, {} patients)",
                    team.id,
                    team.name,
                    team.members.len(),
                    team.patients.len()
                );
            }
            for device in store.devices().await? {
                println!(
                    "device   {:<24} {:<20} {}",
                    device.id,
                    device.kind,
                    device.status.as_str()
                );
            }
        }
        AdminCommand::VerifyAudit => match store.verify_audit_chain().await {
            Ok(count) => println!("audit trail intact: {count} events verified"),
            Err(error) => bail!("audit trail check failed: {error}"),
        },
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

/// Writes a new care plan version with a programme's default rules, straight to the store
/// (for the command line and tools; a running server adopts it within 15 s, while
/// `AlarmService::set_care_plan` and `PUT /api/v1/patients/{id}/care-plan` apply it at
/// once). Audited with `author_label`.
pub async fn set_care_plan(
    store: &dyn Store,
    patient: PatientId,
    program: wardline_alerting::Program,
    baseline: &wardline_alerting::PatientBaseline,
    reason: &str,
    author_label: &str,
) -> anyhow::Result<wardline_store::CarePlanVersionRecord> {
    let plan = wardline_alerting::CarePlan::from_program(patient, program, baseline, Utc::now());
    store_care_plan(store, patient, plan, reason, author_label).await
}

/// Stores `plan` as the patient's next care plan version: its patient id and version are
/// set here, and it takes effect at its `effective_from` (at the earliest when the latest
/// version did). For tools such as `wardline demo` that build plans themselves.
pub async fn store_care_plan(
    store: &dyn Store,
    patient: PatientId,
    mut plan: wardline_alerting::CarePlan,
    reason: &str,
    author_label: &str,
) -> anyhow::Result<wardline_store::CarePlanVersionRecord> {
    if reason.trim().is_empty() {
        bail!("a care plan change needs a reason");
    }
    if store.patient(patient).await?.is_none() {
        bail!("no patient {patient}");
    }
    let versions = store.care_plan_versions(patient).await?;
    let latest = versions.last();
    plan.patient_id = patient;
    plan.version = latest.map_or(1, |latest| latest.version + 1);
    if let Some(latest) = latest {
        plan.effective_from = plan.effective_from.max(latest.effective);
    }
    plan.validate()?;
    let record = wardline_store::CarePlanVersionRecord {
        patient_id: patient,
        version: plan.version,
        effective: plan.effective_from,
        author: None,
        author_label: author_label.to_owned(),
        reason: reason.trim().to_owned(),
        plan: serde_json::to_value(&plan)?,
        old_rule: None,
        new_rule: None,
    };
    store.append_care_plan_version(record.clone()).await?;
    audit(
        store,
        "care_plan.assign",
        Some(patient),
        format!("version {}", record.version),
    )
    .await?;
    Ok(record)
}
