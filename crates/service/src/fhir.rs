//! FHIR uploads (docs/fhir.md): what a device, or a Personal Health Device gateway,
//! posts to `/fhir/R4`. `wardline_fhir` reads the resources; this decides which enrolled
//! device each Observation is of and whose reading it is, and stores it like every other
//! reading: answered only after the durable commit, a repeat storing nothing twice.
//!
//! A sender writes for itself, or, when it is a gateway, for the devices behind it (the
//! devices assigned to the gateway's patient). Wardline never creates a device or a
//! patient from an upload: a Device entry must name an enrolled device the sender may
//! write for, and a Patient entry the patient its devices are assigned to. A reading is
//! the patient's its device was assigned to when it was measured; an Observation whose
//! subject says otherwise is refused rather than filed under the wrong person.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use wardline_domain::{DeviceId, DeviceKind, PatientId};
use wardline_fhir::{
    BundleEntry, BundleKind, DeviceNames, EntryRequest, InboundError, InboundObservation,
    IssueType, PatientNames, Supplement, Target,
};
use wardline_store::{Device, DeviceAssignment, DeviceStatus, EncodedWaveform, IngestPayload};

use crate::Wardline;
use crate::actor::Actor;
use crate::error::Error;
use crate::ingest::{MessageVerdict, Rejection};

/// Why an entry (or the Observation posted alone) was not taken: which entry, the FHIR
/// issue type, and the error with the element it names.
#[derive(Debug)]
pub struct Refusal {
    /// The entry's place in the Bundle; `None` for an Observation posted alone.
    pub index: Option<usize>,
    pub issue: IssueType,
    pub error: Error,
}

impl Refusal {
    fn inbound(index: Option<usize>, error: InboundError) -> Self {
        let issue = error.issue;
        let error = match issue {
            IssueType::Invalid | IssueType::Required => Error::InvalidRequest {
                field: Some(error.expression),
                message: error.message,
            },
            _ => Error::Unprocessable {
                field: error.expression,
                message: error.message,
            },
        };
        Self {
            index,
            issue,
            error,
        }
    }

    fn unprocessable(index: Option<usize>, field: String, message: String) -> Self {
        Self {
            index,
            issue: IssueType::Processing,
            error: Error::Unprocessable { field, message },
        }
    }
}

/// What became of one entry.
#[derive(Debug)]
pub enum EntryAnswer {
    /// An Observation stored now (`created`) or found stored before (a repeat).
    Stored {
        location: String,
        created: bool,
        last_modified: DateTime<Utc>,
    },
    /// A Device or Patient entry that names an enrolled device or the devices' patient.
    Found {
        location: String,
    },
    /// A PHD gateway's supplementary Observation, taken for what it is (a battery level
    /// kept as the device's status, a coincident time stamp noted): what became of it.
    Noted {
        message: String,
    },
    Refused(Refusal),
}

/// How old a battery level may be and still say something of the battery now: a level
/// from a gateway's backlog of last week must not raise, or clear, a low-battery alarm.
const FRESH_BATTERY_LEVEL: chrono::TimeDelta = chrono::TimeDelta::minutes(15);

/// The answer to an upload: whether what it carried is stored (a transaction's all or
/// nothing; for a batch, each entry says), and each entry's answer in order.
#[derive(Debug)]
pub struct UploadAnswer {
    pub stored: bool,
    pub entries: Vec<EntryAnswer>,
}

/// The devices a sender may write for, and what the upload needs of each.
struct Senders {
    /// The sender and, for a gateway, the devices behind it.
    devices: Vec<Device>,
    sender: DeviceId,
    gateway: bool,
    assignments: HashMap<DeviceId, Vec<DeviceAssignment>>,
}

impl Senders {
    /// The device among the sender's that these names name (by its id, its FHIR id or
    /// its serial number).
    fn find(&self, names: &DeviceNames) -> Option<&Device> {
        self.devices.iter().find(|device| {
            let fhir_id = wardline_fhir::device_fhir_id(&device.id);
            names
                .ids
                .iter()
                .any(|id| id == device.id.as_str() || *id == fhir_id)
                || names.serials.contains(&device.serial)
        })
    }

    /// The patient the device was assigned to at `at`.
    fn patient_at(&self, device: &DeviceId, at: DateTime<Utc>) -> Option<PatientId> {
        DeviceAssignment::patient_at(self.assignments.get(device)?, at)
    }
}

impl Wardline {
    /// One reading, by what its FHIR id names (device, derived or not, sequence number),
    /// through the one access check. A reading the actor may not see is answered as one
    /// that does not exist, since ids are made of guessable parts; the refusal is
    /// audited all the same.
    pub async fn fhir_reading(
        &self,
        actor: &Actor,
        device: &DeviceId,
        derived: bool,
        seq: i64,
    ) -> Result<wardline_domain::Observation, Error> {
        let not_found = || Error::NotFound("Observation".into());
        let observation = self
            .store
            .observation_by_seq(device, derived, seq)
            .await?
            .ok_or_else(not_found)?;
        let at = observation.effective;
        match self
            .authorize_code_window(
                actor,
                observation.patient_id,
                "observations.read",
                observation.code,
                (at, at + chrono::Duration::milliseconds(1)),
            )
            .await
        {
            Ok(_) => Ok(observation),
            Err(Error::Forbidden) => Err(not_found()),
            Err(other) => Err(other),
        }
    }

    /// A blood pressure panel by its systolic reading (FHIR `Observation/{device}.p{seq}`):
    /// the systolic, and the diastolic of the same device and time if there is one,
    /// through the same check as each reading.
    pub async fn fhir_blood_pressure_panel(
        &self,
        actor: &Actor,
        device: &DeviceId,
        seq: i64,
    ) -> Result<
        (
            wardline_domain::Observation,
            Option<wardline_domain::Observation>,
        ),
        Error,
    > {
        let systolic = self.fhir_reading(actor, device, false, seq).await?;
        if systolic.code != wardline_domain::ObservationCode::SystolicBloodPressure {
            return Err(Error::NotFound("Observation".into()));
        }
        let at = systolic.effective;
        let diastolic = self
            .observations(
                actor,
                systolic.patient_id,
                wardline_domain::ObservationCode::DiastolicBloodPressure,
                (Some(at), Some(at + chrono::Duration::milliseconds(1))),
                crate::clinical::PageRequest {
                    limit: Some(100),
                    ..Default::default()
                },
            )
            .await?
            .observations
            .into_iter()
            .find(|reading| reading.device_id == systolic.device_id);
        Ok((systolic, diastolic))
    }

    /// One waveform chunk (FHIR `Observation/{device}.w{seq}`), decoded, with its patient,
    /// for those who may read that patient's waveforms of its signal at its time; others
    /// are told it does not exist, and the refusal is audited.
    pub async fn fhir_waveform(
        &self,
        actor: &Actor,
        device: &DeviceId,
        seq: i64,
    ) -> Result<
        (
            PatientId,
            wardline_store::StoredWaveform,
            wardline_waveform::DecodedChunk,
        ),
        Error,
    > {
        let not_found = || Error::NotFound("Observation".into());
        let (patient, chunk) = self
            .store
            .waveform_by_seq(device, seq)
            .await?
            .ok_or_else(not_found)?;
        match self
            .authorize_patient_window(
                actor,
                patient,
                "waveforms.read",
                Some(crate::clinical::signal_category(chunk.signal)),
                (chunk.start, chunk.end),
                Some(format!("chunk {seq} of device {device}")),
            )
            .await
        {
            Ok(_) => {}
            Err(Error::Forbidden) => return Err(not_found()),
            Err(other) => return Err(other),
        }
        let decoded = wardline_waveform::decode(&chunk.encoded).map_err(|error| {
            Error::Internal(format!("stored waveform chunk does not decode: {error}"))
        })?;
        Ok((patient, chunk, decoded))
    }

    /// Stores an Observation posted alone by `sender`.
    pub async fn fhir_observation(
        &self,
        sender: &Device,
        observation: Result<InboundObservation, InboundError>,
    ) -> Result<EntryAnswer, Error> {
        let entry = observation.map(|observation| BundleEntry {
            index: 0,
            full_url: None,
            request: EntryRequest::Observation(Box::new(observation)),
        });
        let mut answer = self
            .upload(sender, BundleKind::Transaction, vec![entry], false)
            .await?;
        answer
            .entries
            .pop()
            .ok_or_else(|| Error::Internal("no answer for the observation".into()))
    }

    /// Stores a transaction or batch Bundle posted by `sender`: a transaction all or
    /// nothing, a batch entry by entry, both in one commit.
    pub async fn fhir_bundle(
        &self,
        sender: &Device,
        kind: BundleKind,
        entries: Vec<Result<BundleEntry, InboundError>>,
    ) -> Result<UploadAnswer, Error> {
        self.upload(sender, kind, entries, true).await
    }

    async fn upload(
        &self,
        sender: &Device,
        kind: BundleKind,
        entries: Vec<Result<BundleEntry, InboundError>>,
        in_bundle: bool,
    ) -> Result<UploadAnswer, Error> {
        if sender.status == DeviceStatus::Revoked {
            return Err(Error::Unauthenticated);
        }
        let index_of = |index: usize| in_bundle.then_some(index);
        let senders = self.senders(sender).await?;

        // Devices and Patients first: Observations refer to them by fullUrl.
        let mut answers: Vec<Option<EntryAnswer>> = Vec::with_capacity(entries.len());
        let mut devices_by_url: HashMap<String, DeviceId> = HashMap::new();
        let mut patients_by_url: HashMap<String, PatientId> = HashMap::new();
        let mut observations = Vec::new();
        for (position, entry) in entries.into_iter().enumerate() {
            let entry = match entry {
                Ok(entry) => entry,
                Err(error) => {
                    answers.push(Some(EntryAnswer::Refused(Refusal::inbound(
                        index_of(position),
                        error,
                    ))));
                    continue;
                }
            };
            let index = index_of(entry.index);
            let path = format!("Bundle.entry[{}].resource", entry.index);
            let answer = match entry.request {
                EntryRequest::Device(names) => match senders.find(&names) {
                    Some(device) => {
                        if let Some(url) = entry.full_url {
                            devices_by_url.insert(url, device.id.clone());
                        }
                        Some(EntryAnswer::Found {
                            location: format!(
                                "Device/{}",
                                wardline_fhir::device_fhir_id(&device.id)
                            ),
                        })
                    }
                    None => Some(EntryAnswer::Refused(no_such_device(
                        index,
                        format!("{path}.identifier"),
                        &names,
                        senders.gateway,
                    ))),
                },
                EntryRequest::Patient(names) => match self.patient_entry(&senders, &names).await {
                    Ok(patient) => {
                        if let Some(url) = entry.full_url {
                            patients_by_url.insert(url, patient);
                        }
                        Some(EntryAnswer::Found {
                            location: format!("Patient/{patient}"),
                        })
                    }
                    Err(message) => Some(EntryAnswer::Refused(Refusal::unprocessable(
                        index, path, message,
                    ))),
                },
                EntryRequest::Observation(observation) => {
                    observations.push((answers.len(), index, observation));
                    None
                }
            };
            answers.push(answer);
        }

        // Each Observation: its device and patient, checked before anything is stored.
        let mut messages: Vec<(DeviceId, Vec<IngestPayload>)> = Vec::new();
        let mut placed: Vec<Placed> = Vec::new();
        let mut supplements: Vec<(usize, DeviceId, Supplement)> = Vec::new();
        let now = self.now();
        for (slot, index, observation) in observations {
            let device = match resolve(
                &senders,
                &devices_by_url,
                &patients_by_url,
                index,
                &observation,
            ) {
                Ok(device) => device,
                Err(refusal) => {
                    if let Some(answer) = answers.get_mut(slot) {
                        *answer = Some(EntryAnswer::Refused(refusal));
                    }
                    continue;
                }
            };
            match observation.supplement {
                Some(Supplement::Battery { at, .. })
                    if now - at <= FRESH_BATTERY_LEVEL
                        && senders.patient_at(&device, now).is_none() =>
                {
                    if let Some(answer) = answers.get_mut(slot) {
                        *answer = Some(EntryAnswer::Refused(Refusal {
                            index,
                            issue: IssueType::Processing,
                            error: Error::DeviceNotAssigned(format!(
                                "{}.device: device {device} has no patient now, so its battery level is no one's",
                                observation.path
                            )),
                        }));
                    }
                }
                Some(supplement) => supplements.push((slot, device, supplement)),
                None => match payloads(&device, *observation, index) {
                    Ok((location, payloads, path)) => {
                        placed.push(Placed {
                            slot,
                            index,
                            path,
                            location,
                        });
                        messages.push((device, payloads));
                    }
                    Err(refusal) => {
                        if let Some(answer) = answers.get_mut(slot) {
                            *answer = Some(EntryAnswer::Refused(refusal));
                        }
                    }
                },
            }
        }
        let refused_before = answers
            .iter()
            .any(|answer| matches!(answer, Some(EntryAnswer::Refused(_))));
        if kind == BundleKind::Transaction && refused_before {
            // All or nothing: nothing is stored, and each refused entry says why.
            return Ok(UploadAnswer {
                stored: false,
                entries: answers.into_iter().flatten().collect(),
            });
        }

        let (stored, verdicts) = match kind {
            // Only supplements: no readings to commit.
            _ if messages.is_empty() => (true, Vec::new()),
            BundleKind::Transaction => {
                // Each payload its own message (an ECG is one per lead), all in one
                // commit; an entry's verdict is its payloads' together.
                let counts: Vec<usize> = messages
                    .iter()
                    .map(|(_, payloads)| payloads.len())
                    .collect();
                let flat = messages
                    .into_iter()
                    .flat_map(|(device, payloads)| {
                        payloads
                            .into_iter()
                            .map(move |payload| (device.clone(), payload))
                    })
                    .collect();
                let (stored, flat) = self
                    .ingest
                    .store_all_or_none("fhir", flat)
                    .await
                    .map_err(Error::from)?;
                let mut flat = flat.into_iter();
                let verdicts = counts
                    .into_iter()
                    .map(|count| entry_verdict(flat.by_ref().take(count).collect()))
                    .collect();
                (stored, verdicts)
            }
            // Each entry its own message, all in one commit.
            BundleKind::Batch => (true, self.store_batch(messages).await?),
        };
        let now = self.now();
        for (placed, verdict) in placed.into_iter().zip(verdicts) {
            let Placed {
                slot,
                index,
                path,
                location,
            } = placed;
            let answer = match verdict {
                MessageVerdict::Stored { new, .. } if stored => EntryAnswer::Stored {
                    location,
                    created: new > 0,
                    last_modified: now,
                },
                // In a transaction refused as a whole, an entry that could have been
                // stored says nothing of its own; the refused ones say why.
                MessageVerdict::Stored { .. } => continue,
                MessageVerdict::Rejected(rejection) => {
                    EntryAnswer::Refused(rejected(index, &path, rejection))
                }
            };
            if let Some(place) = answers.get_mut(slot) {
                *place = Some(answer);
            }
        }
        if stored {
            // The readings are durable: now what the gateway said about its devices.
            for (slot, device, supplement) in supplements {
                let answer = self.note_supplement(&senders, &device, supplement).await?;
                if let Some(place) = answers.get_mut(slot) {
                    *place = Some(answer);
                }
            }
        } else {
            answers.retain(|answer| matches!(answer, Some(EntryAnswer::Refused(_))));
        }
        Ok(UploadAnswer {
            stored: stored && !refused_before,
            entries: answers.into_iter().flatten().collect(),
        })
    }

    /// Takes a PHD gateway's supplementary Observation for what it is: a fresh battery
    /// level becomes the device's status (its care team's low-battery rules see it), an
    /// old one and a coincident time stamp are noted and not kept.
    async fn note_supplement(
        &self,
        senders: &Senders,
        device: &DeviceId,
        supplement: Supplement,
    ) -> Result<EntryAnswer, Error> {
        let message = match supplement {
            Supplement::CoincidentTime => "a coincident time stamp: noted; Wardline keeps each measurement at the time the gateway sent, which it has corrected by this".to_owned(),
            Supplement::PowerStatus { set } => format!(
                "a power status ({}): noted, not kept; the battery level is what the care team's rules watch",
                if set.is_empty() { "no bit set".to_owned() } else { set.join(", ") }
            ),
            Supplement::Battery { at, .. } if self.now() - at > FRESH_BATTERY_LEVEL => format!(
                "a battery level measured at {at}: noted, not kept, since it says nothing of the battery now"
            ),
            Supplement::Battery { percent, .. } => {
                let device = senders
                    .devices
                    .iter()
                    .find(|known| known.id == *device)
                    .ok_or_else(|| Error::Internal(format!("device {device} vanished from the upload")))?;
                self.report_device_status(
                    device,
                    crate::devices::DeviceStatusReport {
                        battery_percent: Some(percent),
                        fault: None,
                    },
                )
                .await?;
                format!("kept as the battery level of device {}", device.id)
            }
        };
        Ok(EntryAnswer::Noted { message })
    }

    /// A batch's Observations, each its own message (an ECG's leads together), in one
    /// commit (devices in turn: the ingest service stores one device's messages per
    /// call, so each device's call is made at once and the group commit takes them
    /// together).
    async fn store_batch(
        &self,
        messages: Vec<(DeviceId, Vec<IngestPayload>)>,
    ) -> Result<Vec<MessageVerdict>, Error> {
        let calls = messages.into_iter().map(|(device, payloads)| {
            let ingest = self.ingest.clone();
            async move { ingest.store_payloads(&device, "fhir", payloads).await }
        });
        futures_util::future::join_all(calls)
            .await
            .into_iter()
            .map(|verdicts| verdicts.map(entry_verdict).map_err(Error::from))
            .collect()
    }

    /// The sender and what it may write for, with every device's assignments.
    async fn senders(&self, sender: &Device) -> Result<Senders, Error> {
        let gateway = sender.kind == DeviceKind::Gateway;
        let mut devices = vec![sender.clone()];
        if gateway {
            for id in self.store.gateway_devices(&sender.id).await? {
                if let Some(device) = self.store.device(&id).await? {
                    devices.push(device);
                }
            }
        }
        let mut assignments = HashMap::new();
        for device in &devices {
            assignments.insert(
                device.id.clone(),
                self.store.device_assignments(&device.id).await?,
            );
        }
        Ok(Senders {
            devices,
            sender: sender.id.clone(),
            gateway,
            assignments,
        })
    }

    /// The patient a Patient entry names: the one the sender is assigned to now, which
    /// the entry must not contradict (by id, or by medical record number).
    async fn patient_entry(
        &self,
        senders: &Senders,
        names: &PatientNames,
    ) -> Result<PatientId, String> {
        let patient = senders
            .patient_at(&senders.sender, self.now())
            .ok_or_else(|| {
                format!(
                    "{} is not assigned to a patient; a care team assigns it before it uploads",
                    senders.sender
                )
            })?;
        if let Some(id) = &names.id
            && *id != patient.to_string()
        {
            return Err(format!(
                "Patient/{id} is not the patient {} is assigned to",
                senders.sender
            ));
        }
        if !names.mrns.is_empty() {
            let record = self
                .store
                .patient(patient)
                .await
                .map_err(|error| format!("the patient record could not be read: {error}"))?;
            if let Some(mrn) = record.and_then(|record| record.mrn)
                && !names.mrns.contains(&mrn)
            {
                return Err(format!(
                    "the medical record number {} is not that of the patient {} is assigned to",
                    names.mrns.join(", "),
                    senders.sender
                ));
            }
        }
        Ok(patient)
    }
}

/// An enrolled device as FHIR shows it, with the patient it is assigned to now.
#[derive(Debug, Clone)]
pub struct DeviceView {
    pub device: Device,
    pub patient: Option<PatientId>,
}

impl Wardline {
    /// One device (FHIR `Device/{id}`): for those who may read the patient it is, or was
    /// last, assigned to; a device never assigned, for administrators only.
    pub async fn fhir_device(
        &self,
        actor: &Actor,
        device_id: &DeviceId,
    ) -> Result<DeviceView, Error> {
        let not_found = || {
            Error::NotFound(format!(
                "Device/{}",
                wardline_fhir::device_fhir_id(device_id)
            ))
        };
        let device = self.store.device(device_id).await?.ok_or_else(not_found)?;
        let assignments = self.store.device_assignments(device_id).await?;
        let now = self.now();
        let current = DeviceAssignment::patient_at(&assignments, now);
        match assignments.last() {
            Some(last) => {
                self.authorize_patient(
                    actor,
                    last.patient_id,
                    "devices.read",
                    Some(format!("device {device_id}")),
                )
                .await
                .map_err(|error| match error {
                    // Whether a device exists is not told to those who may not see it.
                    Error::Forbidden => not_found(),
                    other => other,
                })?;
            }
            None => {
                self.require_admin_read(actor, "devices.read", Some(format!("device {device_id}")))
                    .await?;
            }
        }
        Ok(DeviceView {
            device,
            patient: current,
        })
    }

    /// The devices among `ids` that were ever assigned to the patient (those that
    /// measured the readings of a FHIR search with `_include=Observation:device`), under
    /// one access check of the patient's record.
    pub async fn fhir_devices_of_patient(
        &self,
        actor: &Actor,
        patient_id: PatientId,
        ids: &[DeviceId],
    ) -> Result<Vec<DeviceView>, Error> {
        let access = self
            .authorize_patient(actor, patient_id, "devices.read", None)
            .await?;
        let now = self.now();
        let mut views = Vec::with_capacity(ids.len());
        for id in ids {
            let Some(device) = self.store.device(id).await? else {
                continue;
            };
            let assignments = self.store.device_assignments(id).await?;
            if !assignments
                .iter()
                .any(|assignment| assignment.patient_id == access.patient_id())
            {
                continue;
            }
            // Whom it is with now, only when that is this patient: a device given to
            // someone else since says nothing of them to this patient's readers.
            let patient = DeviceAssignment::patient_at(&assignments, now)
                .filter(|current| *current == access.patient_id());
            views.push(DeviceView { device, patient });
        }
        Ok(views)
    }

    /// Every device ever assigned to the patient (FHIR `Device?patient=`), under one
    /// access check of the patient's record, in the order they were first assigned.
    pub async fn fhir_devices_of_patient_ever(
        &self,
        actor: &Actor,
        patient_id: PatientId,
    ) -> Result<Vec<DeviceView>, Error> {
        let mut assignments = self.store.assignments_of_patient(patient_id).await?;
        assignments.sort_by_key(|assignment| assignment.start);
        let mut ids: Vec<DeviceId> = Vec::new();
        for assignment in assignments {
            if !ids.contains(&assignment.device_id) {
                ids.push(assignment.device_id);
            }
        }
        self.fhir_devices_of_patient(actor, patient_id, &ids).await
    }
}

/// The device an Observation is of, once its subject agrees with the device's patient at
/// the time it was measured.
fn resolve(
    senders: &Senders,
    devices_by_url: &HashMap<String, DeviceId>,
    patients_by_url: &HashMap<String, PatientId>,
    index: Option<usize>,
    observation: &InboundObservation,
) -> Result<DeviceId, Refusal> {
    let path = &observation.path;
    let device = match &observation.device {
        Target::Unnamed if senders.gateway => {
            return Err(Refusal::unprocessable(
                index,
                format!("{path}.device"),
                "a gateway measures nothing itself: name the device that measured (a Device entry, Device/{id} or its identifier)".into(),
            ));
        }
        Target::Unnamed => senders.sender.clone(),
        Target::Entry(url) => devices_by_url.get(url).cloned().ok_or_else(|| {
            Refusal::unprocessable(
                index,
                format!("{path}.device.reference"),
                format!("{url} is not a Device entry of this Bundle that names an enrolled device"),
            )
        })?,
        Target::Named(names) => match senders.find(names) {
            Some(device) => device.id.clone(),
            None => {
                return Err(no_such_device(
                    index,
                    format!("{path}.device"),
                    names,
                    senders.gateway,
                ));
            }
        },
    };
    if device == senders.sender && senders.gateway {
        return Err(Refusal::unprocessable(
            index,
            format!("{path}.device"),
            "a gateway measures nothing itself: name the device that measured".into(),
        ));
    }
    let measured = observation
        .readings
        .iter()
        .map(|reading| reading.effective)
        .chain(observation.waveforms.iter().map(|lead| lead.start));
    for effective in measured {
        let Some(patient) = senders.patient_at(&device, effective) else {
            return Err(Refusal {
                index,
                issue: IssueType::Processing,
                error: Error::DeviceNotAssigned(format!(
                    "{path}.effective[x]: device {device} was not assigned to a patient at {effective}"
                )),
            });
        };
        let claimed = match &observation.subject {
            Target::Unnamed => None,
            Target::Named(id) => Some(id.clone()),
            Target::Entry(url) => match patients_by_url.get(url) {
                Some(patient) => Some(patient.to_string()),
                None => {
                    return Err(Refusal::unprocessable(
                        index,
                        format!("{path}.subject.reference"),
                        format!("{url} is not a Patient entry of this Bundle"),
                    ));
                }
            },
        };
        if let Some(claimed) = claimed
            && claimed != patient.to_string()
        {
            return Err(Refusal::unprocessable(
                index,
                format!("{path}.subject"),
                format!(
                    "Patient/{claimed} is not the patient device {device} was assigned to when this was measured"
                ),
            ));
        }
    }
    Ok(device)
}

/// An Observation about to be stored: where its answer goes, and the location of what it
/// becomes.
struct Placed {
    slot: usize,
    index: Option<usize>,
    path: String,
    location: String,
}

/// What an Observation of `device` stores: its readings as one message, or each ECG lead
/// as a chunk of its own (chunk format version 2, which keeps the factor and origin as
/// sent); and the location it answers with (an ECG's first lead).
fn payloads(
    device: &DeviceId,
    observation: InboundObservation,
    index: Option<usize>,
) -> Result<(String, Vec<IngestPayload>, String), Refusal> {
    let InboundObservation {
        readings,
        waveforms,
        path,
        ..
    } = observation;
    if let Some(first) = readings.first() {
        let location = format!(
            "Observation/{}",
            wardline_fhir::reading_id(device, false, first.seq)
        );
        return Ok((location, vec![IngestPayload::Readings(readings)], path));
    }
    let location = waveforms
        .first()
        .map(|lead| {
            format!(
                "Observation/{}",
                wardline_fhir::waveform_id(device, lead.seq)
            )
        })
        .ok_or_else(|| {
            Refusal::unprocessable(index, path.clone(), "the Observation holds no value".into())
        })?;
    let mut chunks = Vec::with_capacity(waveforms.len());
    for lead in waveforms {
        let header = wardline_waveform::ChunkHeader {
            sampling_rate_hz: lead.sampling_rate_hz,
            start_ms: lead.start.timestamp_millis(),
            scale: wardline_waveform::Scale::Factor(lead.factor),
            baseline: 0,
            origin: lead.origin,
        };
        let encoded = wardline_waveform::encode(&header, &lead.samples).map_err(|error| {
            Refusal::unprocessable(
                index,
                format!("{path}.component"),
                format!("lead {} cannot be stored: {error}", lead.signal.as_str()),
            )
        })?;
        chunks.push(IngestPayload::Waveform(EncodedWaveform {
            seq: lead.seq,
            signal: lead.signal,
            sampling_rate_hz: lead.sampling_rate_hz,
            start: lead.start,
            end: lead.end(),
            sample_count: u32::try_from(lead.samples.len()).unwrap_or(u32::MAX),
            encoded,
        }));
    }
    Ok((location, chunks, path))
}

/// An entry's verdict from its messages': stored when every one is, else the first
/// refusal.
fn entry_verdict(verdicts: Vec<MessageVerdict>) -> MessageVerdict {
    let mut new = 0;
    let mut duplicates = 0;
    for verdict in verdicts {
        match verdict {
            MessageVerdict::Stored {
                new: stored,
                duplicates: again,
            } => {
                new += stored;
                duplicates += again;
            }
            rejected @ MessageVerdict::Rejected(_) => return rejected,
        }
    }
    MessageVerdict::Stored { new, duplicates }
}

fn no_such_device(
    index: Option<usize>,
    field: String,
    names: &DeviceNames,
    gateway: bool,
) -> Refusal {
    let named: Vec<&str> = names
        .ids
        .iter()
        .chain(&names.serials)
        .map(String::as_str)
        .collect();
    let whose = if gateway {
        "this gateway or a device behind it (assigned to its patient)"
    } else {
        "the device that sent it"
    };
    Refusal::unprocessable(
        index,
        field,
        format!(
            "{} does not name {whose}; Wardline does not create devices from uploads: enrol the device and assign it to its patient first",
            if named.is_empty() {
                "the entry".to_owned()
            } else {
                named.join(", ")
            }
        ),
    )
}

fn rejected(index: Option<usize>, path: &str, rejection: Rejection) -> Refusal {
    let issue = match rejection {
        Rejection::Payload(_) => IssueType::Value,
        _ => IssueType::Processing,
    };
    let error = match rejection {
        // The one payload fault the store finds: a code this device's kind does not
        // measure.
        Rejection::Payload(error) => Error::Unprocessable {
            field: format!("{path}.code"),
            message: error.reason,
        },
        Rejection::SeqConflict { device_id, .. } => Error::SeqConflict(format!(
            "{path}: device {device_id} sent another value for this code (or ECG lead) at this time before; nothing was stored"
        )),
        other => Error::from(other),
    };
    Refusal {
        index,
        issue,
        error,
    }
}
