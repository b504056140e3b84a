//! CGM files a clinic receives: Dexcom Clarity and LibreView exports, imported into a
//! patient's record as the CGM readings they hold, through the same ingest as a device's.
//!
//! Each source has one import device per patient (`import-clarity-…`,
//! `import-libreview-…`), and a reading's `seq` is made from its time and kind, so
//! importing the same file twice adds nothing and an overlapping later export adds only
//! what is new. Exports carry local clock times without a zone: the importer names the
//! patient's time zone, and a time the clocks skipped (spring forward) is refused while
//! one they repeated (fall back) is read as the first of the two.

use std::collections::HashMap;

use chrono::{DateTime, LocalResult, TimeZone, Utc};
use serde::Serialize;
use wardline_analytics::cgm::{
    CgmImport, ImportedKind, RefusedRow, import_dexcom_clarity, import_libreview,
};
use wardline_domain::{DeviceId, DeviceKind, ObservationCode, PatientId, Reading, Role};
use wardline_store::{InitialAssignment, NewDevice, StoreError};

use crate::Wardline;
use crate::actor::Actor;
use crate::credentials::DeviceSecret;
use crate::error::Error;
use crate::ingest::{MessageVerdict, Rejection};

/// Most refused rows a summary lists (it counts them all).
const LISTED_REFUSALS: usize = 100;

/// The exports Wardline imports.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ImportSource {
    /// Dexcom Clarity's CSV export.
    Clarity,
    /// LibreView's glucose CSV export (FreeStyle Libre readers, the LibreLink app).
    Libreview,
}

impl ImportSource {
    pub fn parse(text: &str) -> Result<Self, Error> {
        match text {
            "clarity" => Ok(ImportSource::Clarity),
            "libreview" => Ok(ImportSource::Libreview),
            other => Err(Error::invalid(
                "source",
                format!("{other:?} is not an export Wardline imports (clarity, libreview)"),
            )),
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            ImportSource::Clarity => "clarity",
            ImportSource::Libreview => "libreview",
        }
    }

    fn model(self) -> &'static str {
        match self {
            ImportSource::Clarity => "Dexcom Clarity import",
            ImportSource::Libreview => "LibreView import",
        }
    }
}

/// A row the import did not take.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RefusedLine {
    pub line: usize,
    pub field: String,
    pub reason: String,
}

impl From<RefusedRow> for RefusedLine {
    fn from(row: RefusedRow) -> Self {
        Self {
            line: row.line,
            field: row.field,
            reason: row.reason,
        }
    }
}

/// What an import did.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImportSummary {
    pub source: ImportSource,
    pub time_zone: String,
    /// The device the readings are stored under.
    pub device_id: DeviceId,
    /// Glucose readings newly stored.
    pub imported: usize,
    /// Readings stored before (by an earlier import of the same or an overlapping file).
    pub duplicates: usize,
    /// Rows with a glucose that were not taken: how many, and the first 100 of them.
    pub refused: usize,
    pub refused_rows: Vec<RefusedLine>,
    /// Rows that hold something else (alerts, insulin, food, the patient's details).
    pub other_rows: usize,
    /// Local times the clocks repeated (the autumn change), placed by the rows' order.
    pub ambiguous_times: usize,
    /// The first and last reading taken.
    pub first: Option<DateTime<Utc>>,
    pub last: Option<DateTime<Utc>>,
}

impl Wardline {
    /// Imports a CGM export into the patient's record (the patient, a clinician or nurse
    /// of their care team, or the command line). Audited once, before anything is stored.
    pub async fn import_cgm(
        &self,
        actor: &Actor,
        patient_id: PatientId,
        source: ImportSource,
        text: &str,
        time_zone: &str,
    ) -> Result<ImportSummary, Error> {
        let zone: chrono_tz::Tz = time_zone.parse().map_err(|_| {
            Error::invalid(
                "time_zone",
                format!("{time_zone:?} is not a time zone (an IANA name such as Europe/London)"),
            )
        })?;
        let audit = match actor {
            Actor::CommandLine => actor.allowed("imports.cgm", Some(patient_id), None),
            _ => {
                self.authorize_patient_change(
                    actor,
                    patient_id,
                    "imports.cgm",
                    &[Role::Patient, Role::Clinician, Role::Nurse],
                    Some(format!("{} export", source.as_str())),
                )
                .await?
                .audit
            }
        };
        if self.store.patient(patient_id).await?.is_none() {
            return Err(Error::NotFound(format!("patient {patient_id}")));
        }
        let file = match source {
            ImportSource::Clarity => import_dexcom_clarity(text),
            ImportSource::Libreview => import_libreview(text),
        }
        .map_err(|error| Error::invalid("file", error.to_string()))?;
        let device_id = self.import_device(actor, patient_id, source).await?;
        let mut summary = ImportSummary {
            source,
            time_zone: zone.name().to_owned(),
            device_id: device_id.clone(),
            imported: 0,
            duplicates: 0,
            refused: 0,
            refused_rows: Vec::new(),
            other_rows: file.other_rows,
            ambiguous_times: 0,
            first: None,
            last: None,
        };
        let readings = self.import_readings(file, zone, &mut summary);
        // Audited before anything is stored, so that an import cut short (a failure, a
        // deadline) is still in the trail.
        let mut audit = audit;
        audit.detail = Some(format!(
            "{} export in {}: {} readings to store, {} rows refused",
            source.as_str(),
            summary.time_zone,
            readings.len(),
            summary.refused
        ));
        self.audit(audit).await?;
        for batch in readings.chunks(self.ingest.limits().max_readings.max(1)) {
            self.store_import_batch(&device_id, batch, &mut summary)
                .await?;
        }
        summary.refused_rows.truncate(LISTED_REFUSALS);
        Ok(summary)
    }

    /// The patient's import device for `source`, enrolled at its first import.
    async fn import_device(
        &self,
        actor: &Actor,
        patient_id: PatientId,
        source: ImportSource,
    ) -> Result<DeviceId, Error> {
        let device_id = DeviceId::parse(&format!(
            "import-{}-{}",
            source.as_str(),
            patient_id.to_string().replace('-', "")
        ))
        .map_err(|error| Error::Internal(error.to_string()))?;
        if self.store.device(&device_id).await?.is_some() {
            return Ok(device_id);
        }
        // The device never connects: its secret is made only because every device has one.
        let secret =
            DeviceSecret::generate().map_err(|_| Error::Internal("no randomness".into()))?;
        let enrolled = self
            .store
            .enrol_device(
                NewDevice {
                    id: device_id.clone(),
                    kind: DeviceKind::Cgm,
                    model: source.model().into(),
                    serial: patient_id.to_string(),
                    secret_hash: secret.hash(),
                    created: self.now(),
                },
                Some(InitialAssignment {
                    patient_id,
                    from: wardline_domain::nightscout::earliest(),
                }),
                actor.allowed(
                    "devices.enrol",
                    Some(patient_id),
                    Some(device_id.to_string()),
                ),
            )
            .await;
        match enrolled {
            // Another import enrolled it first.
            Ok(_) | Err(StoreError::Conflict { .. }) => Ok(device_id),
            Err(error) => Err(error.into()),
        }
    }

    /// The file's readings in UTC with their `seq`s, one per time and kind; rows refused
    /// for their time are counted in `summary`.
    fn import_readings(
        &self,
        file: CgmImport,
        zone: chrono_tz::Tz,
        summary: &mut ImportSummary,
    ) -> Vec<Reading> {
        summary.refused += file.refused.len();
        summary
            .refused_rows
            .extend(file.refused.into_iter().map(RefusedLine::from));
        let latest = self.now() + self.settings.payload_limits.max_future_skew;
        let mut by_seq: HashMap<i64, f64> = HashMap::new();
        let mut readings = Vec::with_capacity(file.readings.len());
        let refuse = |summary: &mut ImportSummary, line: usize, field: &str, reason: String| {
            summary.refused += 1;
            summary.refused_rows.push(RefusedLine {
                line,
                field: field.into(),
                reason,
            });
        };
        // The last reading's time, for the repeated hour of the autumn change.
        let mut previous: Option<DateTime<Utc>> = None;
        for reading in file.readings {
            let effective = match zone.from_local_datetime(&reading.local) {
                LocalResult::Single(time) => time.with_timezone(&Utc),
                LocalResult::Ambiguous(first, second) => {
                    // The rows are in time order: once the clock labels step back inside
                    // the repeated hour, the readings are of its second pass.
                    summary.ambiguous_times += 1;
                    let first = first.with_timezone(&Utc);
                    if previous.is_some_and(|previous| previous >= first) {
                        second.with_timezone(&Utc)
                    } else {
                        first
                    }
                }
                LocalResult::None => {
                    refuse(
                        summary,
                        reading.line,
                        "time",
                        format!(
                            "{} did not happen in {} (the clocks went forward)",
                            reading.local,
                            zone.name()
                        ),
                    );
                    continue;
                }
            };
            previous = Some(effective);
            if effective > latest || effective < wardline_domain::nightscout::earliest() {
                refuse(
                    summary,
                    reading.line,
                    "time",
                    format!("{effective} is in the future or before 2000"),
                );
                continue;
            }
            let seq = effective.timestamp() * 2 + i64::from(reading.kind == ImportedKind::Scan);
            match by_seq.get(&seq) {
                Some(value) if *value == reading.glucose_mg_dl => {
                    summary.duplicates += 1;
                    continue;
                }
                Some(_) => {
                    refuse(
                        summary,
                        reading.line,
                        "time",
                        format!("a second reading at {} with another value", reading.local),
                    );
                    continue;
                }
                None => {
                    by_seq.insert(seq, reading.glucose_mg_dl);
                }
            }
            summary.first = Some(
                summary
                    .first
                    .map_or(effective, |first| first.min(effective)),
            );
            summary.last = Some(summary.last.map_or(effective, |last| last.max(effective)));
            readings.push(Reading {
                seq,
                code: ObservationCode::GlucoseCgm,
                value: reading.glucose_mg_dl,
                original: None,
                effective,
            });
        }
        readings
    }

    /// Stores one batch; a batch refused for a reading stored before with another value
    /// (an edited export) is stored reading by reading, refusing only those.
    async fn store_import_batch(
        &self,
        device_id: &DeviceId,
        batch: &[Reading],
        summary: &mut ImportSummary,
    ) -> Result<(), Error> {
        let verdict = self
            .store_import_readings(device_id, batch.to_vec())
            .await?;
        match verdict {
            MessageVerdict::Stored { new, duplicates } => {
                summary.imported += new;
                summary.duplicates += duplicates;
            }
            MessageVerdict::Rejected(Rejection::SeqConflict { .. }) => {
                for reading in batch {
                    match self
                        .store_import_readings(device_id, vec![reading.clone()])
                        .await?
                    {
                        MessageVerdict::Stored { new, duplicates } => {
                            summary.imported += new;
                            summary.duplicates += duplicates;
                        }
                        MessageVerdict::Rejected(rejection) => {
                            summary.refused += 1;
                            summary.refused_rows.push(RefusedLine {
                                line: 0,
                                field: "glucose".into(),
                                reason: format!(
                                    "{}: stored before with another value ({rejection})",
                                    reading.effective
                                ),
                            });
                        }
                    }
                }
            }
            MessageVerdict::Rejected(rejection) => return Err(Error::from(rejection)),
        }
        Ok(())
    }

    async fn store_import_readings(
        &self,
        device_id: &DeviceId,
        readings: Vec<Reading>,
    ) -> Result<MessageVerdict, Error> {
        Ok(self
            .ingest
            .store_readings(device_id, "import", readings)
            .await?)
    }
}
