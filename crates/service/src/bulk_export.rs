//! Bulk export (FHIR Bulk Data Access; docs/fhir.md, "Bulk export"): a hospital's
//! integration engine asks for whole records of a care team's patients, and fetches
//! them later as NDJSON files, one FHIR resource per line.
//!
//! Who may export whose records is decided when the export is asked for, patient by
//! patient, through the one access check (each decision audited): a patient their own
//! record, a care team member the patients of their teams. Specialists read what is
//! shared with them by search; a share is a window onto a record, not the record.
//! Every download decides again, so an export made before someone left the team cannot
//! be fetched after.
//!
//! A worker claims the export (any worker on the database; see [`BulkExportStore`]),
//! and writes each resource type's files page by page from the store: a year of
//! one-minute vitals for hundreds of patients is never held in memory. An export holds
//! what had arrived before it was asked for (its `transactionTime`), and with `_since`
//! only what arrived or changed from then on, so that a nightly export asking with the
//! previous one's `transactionTime` gets every change once.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration, Utc};
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use uuid::Uuid;
use wardline_domain::codes::CATALOGUE;
use wardline_domain::{CareTeamId, DeviceId, PatientId, Role, Signal};
use wardline_store::{
    AlarmQuery, BulkExport, BulkExportEnd, BulkExportOutput, BulkExportStatus, DeviceAssignment,
    NewBulkExport, ObservationQuery, WaveformQuery,
};

use crate::Wardline;
use crate::access::AccessBasis;
use crate::actor::Actor;
use crate::alarms::AlarmView;
use crate::error::Error;
use crate::fhir::DeviceView;
use crate::fhir_resources::{care_plan_resource, detected_issue_resource, device_resource};

/// The resource types an export can hold, in the order they are written.
pub const EXPORT_TYPES: [&str; 5] = [
    "Patient",
    "Device",
    "Observation",
    "CarePlan",
    "DetectedIssue",
];

/// Exports one requester may have under way at once.
pub const MAX_OPEN_EXPORTS: usize = 3;

/// Readings (or alarms) read from the store per page.
const PAGE: u32 = 5000;
const ALARM_PAGE: u32 = 500;
/// ECG chunks read per page (a chunk holds seconds to a minute of samples), and the most
/// the store lists at once.
const ECG_PAGE: u32 = 100;
const MAX_ECG_PAGE: u32 = 1000;

/// How long a claim holds without a word from its worker; the worker reports at least
/// every [`REPORT_EVERY`], so only a dead worker loses its claim.
const LEASE: Duration = Duration::minutes(2);
const REPORT_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// A worker does not begin an export until this long after it was asked for, so that
/// readings that had arrived by then but were still being committed are in it.
pub const COMMIT_MARGIN: Duration = Duration::seconds(2);

/// How bulk exports are kept.
#[derive(Debug, Clone)]
pub struct BulkExportSettings {
    /// Where export files are written; `None`: this process does not run or serve bulk
    /// exports (the command line). Workers on one database share it.
    pub directory: Option<PathBuf>,
    /// How long a finished export's files are kept.
    pub retention: Duration,
    /// Lines per file before the next file of the same type begins.
    pub lines_per_file: u64,
    /// ECG chunks read from the store per page.
    pub ecg_chunks_per_page: u32,
}

impl Default for BulkExportSettings {
    fn default() -> Self {
        Self {
            directory: None,
            retention: Duration::hours(24),
            lines_per_file: 100_000,
            ecg_chunks_per_page: ECG_PAGE,
        }
    }
}

/// Whose records an export asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportLevel {
    /// `Patient/$export`: every patient the requester may export.
    Patients,
    /// `Group/[care team]/$export`: the team's patients.
    Group(CareTeamId),
    /// `$export`: everything the requester may export (for a person, the same patients
    /// as `Patient/$export`).
    System,
}

/// A request to export, as read from the kick-off.
#[derive(Debug, Clone)]
pub struct ExportRequest {
    pub level: ExportLevel,
    /// `_type`; every type when `None`.
    pub types: Option<Vec<String>>,
    /// `_since`.
    pub since: Option<DateTime<Utc>>,
    /// The kick-off URL as received.
    pub request: String,
}

/// What an export is about: what arrived or changed from `since` (everything, without
/// one) until the export was asked for.
#[derive(Debug, Clone, Copy)]
struct Span {
    since: Option<DateTime<Utc>>,
    until: DateTime<Utc>,
}

impl Span {
    /// Whether something that arrived (or was made) at `time`, and never changes, is in
    /// the export.
    fn arrived(self, time: DateTime<Utc>) -> bool {
        self.changed(time) && time < self.until
    }

    /// Whether something that changed last at `time` is, when it existed before `until`:
    /// it is written as it stands when written.
    fn changed(self, time: DateTime<Utc>) -> bool {
        self.since.is_none_or(|since| since <= time)
    }
}

/// Who asked, as the store keeps it: only they may follow, cancel or download.
fn requester_of(actor: &Actor) -> Result<String, Error> {
    match actor {
        Actor::Person(person) => Ok(format!("user:{}", person.user.id)),
        Actor::Client(client) => Ok(format!("client:{}", client.client_id)),
        Actor::CommandLine | Actor::Uploader(_) => Err(Error::Forbidden),
    }
}

/// One output file being written.
struct OutputFile {
    resource_type: &'static str,
    name: String,
    writer: tokio::io::BufWriter<tokio::fs::File>,
    count: u64,
}

/// An export being written by its claim: the files, and the reports that keep the claim.
struct ExportWriter<'a> {
    service: &'a Wardline,
    export: &'a BulkExport,
    directory: PathBuf,
    lines_per_file: u64,
    current: Option<OutputFile>,
    /// The type of the lines written now.
    current_type: Option<&'static str>,
    outputs: Vec<BulkExportOutput>,
    files_of_type: u32,
    written: u64,
    last_report: std::time::Instant,
    stage: String,
}

/// Why a claim stopped writing: cancelled (or taken over), or a failure to record.
enum Stop {
    Lost,
    Failed(Error),
}

impl From<Error> for Stop {
    fn from(error: Error) -> Self {
        Stop::Failed(error)
    }
}

impl From<wardline_store::StoreError> for Stop {
    fn from(error: wardline_store::StoreError) -> Self {
        Stop::Failed(error.into())
    }
}

fn io_error(error: std::io::Error) -> Stop {
    Stop::Failed(Error::Internal(format!("writing an export file: {error}")))
}

impl ExportWriter<'_> {
    async fn begin_type(&mut self, resource_type: &'static str) -> Result<(), Stop> {
        self.close_file().await?;
        self.files_of_type = 0;
        self.stage = resource_type.to_owned();
        // The file itself is opened at the first line: a type with nothing to export
        // has no file, as the manifest then lists none.
        self.current_type = Some(resource_type);
        Ok(())
    }

    async fn write(&mut self, resource: &Value) -> Result<(), Stop> {
        let full = self
            .current
            .as_ref()
            .is_some_and(|file| file.count >= self.lines_per_file);
        if full {
            self.close_file().await?;
        }
        if self.current.is_none() {
            let resource_type = self
                .current_type
                .ok_or_else(|| Stop::Failed(Error::Internal("a line before its type".into())))?;
            self.files_of_type += 1;
            let name = format!("{resource_type}.{}.ndjson", self.files_of_type);
            // Health data: the owner's alone.
            let file = tokio::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(self.directory.join(&name))
                .await
                .map_err(io_error)?;
            self.current = Some(OutputFile {
                resource_type,
                name,
                writer: tokio::io::BufWriter::with_capacity(256 * 1024, file),
                count: 0,
            });
        }
        let mut line = serde_json::to_vec(resource)
            .map_err(|error| Stop::Failed(Error::Internal(error.to_string())))?;
        line.push(b'\n');
        if let Some(file) = self.current.as_mut() {
            file.writer.write_all(&line).await.map_err(io_error)?;
            file.count += 1;
            metrics::counter!("wardline_fhir_export_resources_total", "type" => file.resource_type)
                .increment(1);
        }
        self.written += 1;
        if self.last_report.elapsed() >= REPORT_EVERY {
            self.report().await?;
        }
        Ok(())
    }

    /// Flushes and syncs the open file, and lists it.
    async fn close_file(&mut self) -> Result<(), Stop> {
        if let Some(mut file) = self.current.take() {
            file.writer.flush().await.map_err(io_error)?;
            file.writer.get_mut().sync_all().await.map_err(io_error)?;
            self.outputs.push(BulkExportOutput {
                resource_type: file.resource_type.to_owned(),
                file: file.name,
                count: file.count,
            });
        }
        Ok(())
    }

    /// Says how far the export is, which also keeps the claim; a claim lost (the export
    /// cancelled, or taken over after the lease ran out) stops the writer.
    async fn report(&mut self) -> Result<(), Stop> {
        self.last_report = std::time::Instant::now();
        let progress = format!("{}: {} resources written", self.stage, self.written);
        let held = self
            .service
            .store
            .record_bulk_export_progress(
                self.export.id,
                self.export.attempt,
                progress,
                self.service.now() + LEASE,
            )
            .await?;
        if held { Ok(()) } else { Err(Stop::Lost) }
    }

    fn set_stage(&mut self, stage: String) {
        self.stage = stage;
    }
}

impl Wardline {
    fn export_directory(&self) -> Result<&Path, Error> {
        self.settings
            .bulk_exports
            .directory
            .as_deref()
            .ok_or(Error::Unavailable)
    }

    /// Whose records `actor` asks for at `level`: a patient their own; a care team
    /// member, or a backend client, the patients of their teams (of the one team named,
    /// if they serve it). A refusal is audited.
    async fn export_patients(
        &self,
        actor: &Actor,
        level: ExportLevel,
        now: DateTime<Utc>,
    ) -> Result<Vec<PatientId>, Error> {
        let refuse = |detail: String| {
            actor.audit(
                "fhir.export",
                None,
                wardline_store::AuditOutcome::Denied,
                Some(detail),
                now,
            )
        };
        let teams = match level {
            ExportLevel::Group(team) => {
                let teams = self.store.care_teams().await?;
                let Some(team) = teams.into_iter().find(|candidate| candidate.id == team) else {
                    return Err(Error::NotFound(format!("Group/{team}")));
                };
                let serves = match actor {
                    Actor::Person(person) => team.members.contains(&person.user.id),
                    Actor::Client(client) => client.care_teams.contains(&team.id),
                    Actor::CommandLine | Actor::Uploader(_) => false,
                };
                if !serves {
                    self.audit(refuse(format!(
                        "Group/{}: not one of the requester's care teams",
                        team.id
                    )))
                    .await?;
                    return Err(Error::Forbidden);
                }
                return Ok(team.patients);
            }
            ExportLevel::Patients | ExportLevel::System => match actor {
                Actor::Client(client) => client.care_teams.clone(),
                Actor::Person(person) => match person.user.role {
                    Role::Patient => return Ok(person.user.patient_id.into_iter().collect()),
                    Role::Specialist => {
                        self.audit(refuse("a specialist reads shared records by search".into()))
                            .await?;
                        return Err(Error::not_permitted(
                            "$export",
                            "bulk export is for a patient's own record and their care team; a \
                             specialist reads what is shared by search",
                        ));
                    }
                    Role::Clinician | Role::Nurse | Role::Admin => {
                        return Ok(self
                            .store
                            .patients_of_care_team_member(person.user.id)
                            .await?);
                    }
                },
                Actor::CommandLine | Actor::Uploader(_) => return Err(Error::Forbidden),
            },
        };
        Ok(self
            .store
            .care_teams()
            .await?
            .into_iter()
            .filter(|team| teams.contains(&team.id))
            .flat_map(|team| team.patients)
            .collect())
    }

    /// Records a request to export: whose records (each patient decided by the one
    /// access check and audited as `fhir.export`), which types, since when. The export is
    /// written later by a worker; the requester follows it with [`Self::bulk_export_status`].
    pub async fn request_bulk_export(
        &self,
        actor: &Actor,
        request: ExportRequest,
    ) -> Result<BulkExport, Error> {
        self.export_directory()?;
        let requester = requester_of(actor)?;
        let asked_types = request.types.is_some();
        let mut types: Vec<String> = match request.types {
            None => EXPORT_TYPES.iter().map(|name| (*name).to_owned()).collect(),
            Some(types) => {
                // In the order written, each once.
                let mut chosen = Vec::new();
                for name in EXPORT_TYPES {
                    if types.iter().any(|asked| asked == name) {
                        chosen.push(name.to_owned());
                    }
                }
                chosen
            }
        };
        if let Actor::Client(client) = actor {
            // A client's token reads the types its scopes name, no others.
            if asked_types && let Some(denied) = types.iter().find(|name| !client.may_read(name)) {
                return Err(Error::not_permitted(
                    "_type",
                    format!("{denied}: the access token's scopes do not cover it"),
                ));
            }
            types.retain(|name| client.may_read(name));
        }
        if types.is_empty() {
            return Err(Error::invalid("_type", "names no type to export"));
        }
        let now = self.now();
        if request.since.is_some_and(|since| since > now) {
            return Err(Error::invalid("_since", "is in the future"));
        }
        let open = self.store.open_bulk_exports_of(&requester).await?;
        if open.len() >= MAX_OPEN_EXPORTS {
            return Err(Error::TooManyExports {
                open: open.len(),
                retry_after_secs: 60,
            });
        }
        let mut patients = self.export_patients(actor, request.level, now).await?;
        patients.sort_by_key(|patient| patient.to_string());
        patients.dedup();
        // Each patient through the one access check: a share or an emergency access is
        // not a basis for taking a whole record away.
        for patient in &patients {
            let access = self
                .authorize_patient(
                    actor,
                    *patient,
                    "fhir.export",
                    Some(format!("bulk export of {}", types.join(","))),
                )
                .await?;
            if !matches!(
                access.basis(),
                AccessBasis::OwnRecord | AccessBasis::CareTeam
            ) {
                return Err(Error::Forbidden);
            }
        }
        // Times are kept to the millisecond: the export holds everything that arrived in
        // the millisecond it was asked in (the next one, asked `_since` its
        // `transactionTime`, begins after it), so that nothing falls between two.
        let created = DateTime::from_timestamp_millis(now.timestamp_millis().saturating_add(1))
            .unwrap_or(now);
        let export = NewBulkExport {
            id: Uuid::new_v4(),
            requester,
            request: request.request,
            created,
            types: types.clone(),
            since: request.since,
            patients,
        };
        let detail = format!(
            "{} patients; {}{}",
            export.patients.len(),
            types.join(","),
            export
                .since
                .map(|since| format!(" since {}", since.to_rfc3339()))
                .unwrap_or_default()
        );
        Ok(self
            .store
            .create_bulk_export(
                export,
                actor.allowed("fhir.export.request", None, Some(detail)),
            )
            .await?)
    }

    /// The requester's export, as it stands. Anyone else's, a cancelled one and an
    /// expired one are not found.
    pub async fn bulk_export_status(&self, actor: &Actor, id: Uuid) -> Result<BulkExport, Error> {
        self.export_directory()?;
        let requester = requester_of(actor)?;
        let not_found = || Error::NotFound(format!("bulk export {id}"));
        let export = self.store.bulk_export(id).await?.ok_or_else(not_found)?;
        let expired = export.expires.is_some_and(|expires| expires <= self.now());
        if export.requester != requester || export.status == BulkExportStatus::Cancelled || expired
        {
            return Err(not_found());
        }
        Ok(export)
    }

    /// Cancels the requester's export (or, once complete, deletes it): its files go, and
    /// its status is not found from then on. Audited.
    pub async fn cancel_bulk_export(&self, actor: &Actor, id: Uuid) -> Result<(), Error> {
        let export = self.bulk_export_status(actor, id).await?;
        let cancelled = self
            .store
            .cancel_bulk_export(
                export.id,
                self.now(),
                actor.allowed("fhir.export.cancel", None, Some(format!("export {id}"))),
            )
            .await?;
        if !cancelled {
            return Err(Error::NotFound(format!("bulk export {id}")));
        }
        self.clear_ended_bulk_exports().await?;
        Ok(())
    }

    /// One file of the requester's completed export, where it lies. Every patient of the
    /// export is decided again by the one access check (audited as
    /// `fhir.export.download`): someone who has left the care team since cannot fetch it.
    pub async fn bulk_export_file(
        &self,
        actor: &Actor,
        id: Uuid,
        name: &str,
    ) -> Result<(PathBuf, BulkExportOutput), Error> {
        let directory = self.export_directory()?.to_path_buf();
        let export = self.bulk_export_status(actor, id).await?;
        let output = export
            .outputs
            .iter()
            .find(|output| output.file == name)
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("file {name} of bulk export {id}")))?;
        for patient in &export.patients {
            let access = self
                .authorize_patient(
                    actor,
                    *patient,
                    "fhir.export.download",
                    Some(format!("{name} of export {id}")),
                )
                .await?;
            if !matches!(
                access.basis(),
                AccessBasis::OwnRecord | AccessBasis::CareTeam
            ) {
                return Err(Error::Forbidden);
            }
        }
        Ok((
            directory
                .join(id.to_string())
                .join(export.attempt.to_string())
                .join(&output.file),
            output,
        ))
    }

    /// Claims one export waiting for a worker and writes it. `false` when none waits.
    pub async fn run_one_bulk_export(&self) -> Result<bool, Error> {
        let Some(directory) = self.settings.bulk_exports.directory.clone() else {
            return Ok(false);
        };
        let now = self.now();
        let Some(export) = self.store.claim_bulk_export(now, now + LEASE).await? else {
            return Ok(false);
        };
        let begin = export.created + COMMIT_MARGIN;
        if begin > now
            && let Ok(wait) = (begin - now).to_std()
        {
            tokio::time::sleep(wait).await;
        }
        let attempt_directory = directory
            .join(export.id.to_string())
            .join(export.attempt.to_string());
        // What an earlier claim of this export left is of no use to this one.
        remove_directory(&directory.join(export.id.to_string())).await?;
        tokio::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&attempt_directory)
            .await
            .map_err(|error| Error::Internal(format!("making {attempt_directory:?}: {error}")))?;
        let mut writer = ExportWriter {
            service: self,
            export: &export,
            directory: attempt_directory,
            lines_per_file: self.settings.bulk_exports.lines_per_file.max(1),
            current: None,
            current_type: None,
            outputs: Vec::new(),
            files_of_type: 0,
            written: 0,
            last_report: std::time::Instant::now(),
            stage: "starting".into(),
        };
        let written = self.write_export(&mut writer).await;
        let written = match written {
            Ok(()) => writer.close_file().await,
            Err(stop) => Err(stop),
        };
        let finished = self.now();
        let expires = finished + self.settings.bulk_exports.retention;
        let outcome = match &written {
            Ok(()) => "completed",
            Err(Stop::Lost) => "lost",
            Err(Stop::Failed(_)) => "failed",
        };
        metrics::counter!("wardline_fhir_exports_total", "outcome" => outcome).increment(1);
        match written {
            Ok(()) => {
                let outputs = std::mem::take(&mut writer.outputs);
                let kept = self
                    .store
                    .finish_bulk_export(
                        export.id,
                        export.attempt,
                        BulkExportEnd::Completed(outputs),
                        finished,
                        expires,
                    )
                    .await?;
                if !kept {
                    remove_directory(&writer.directory).await?;
                }
            }
            Err(Stop::Lost) => {
                remove_directory(&writer.directory).await?;
            }
            Err(Stop::Failed(error)) => {
                tracing::error!(%error, export = %export.id, "a bulk export failed");
                remove_directory(&writer.directory).await?;
                self.store
                    .finish_bulk_export(
                        export.id,
                        export.attempt,
                        BulkExportEnd::Failed(format!(
                            "the export could not be written ({}); ask for it again",
                            error.code()
                        )),
                        finished,
                        expires,
                    )
                    .await?;
            }
        }
        Ok(true)
    }

    /// Removes the files of cancelled and expired exports, and forgets them.
    pub async fn clear_ended_bulk_exports(&self) -> Result<usize, Error> {
        let Some(directory) = self.settings.bulk_exports.directory.clone() else {
            return Ok(0);
        };
        let ended = self.store.ended_bulk_exports(self.now()).await?;
        for id in &ended {
            remove_directory(&directory.join(id.to_string())).await?;
            self.store.delete_bulk_export(*id).await?;
        }
        Ok(ended.len())
    }

    async fn write_export(&self, writer: &mut ExportWriter<'_>) -> Result<(), Stop> {
        let export = writer.export;
        let until = export.created;
        let span = Span {
            since: export.since,
            until,
        };
        let patients = export.patients.len();
        for resource_type in &export.types {
            let resource_type = EXPORT_TYPES
                .into_iter()
                .find(|name| name == resource_type)
                .ok_or_else(|| {
                    Stop::Failed(Error::Internal(format!("unknown type {resource_type}")))
                })?;
            writer.begin_type(resource_type).await?;
            let mut devices_written: HashSet<DeviceId> = HashSet::new();
            for (index, patient_id) in export.patients.iter().enumerate() {
                writer.set_stage(format!(
                    "{resource_type}, patient {} of {patients}",
                    index + 1
                ));
                match resource_type {
                    "Patient" => {
                        if let Some(patient) = self.store.patient(*patient_id).await?
                            && span.arrived(patient.created)
                        {
                            writer
                                .write(&wardline_fhir::patient(&wardline_fhir::PatientFacts {
                                    id: patient.id,
                                    display_name: patient.display_name,
                                    birth_date: patient.birth_date,
                                    mrn: patient.mrn,
                                }))
                                .await?;
                        }
                    }
                    "Device" => {
                        let assignments = self.store.assignments_of_patient(*patient_id).await?;
                        for assignment in assignments {
                            if !devices_written.insert(assignment.device_id.clone()) {
                                continue;
                            }
                            let Some(device) = self.store.device(&assignment.device_id).await?
                            else {
                                continue;
                            };
                            let history =
                                self.store.device_assignments(&assignment.device_id).await?;
                            let changes = std::iter::once(device.created)
                                .chain(history.iter().map(|a| a.start))
                                .chain(history.iter().filter_map(|a| a.end));
                            if device.created >= until
                                || !changes.into_iter().any(|time| span.changed(time))
                            {
                                continue;
                            }
                            let patient = DeviceAssignment::patient_at(&history, until);
                            writer
                                .write(&device_resource(&DeviceView { device, patient }))
                                .await?;
                        }
                    }
                    "Observation" => {
                        self.write_observations(writer, *patient_id, span).await?;
                    }
                    "CarePlan" => {
                        let versions = self.store.care_plan_versions(*patient_id).await?;
                        // The plan in force when the export was asked for.
                        if let Some(version) = versions
                            .iter()
                            .filter(|version| version.effective < until)
                            .max_by_key(|version| version.version)
                            && span.changed(version.effective)
                        {
                            writer.write(&care_plan_resource(version)).await?;
                        }
                    }
                    "DetectedIssue" => {
                        self.write_alarms(writer, *patient_id, span).await?;
                    }
                    _ => {}
                }
            }
        }
        writer.report().await
    }

    /// The patient's readings, code by code, oldest first, a page at a time.
    /// The patient's NEWS2 results, oldest first, those computed in the span.
    async fn write_news2(
        &self,
        writer: &mut ExportWriter<'_>,
        patient_id: PatientId,
        span: Span,
    ) -> Result<(), Stop> {
        let mut from = wardline_domain::nightscout::earliest();
        loop {
            let page = self
                .store
                .news2_scores(wardline_store::News2Query {
                    patient_id,
                    from,
                    to: span.until + Duration::days(1),
                    limit: PAGE,
                    newest_first: false,
                })
                .await?;
            for record in &page {
                if span.arrived(record.computed.unwrap_or(record.time)) {
                    writer
                        .write(&crate::fhir_resources::news2_resource(record))
                        .await?;
                }
            }
            match page.last() {
                // A patient has at most one result at an instant.
                Some(last) if page.len() as u64 == u64::from(PAGE) => {
                    from = last.time + Duration::milliseconds(1);
                }
                _ => return Ok(()),
            }
        }
    }

    async fn write_observations(
        &self,
        writer: &mut ExportWriter<'_>,
        patient_id: PatientId,
        span: Span,
    ) -> Result<(), Stop> {
        let until = span.until;
        for spec in CATALOGUE {
            let mut after = None;
            loop {
                let page = self
                    .store
                    .observations(ObservationQuery {
                        patient_id,
                        code: spec.code,
                        from: wardline_domain::nightscout::earliest(),
                        // A reading that arrived before `until` was measured before it,
                        // give or take a device clock's allowed skew.
                        to: until + Duration::days(1),
                        after,
                        limit: PAGE,
                        newest_first: false,
                    })
                    .await?;
                let derived = crate::fhir_resources::derived_heart_rates(&page.observations);
                let sources = self
                    .heart_rate_sources(
                        patient_id,
                        &derived,
                        (
                            wardline_domain::nightscout::earliest(),
                            until + Duration::days(1),
                        ),
                        |_| true,
                    )
                    .await?;
                for observation in &page.observations {
                    if span.arrived(observation.received) {
                        let mut resource = wardline_fhir::observation(observation);
                        if let Some(sources) =
                            sources.get(&wardline_fhir::observation_id(observation))
                        {
                            wardline_fhir::with_derived_from(&mut resource, sources);
                        }
                        writer.write(&resource).await?;
                    }
                }
                match page.next {
                    Some(next) => after = Some(next),
                    None => break,
                }
            }
        }
        self.write_news2(writer, patient_id, span).await?;
        for signal in Signal::ALL {
            if wardline_fhir::lead_code(signal).is_some() {
                self.write_ecg_lead(writer, patient_id, signal, span)
                    .await?;
            }
        }
        Ok(())
    }

    /// The patient's chunks of one ECG lead, in the order recorded, each an Observation
    /// with its samples as `valueSampledData`, a page at a time. The store lists the
    /// chunks overlapping a window in the order they began; a page resumes at the start
    /// of the previous page's last chunk and steps over the chunks of that instant it
    /// wrote (several devices may record the same lead at once).
    async fn write_ecg_lead(
        &self,
        writer: &mut ExportWriter<'_>,
        patient_id: PatientId,
        signal: Signal,
        span: Span,
    ) -> Result<(), Stop> {
        let to = span.until + Duration::days(1);
        let mut from = wardline_domain::nightscout::earliest();
        let mut held = 0_u32;
        let page = self
            .settings
            .bulk_exports
            .ecg_chunks_per_page
            .clamp(1, MAX_ECG_PAGE);
        let mut limit = page;
        loop {
            let chunks = self
                .store
                .waveforms(WaveformQuery {
                    patient_id,
                    signal: Some(signal),
                    from,
                    to,
                    limit,
                })
                .await?;
            let full = chunks.len() >= limit as usize;
            let mut stepped = 0;
            let mut last: Option<(DateTime<Utc>, u32)> = None;
            for chunk in &chunks {
                // Running when the page began: written on the page before.
                if chunk.start < from || (chunk.start == from && stepped < held) {
                    if chunk.start == from {
                        stepped += 1;
                    }
                    continue;
                }
                last = match last {
                    Some((at, count)) if at == chunk.start => Some((at, count + 1)),
                    _ => Some((chunk.start, 1)),
                };
                if !span.arrived(chunk.received) {
                    continue;
                }
                let decoded = wardline_waveform::decode(&chunk.encoded).map_err(|error| {
                    Stop::Failed(Error::Internal(format!(
                        "a stored waveform chunk does not decode: {error}"
                    )))
                })?;
                let resource = crate::fhir_resources::ecg_resource(patient_id, chunk, &decoded);
                if let Some(resource) = resource {
                    writer.write(&resource).await?;
                }
            }
            if !full {
                return Ok(());
            }
            match last {
                Some((at, count)) => {
                    held = if at == from { held + count } else { count };
                    from = at;
                    limit = page;
                }
                // A page of chunks all running or already written: read a bigger one.
                None if limit < MAX_ECG_PAGE => limit = (limit * 2).min(MAX_ECG_PAGE),
                None => {
                    return Err(Stop::Failed(Error::Internal(format!(
                        "more than {MAX_ECG_PAGE} chunks of one lead begin at {from}"
                    ))));
                }
            }
        }
    }

    /// The patient's alarms raised before `until`, newest first, a page at a time.
    async fn write_alarms(
        &self,
        writer: &mut ExportWriter<'_>,
        patient_id: PatientId,
        span: Span,
    ) -> Result<(), Stop> {
        let mut raised_to = span.until;
        let mut limit = ALARM_PAGE;
        loop {
            let mut alarms = self
                .store
                .alarms(AlarmQuery {
                    patients: vec![patient_id],
                    states: Vec::new(),
                    raised_from: None,
                    raised_to: Some(raised_to),
                    limit,
                })
                .await?;
            let full = alarms.len() >= limit as usize;
            if full {
                // The next page begins at the oldest instant of this one, whose alarms
                // may not all have fitted: they are left to it, whole.
                let oldest = alarms
                    .last()
                    .map(|alarm| alarm.alarm.raised_at)
                    .unwrap_or(raised_to);
                alarms.retain(|alarm| alarm.alarm.raised_at > oldest);
                if alarms.is_empty() {
                    // One instant holds more than a page: read it with a bigger one.
                    limit = limit.saturating_mul(2);
                    continue;
                }
                raised_to = oldest + Duration::milliseconds(1);
                limit = ALARM_PAGE;
            }
            let mut views = Vec::new();
            // An alarm is written as it stands: acknowledged or resolved since it was
            // raised, it is a change.
            for alarm in alarms.iter().filter(|alarm| span.changed(alarm.updated)) {
                let mut view = AlarmView::of(alarm);
                view.events = Some(self.store.alarm_events(&alarm.public_id).await?);
                views.push(view);
            }
            let names = self.names_in(&views).await?;
            for view in &mut views {
                names.attach(view);
                writer.write(&detected_issue_resource(view)).await?;
            }
            if !full {
                return Ok(());
            }
        }
    }
}

async fn remove_directory(path: &Path) -> Result<(), Error> {
    match tokio::fs::remove_dir_all(path).await {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(Error::Internal(format!("removing {path:?}: {error}"))),
    }
}
