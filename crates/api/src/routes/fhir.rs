//! HL7 FHIR R4 at `/fhir/R4` (docs/fhir.md): another door to the same house. Every read
//! goes through the same service calls, and so the same access check and audit, as
//! Wardline's own API; answers and errors are `application/fhir+json`, errors as
//! `OperationOutcome`s naming the parameter at fault.

use axum::extract::{OriginalUri, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use wardline_domain::ObservationCode;
use wardline_domain::PatientId;
use wardline_fhir::{FHIR_JSON, IssueType, PatientFacts, SearchCode, SearchError};
use wardline_service::Error;
use wardline_service::fhir_resources::device_resource;

use crate::error::ApiError;
use crate::extract::Caller;
use crate::state::AppState;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(metadata))
        .routes(routes!(read_patient))
        .routes(routes!(read_device))
        .routes(routes!(search_devices))
        .routes(routes!(search_patients))
        .routes(routes!(search_observations))
        .routes(routes!(read_observation))
        .routes(routes!(read_observation_version))
        .routes(routes!(last_observations))
        .routes(routes!(search_medication_requests))
        .merge(super::fhir_care::routes())
        .merge(super::fhir_uploads::routes())
        .merge(super::fhir_bulk::routes())
}

/// The most diastolic readings read to pair with one page of systolic ones (a page has
/// at most 1,000).
const MAX_PAIRED: u32 = 10_000;

/// The prefix of every FHIR route.
pub(crate) const FHIR_BASE: &str = "/fhir/R4";

/// An OperationOutcome, as the document shows it.
#[derive(Debug, serde::Serialize, ToSchema)]
#[schema(as = OperationOutcome)]
pub(crate) struct OperationOutcomeBody {
    /// Always `OperationOutcome`.
    #[serde(rename = "resourceType")]
    resource_type: String,
    issue: Vec<OperationOutcomeIssue>,
}

#[derive(Debug, serde::Serialize, ToSchema)]
pub(crate) struct OperationOutcomeIssue {
    /// `error`.
    severity: String,
    /// The FHIR issue type: invalid, not-supported, not-found, forbidden, login, …
    code: String,
    /// What went wrong, in words.
    diagnostics: String,
    /// The parameter or element at fault.
    #[serde(skip_serializing_if = "Option::is_none")]
    expression: Option<Vec<String>>,
}

/// A FHIR answer: `application/fhir+json`.
pub(crate) struct Fhir(pub(crate) StatusCode, pub(crate) Value);

impl IntoResponse for Fhir {
    fn into_response(self) -> Response {
        let mut response = (self.0, axum::Json(self.1)).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
        response
    }
}

/// A failure as an OperationOutcome, with the status Wardline's error has everywhere.
pub(crate) struct FhirError {
    error: Error,
    issue: Option<IssueType>,
}

impl From<Error> for FhirError {
    fn from(error: Error) -> Self {
        Self { error, issue: None }
    }
}

impl From<ApiError> for FhirError {
    fn from(error: ApiError) -> Self {
        Self::from(error.0)
    }
}

impl From<SearchError> for FhirError {
    fn from(error: SearchError) -> Self {
        Self {
            issue: Some(if error.not_supported {
                IssueType::NotSupported
            } else {
                IssueType::Invalid
            }),
            error: Error::InvalidRequest {
                field: Some(error.parameter),
                message: error.reason,
            },
        }
    }
}

impl IntoResponse for FhirError {
    fn into_response(self) -> Response {
        let error = self.error;
        let status = error.status();
        if let Error::Internal(cause) = &error {
            tracing::error!(cause = %cause, "internal error");
        }
        let issue = self.issue.unwrap_or(match status {
            401 => IssueType::Login,
            403 => IssueType::Forbidden,
            404 => IssueType::NotFound,
            429 => IssueType::Throttled,
            400..=499 => IssueType::Invalid,
            _ => IssueType::Exception,
        });
        let outcome =
            wardline_fhir::operation_outcome(issue, &error.message(), error.field(), error.code());
        let mut response = Fhir(
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            outcome,
        )
        .into_response();
        if let Error::TooManyExports {
            retry_after_secs, ..
        } = &error
            && let Ok(value) = HeaderValue::from_str(&retry_after_secs.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        if status == 401 {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer, Basic realm=\"Wardline devices\""),
            );
        }
        response
    }
}

pub(crate) fn base(state: &AppState) -> String {
    format!("{}{FHIR_BASE}", state.settings.http_url)
}

/// A search's answer: a `searchset` Bundle of `resources` found at `path` with the query
/// `pairs` (its `self` link), and a `next` link with the query `next` when there is more.
pub(crate) fn bundle(
    state: &AppState,
    path: &str,
    pairs: &[(String, String)],
    resources: Vec<Value>,
    next: Option<&[(String, String)]>,
) -> Response {
    bundle_with(state, path, pairs, (resources, Vec::new()), next)
}

/// [`bundle`] with included resources beside the matches.
fn bundle_with(
    state: &AppState,
    path: &str,
    pairs: &[(String, String)],
    (resources, included): (Vec<Value>, Vec<Value>),
    next: Option<&[(String, String)]>,
) -> Response {
    let base = base(state);
    let link = |pairs: &[(String, String)]| format!("{base}/{path}?{}", encode(pairs));
    let next_link = next.map(link);
    Fhir(
        StatusCode::OK,
        wardline_fhir::searchset_with(
            &base,
            resources,
            included,
            &link(pairs),
            next_link.as_deref(),
        ),
    )
    .into_response()
}

/// The query of the page after the one `pairs` asked for: the same search, with `_page`
/// saying where this one ended.
pub(crate) fn next_page(pairs: &[(String, String)], page: String) -> Vec<(String, String)> {
    let mut next: Vec<(String, String)> = pairs
        .iter()
        .filter(|(name, _)| name != "_page")
        .cloned()
        .collect();
    next.push(("_page".into(), page));
    next
}

/// A `_page` this server did not write.
pub(crate) fn not_a_page() -> SearchError {
    SearchError {
        parameter: "_page".into(),
        reason: "not a page of this search: follow the next link as given".into(),
        not_supported: false,
    }
}

/// A `_page` of a listing whose entries may share an instant (alarms raised together,
/// ECG leads that began together): where the previous page ended, as the time of its
/// last entry (milliseconds) and how many entries of that time it held (1 to
/// `max_held`), which the next page steps over since the store lists them in one order.
pub(crate) fn tied_page(text: &str, max_held: u32) -> Result<(i64, u32), SearchError> {
    let (millis, held) = text.split_once('.').ok_or_else(not_a_page)?;
    let millis: i64 = millis.parse().map_err(|_| not_a_page())?;
    let held: u32 = held.parse().map_err(|_| not_a_page())?;
    if held == 0 || held > max_held {
        return Err(not_a_page());
    }
    Ok((millis, held))
}

/// The query string of `pairs`, encoded.
fn encode(pairs: &[(String, String)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// What this server supports: a CapabilityStatement that lists exactly that (public, as
/// FHIR clients read it before they authenticate).
#[utoipa::path(get, path = "/fhir/R4/metadata", tag = "fhir", security(()),
    responses((status = 200, description = "The CapabilityStatement", content_type = "application/fhir+json", body = Object)))]
pub(crate) async fn metadata(State(state): State<AppState>) -> Response {
    Fhir(
        StatusCode::OK,
        wardline_fhir::capability_statement(
            &base(&state),
            env!("CARGO_PKG_VERSION"),
            chrono::Utc::now(),
        ),
    )
    .into_response()
}

async fn patient_resource(
    state: &AppState,
    actor: &wardline_service::Actor,
    id: &str,
) -> Result<Value, FhirError> {
    let patient_id: PatientId = id
        .parse()
        .map_err(|_| Error::NotFound(format!("Patient/{id}")))?;
    let patient = state.service.patient(actor, patient_id).await?;
    Ok(wardline_fhir::patient(&PatientFacts {
        id: patient.id,
        display_name: patient.display_name,
        birth_date: patient.birth_date,
        mrn: patient.mrn,
    }))
}

/// A patient (the patient themselves, or their care team), through the one access check.
#[utoipa::path(get, path = "/fhir/R4/Patient/{patient_id}", tag = "fhir",
    params(("patient_id" = PatientId, Path, description = "The patient")),
    responses((status = 200, description = "The Patient", content_type = "application/fhir+json", body = Object)))]
pub(crate) async fn read_patient(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<Response, FhirError> {
    let actor = caller?.actor();
    let resource = patient_resource(&state, &actor, &id).await?;
    Ok(Fhir(StatusCode::OK, resource).into_response())
}

/// An enrolled device, for those who may read the patient it is (or was last) assigned
/// to. Its id is Wardline's device id with `_` written as `.`.
#[utoipa::path(get, path = "/fhir/R4/Device/{device_id}", tag = "fhir",
    params(("device_id" = String, Path, description = "The device's FHIR id")),
    responses((status = 200, description = "The Device", content_type = "application/fhir+json", body = Object)))]
pub(crate) async fn read_device(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<Response, FhirError> {
    let actor = caller?.actor();
    let device_id = wardline_domain::DeviceId::parse(&wardline_fhir::device_id_of(&id))
        .map_err(|_| Error::NotFound(format!("Device/{id}")))?;
    let view = state.service.fhir_device(&actor, &device_id).await?;
    Ok(Fhir(StatusCode::OK, device_resource(&view)).into_response())
}

/// The devices ever assigned to a patient, as a `searchset` Bundle of Devices, each
/// naming the patient while it is still theirs. Through the one access check, audited.
#[utoipa::path(get, path = "/fhir/R4/Device", tag = "fhir", params(super::fhir_care::PatientOnlyParams),
    responses((status = 200, description = "A searchset Bundle", content_type = "application/fhir+json", body = Object)))]
pub(crate) async fn search_devices(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
    OriginalUri(uri): OriginalUri,
) -> Result<Response, FhirError> {
    let actor = caller?.actor();
    let pairs = crate::extract::query_pairs(&uri)?;
    let patient = wardline_fhir::patient_search("Device", &pairs)?;
    let resources = state
        .service
        .fhir_devices_of_patient_ever(&actor, patient)
        .await?
        .iter()
        .map(device_resource)
        .collect();
    Ok(bundle(&state, "Device", &pairs, resources, None))
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct PatientSearch {
    /// Required: the patient's id.
    #[param(value_type = String, format = Uuid)]
    _id: String,
}

/// Patients by id, as a `searchset` Bundle (what FHIR clients do to read one).
#[utoipa::path(get, path = "/fhir/R4/Patient", tag = "fhir", params(PatientSearch),
    responses((status = 200, description = "A searchset Bundle", content_type = "application/fhir+json", body = Object)))]
pub(crate) async fn search_patients(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
    OriginalUri(uri): OriginalUri,
) -> Result<Response, FhirError> {
    let actor = caller?.actor();
    let pairs = crate::extract::query_pairs(&uri)?;
    let mut id = None;
    for (name, value) in &pairs {
        match name.as_str() {
            "_id" => id = Some(value.clone()),
            other if wardline_fhir::IGNORED_PARAMETERS.contains(&other) => {}
            other => {
                return Err(SearchError {
                    parameter: other.to_owned(),
                    reason: "not a search parameter Wardline supports for Patient (_id)".into(),
                    not_supported: true,
                }
                .into());
            }
        }
    }
    let Some(id) = id else {
        return Err(SearchError {
            parameter: "_id".into(),
            reason: "required: a search for Patient names its id".into(),
            not_supported: false,
        }
        .into());
    };
    if id.parse::<PatientId>().is_err() {
        return Err(SearchError {
            parameter: "_id".into(),
            reason: format!("{id:?} is not a Wardline patient id (a UUID)"),
            not_supported: false,
        }
        .into());
    }
    let resources = match patient_resource(&state, &actor, &id).await {
        Ok(resource) => vec![resource],
        // A search finds nothing rather than failing, as for a patient that does not
        // exist; the refusal is in the audit trail all the same.
        Err(FhirError {
            error: Error::NotFound(_) | Error::Forbidden,
            ..
        }) => Vec::new(),
        Err(other) => return Err(other),
    };
    Ok(bundle(&state, "Patient", &pairs, resources, None))
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct ObservationSearchParams {
    /// Required: `Patient/[id]` or `[id]` (or as `subject`).
    patient: String,
    /// Required: one LOINC code, `http://loinc.org|[code]` or `[code]`; `85354-9` gives
    /// blood pressure as panels.
    code: String,
    /// `vital-signs`, `laboratory` or `exam`.
    category: Option<String>,
    /// With a prefix `eq`, `ge`, `gt`, `le` or `lt`; repeatable.
    date: Option<Vec<String>>,
    /// Results per page, 1 to 1000 (100 when absent).
    #[param(minimum = 1, maximum = 1000)]
    _count: Option<u32>,
    /// `date` (oldest first) or `-date` (newest first).
    #[param(pattern = "^-?date$")]
    _sort: Option<String>,
    /// `count`: only how many match (`total`), no resources; or `false`.
    #[param(pattern = "^(count|false)$")]
    _summary: Option<String>,
    /// `Observation:device`: the devices that measured the page's readings, beside them.
    #[param(pattern = "^Observation:device$")]
    _include: Option<String>,
    /// Where the previous page ended: from a `next` link.
    _page: Option<String>,
}

/// A patient's observations of one code, oldest first (or newest first with
/// `_sort=-date`; with `_summary=count`, only how many), as a `searchset` Bundle with a
/// `next` link per page; each reading an Observation (vital-signs profile for vital
/// signs). Through the one access check, audited as any read of the patient's data.
#[utoipa::path(get, path = "/fhir/R4/Observation", tag = "fhir", params(ObservationSearchParams),
    responses((status = 200, description = "A searchset Bundle", content_type = "application/fhir+json", body = Object)))]
pub(crate) async fn search_observations(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
    OriginalUri(uri): OriginalUri,
) -> Result<Response, FhirError> {
    let actor = caller?.actor();
    let pairs = crate::extract::query_pairs(&uri)?;
    let search = wardline_fhir::observation_search(&pairs)?;
    // Readings before 2000 are refused at ingest, so that is where "all" begins.
    let earliest = chrono::DateTime::from_timestamp(946_684_800, 0).unwrap_or_default();
    // A panel pages through the systolic readings and pairs each with its diastolic.
    let paged_code = match search.code {
        SearchCode::Reading(code) => code,
        SearchCode::BloodPressurePanel => ObservationCode::SystolicBloodPressure,
        SearchCode::Ecg => return search_ecg(&state, &actor, &pairs, &search).await,
        SearchCode::News2 => return search_news2(&state, &actor, &pairs, &search).await,
        SearchCode::Category(category) => {
            return search_category(&state, &actor, &pairs, &search, category).await;
        }
    };
    let window = (Some(search.from.unwrap_or(earliest)), search.to);
    if search.count_only {
        // A panel is counted by its systolic readings, one per panel.
        let total = if search.category_matches {
            state
                .service
                .observation_count(&actor, search.patient, paged_code, window)
                .await?
        } else {
            0
        };
        let base = base(&state);
        let link = format!("{base}/Observation?{}", encode(&pairs));
        let mut bundle = wardline_fhir::searchset(&base, Vec::new(), &link, None);
        bundle["total"] = serde_json::json!(total);
        return Ok(Fhir(StatusCode::OK, bundle).into_response());
    }
    let page = state
        .service
        .observations(
            &actor,
            search.patient,
            paged_code,
            window,
            page_request(&search),
        )
        .await
        .map_err(cursor_is_page)?;
    let next = page.next_cursor.map(|cursor| next_page(&pairs, cursor));
    let resources = match (search.category_matches, search.code) {
        (false, _) => Vec::new(),
        (
            true,
            SearchCode::Reading(_) | SearchCode::Ecg | SearchCode::Category(_) | SearchCode::News2,
        ) => observation_resources(&state, &actor, search.patient, &page.observations).await?,
        (true, SearchCode::BloodPressurePanel) => {
            panels(&state, &actor, search.patient, &page.observations).await?
        }
    };
    let next = next.filter(|_| search.category_matches);
    let included = included_devices(
        &state,
        &actor,
        &search,
        page.observations
            .iter()
            .map(|observation| observation.device_id.clone())
            .collect(),
    )
    .await?;
    Ok(bundle_with(
        &state,
        "Observation",
        &pairs,
        (resources, included),
        next.as_deref(),
    ))
}

/// The page a FHIR search asks for: its `_count`, `_page` and `_sort`.
fn page_request(
    search: &wardline_fhir::ObservationSearch,
) -> wardline_service::clinical::PageRequest<'_> {
    wardline_service::clinical::PageRequest {
        limit: Some(search.count),
        cursor: search.page.as_deref(),
        newest_first: search.newest_first,
    }
}

/// A cursor the service refused is the `_page` parameter of a FHIR search.
fn cursor_is_page(error: Error) -> Error {
    match error {
        Error::InvalidRequest { field, message } if field.as_deref() == Some("cursor") => {
            Error::InvalidRequest {
                field: Some("_page".into()),
                message,
            }
        }
        other => other,
    }
}

/// Every reading of a category of a patient (`category=vital-signs` without a code), in
/// time order across its codes, paged by `next` links that hold where each code's
/// listing stands; each reading an Observation as a search by its code gives it (blood
/// pressure as its systolic and diastolic readings, not panels).
async fn search_category(
    state: &AppState,
    actor: &wardline_service::Actor,
    pairs: &[(String, String)],
    search: &wardline_fhir::ObservationSearch,
    category: &str,
) -> Result<Response, FhirError> {
    if search.count_only {
        return Err(FhirError::from(SearchError {
            parameter: "_summary".into(),
            reason: "count is for a search by code".into(),
            not_supported: true,
        }));
    }
    let earliest = chrono::DateTime::from_timestamp(946_684_800, 0).unwrap_or_default();
    let codes = wardline_fhir::codes_of_category(category);
    let page = state
        .service
        .observations_of_codes(
            actor,
            search.patient,
            &codes,
            (Some(search.from.unwrap_or(earliest)), search.to),
            page_request(search),
        )
        .await
        .map_err(cursor_is_page)?;
    let next = page.next_cursor.map(|cursor| next_page(pairs, cursor));
    let resources = observation_resources(state, actor, search.patient, &page.observations).await?;
    let included = included_devices(
        state,
        actor,
        search,
        page.observations
            .iter()
            .map(|observation| observation.device_id.clone())
            .collect(),
    )
    .await?;
    Ok(bundle_with(
        state,
        "Observation",
        pairs,
        (resources, included),
        next.as_deref(),
    ))
}

/// A patient's NEWS2 results, oldest first, as Observations, paged by time (a patient has
/// at most one result at an instant).
async fn search_news2(
    state: &AppState,
    actor: &wardline_service::Actor,
    pairs: &[(String, String)],
    search: &wardline_fhir::ObservationSearch,
) -> Result<Response, FhirError> {
    for (refused, parameter, reason) in [
        (
            search.count_only,
            "_summary",
            "count is not served for NEWS2",
        ),
        (
            search.newest_first,
            "_sort",
            "NEWS2 comes oldest first (date)",
        ),
        (
            search.include_devices,
            "_include",
            "NEWS2 is measured by no device",
        ),
    ] {
        if refused {
            return Err(FhirError::from(SearchError {
                parameter: parameter.into(),
                reason: reason.into(),
                not_supported: true,
            }));
        }
    }
    let earliest = wardline_domain::nightscout::earliest();
    let mut from = search.from.unwrap_or(earliest);
    if let Some(page) = &search.page {
        let after = page
            .parse::<i64>()
            .ok()
            .and_then(chrono::DateTime::from_timestamp_millis)
            .ok_or_else(not_a_page)?;
        from = from.max(after + chrono::Duration::milliseconds(1));
    }
    let mut records = if search.category_matches {
        state
            .service
            .news2_scores(
                actor,
                search.patient,
                (Some(from), search.to),
                Some(search.count + 1),
            )
            .await?
    } else {
        Vec::new()
    };
    let next = if records.len() > search.count as usize {
        records.truncate(search.count as usize);
        records
            .last()
            .map(|last| next_page(pairs, last.time.timestamp_millis().to_string()))
    } else {
        None
    };
    let resources = records
        .iter()
        .map(wardline_service::fhir_resources::news2_resource)
        .collect();
    Ok(bundle_with(
        state,
        "Observation",
        pairs,
        (resources, Vec::new()),
        next.as_deref(),
    ))
}

/// Each systolic reading with the diastolic of the same device and time as one blood
/// pressure panel.
async fn panels(
    state: &AppState,
    actor: &wardline_service::Actor,
    patient: wardline_domain::PatientId,
    systolic: &[wardline_domain::Observation],
) -> Result<Vec<serde_json::Value>, Error> {
    let diastolic = match (
        systolic.iter().map(|reading| reading.effective).min(),
        systolic.iter().map(|reading| reading.effective).max(),
    ) {
        (Some(first), Some(last)) => {
            state
                .service
                .observations(
                    actor,
                    patient,
                    ObservationCode::DiastolicBloodPressure,
                    // The readings' span, whichever way they run.
                    (Some(first), Some(last + chrono::Duration::milliseconds(1))),
                    wardline_service::clinical::PageRequest {
                        limit: Some(MAX_PAIRED),
                        ..Default::default()
                    },
                )
                .await?
                .observations
        }
        _ => Vec::new(),
    };
    Ok(systolic
        .iter()
        .map(|systolic| {
            let partner = diastolic.iter().find(|reading| {
                reading.device_id == systolic.device_id && reading.effective == systolic.effective
            });
            wardline_fhir::blood_pressure_panel(systolic, partner)
        })
        .collect())
}

/// Readings as Observations, each heart rate Wardline derived with the ECG chunks it was
/// counted in (`derivedFrom`) where the reader may see them.
async fn observation_resources(
    state: &AppState,
    actor: &wardline_service::Actor,
    patient: wardline_domain::PatientId,
    observations: &[wardline_domain::Observation],
) -> Result<Vec<serde_json::Value>, Error> {
    let sources = state
        .service
        .fhir_derivation_sources(actor, patient, observations)
        .await?;
    Ok(observations
        .iter()
        .map(|observation| {
            let mut resource = wardline_fhir::observation(observation);
            if let Some(sources) = sources.get(&wardline_fhir::observation_id(observation)) {
                wardline_fhir::with_derived_from(&mut resource, sources);
            }
            resource
        })
        .collect())
}

/// The devices that measured a page's observations, when the search asked for them
/// (`_include=Observation:device`).
async fn included_devices(
    state: &AppState,
    actor: &wardline_service::Actor,
    search: &wardline_fhir::ObservationSearch,
    mut devices: Vec<wardline_domain::DeviceId>,
) -> Result<Vec<Value>, FhirError> {
    if !search.include_devices || devices.is_empty() {
        return Ok(Vec::new());
    }
    devices.sort();
    devices.dedup();
    Ok(state
        .service
        .fhir_devices_of_patient(actor, search.patient, &devices)
        .await?
        .iter()
        .map(device_resource)
        .collect())
}

/// The longest span of one ECG search: an hour of a 12-lead ECG at 500 Hz is 21.6
/// million samples, as much as one search should read.
const MAX_ECG_SPAN: chrono::TimeDelta = chrono::TimeDelta::hours(1);
/// ECG chunks that may start before a page's end and still be running: one per lead and
/// device, far fewer than this.
const MAX_RUNNING_CHUNKS: u32 = 64;
/// The most ECG chunks on one page (a larger `_count` gets pages of this many): 100
/// chunks of 30 s at 250 Hz are 750,000 samples.
const MAX_ECG_CHUNKS_PER_PAGE: u32 = 100;

/// A patient's ECG between two times at most an hour apart, as Observations with
/// `valueSampledData`, one per stored chunk of one lead, in the order they began,
/// paged by `next` links (`_page` is where the previous page ended: the start of its
/// last chunk, and how many of the chunks that began then it held).
async fn search_ecg(
    state: &AppState,
    actor: &wardline_service::Actor,
    pairs: &[(String, String)],
    search: &wardline_fhir::ObservationSearch,
) -> Result<Response, FhirError> {
    let not_here = |parameter: &str, reason: &str| -> FhirError {
        SearchError {
            parameter: parameter.to_owned(),
            reason: reason.to_owned(),
            not_supported: true,
        }
        .into()
    };
    if search.count_only {
        return Err(not_here("_summary", "not for the ECG: search its chunks"));
    }
    if search.newest_first {
        return Err(not_here(
            "_sort",
            "the ECG comes in the order it was recorded",
        ));
    }
    let (Some(from), Some(to)) = (search.from, search.to) else {
        return Err(FhirError::from(SearchError {
            parameter: "date".into(),
            reason:
                "required for the ECG: a start and an end at most an hour apart (date=ge…&date=lt…)"
                    .into(),
            not_supported: false,
        }));
    };
    if to - from > MAX_ECG_SPAN {
        return Err(FhirError::from(SearchError {
            parameter: "date".into(),
            reason: "an ECG search spans at most an hour".into(),
            not_supported: false,
        }));
    }
    // A later page begins at the start of the previous page's last chunk, stepping over
    // the chunks that began then and were on it.
    let resume = match search.page.as_deref() {
        Some(page) => {
            let (millis, held) = tied_page(page, MAX_RUNNING_CHUNKS)?;
            let at = chrono::DateTime::from_timestamp_millis(millis)
                .filter(|at| *at >= from && *at < to)
                .ok_or_else(not_a_page)?;
            Some((at, held))
        }
        None => None,
    };
    let count = search.count.min(MAX_ECG_CHUNKS_PER_PAGE);
    let limit = count + resume.map_or(0, |(_, held)| held) + MAX_RUNNING_CHUNKS;
    let chunks = state
        .service
        .waveforms(
            actor,
            search.patient,
            None,
            (Some(resume.map_or(from, |(at, _)| at)), Some(to)),
            Some(limit),
        )
        .await?;
    // The store lists every signal, in the order chunks began: walk them, stepping over
    // what earlier pages held, until the page has its ECG chunks. The next page resumes
    // after the last chunk walked over (of any signal).
    let full = chunks.len() >= limit as usize;
    let mut stepped = 0;
    let mut page = Vec::new();
    let mut walked_to: Option<(chrono::DateTime<chrono::Utc>, u32)> = None;
    let mut more = false;
    for chunk in chunks {
        match resume {
            // Running when the page began: on the page before.
            Some((at, _)) if chunk.start < at => continue,
            Some((at, held)) if chunk.start == at && stepped < held => {
                stepped += 1;
                continue;
            }
            _ => {}
        }
        if page.len() == count as usize {
            more = true;
            break;
        }
        walked_to = match walked_to {
            Some((at, walked)) if at == chunk.start => Some((at, walked + 1)),
            _ => Some((chunk.start, 1)),
        };
        if wardline_fhir::lead_code(chunk.signal).is_some() {
            page.push(chunk);
        }
    }
    let next = match (more || full, walked_to) {
        (true, Some((at, walked))) => {
            let held = match resume {
                Some((resumed, held)) if resumed == at => held + walked,
                _ => walked,
            };
            Some(next_page(
                pairs,
                format!("{}.{held}", at.timestamp_millis()),
            ))
        }
        _ => None,
    };
    let mut resources = Vec::with_capacity(page.len());
    for chunk in &page {
        let device = wardline_domain::DeviceId::parse(&chunk.device_id)
            .map_err(|_| Error::Internal(format!("stored device id {:?}", chunk.device_id)))?;
        resources.extend(wardline_fhir::ecg_observation(
            &wardline_fhir::WaveformFacts {
                device,
                seq: chunk.seq,
                patient: search.patient,
                signal: chunk.signal,
                sampling_rate_hz: chunk.sampling_rate_hz,
                start: chunk.start,
                end: chunk.end,
                factor: chunk.factor,
                baseline: chunk.baseline,
                origin: chunk.origin,
                samples: &chunk.samples,
            },
        ));
    }
    let resources = if search.category_matches {
        resources
    } else {
        Vec::new()
    };
    let included = included_devices(
        state,
        actor,
        search,
        page.iter()
            .filter_map(|chunk| wardline_domain::DeviceId::parse(&chunk.device_id).ok())
            .collect(),
    )
    .await?;
    Ok(bundle_with(
        state,
        "Observation",
        pairs,
        (resources, included),
        next.as_deref().filter(|_| search.category_matches),
    ))
}

/// One reading by its id (as a search or an upload's location gives it), through the
/// one access check; a reading the caller may not see is not found.
#[utoipa::path(get, path = "/fhir/R4/Observation/{observation_id}", tag = "fhir",
    params(("observation_id" = String, Path, description = "The Observation's id")),
    responses((status = 200, description = "The Observation", content_type = "application/fhir+json", body = Object)))]
pub(crate) async fn read_observation(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<Response, FhirError> {
    let actor = caller?.actor();
    observation_by_id(&state, &actor, &id).await
}

/// A reading's one version (Wardline keeps one version of a reading): where an upload's
/// `Location` points.
#[utoipa::path(get, path = "/fhir/R4/Observation/{observation_id}/_history/{version_id}", tag = "fhir",
    params(("observation_id" = String, Path, description = "The Observation's id"),
           ("version_id" = String, Path, description = "`1`: a reading has one version")),
    responses((status = 200, description = "The Observation", content_type = "application/fhir+json", body = Object)))]
pub(crate) async fn read_observation_version(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
    axum::extract::Path((id, version)): axum::extract::Path<(String, String)>,
) -> Result<Response, FhirError> {
    let actor = caller?.actor();
    if version != "1" {
        return Err(Error::NotFound(format!("Observation/{id}/_history/{version}")).into());
    }
    observation_by_id(&state, &actor, &id).await
}

/// A resource read by id: Wardline keeps one version of each, so its ETag is always 1.
fn one_version(resource: Value) -> Response {
    let mut response = Fhir(StatusCode::OK, resource).into_response();
    response
        .headers_mut()
        .insert(header::ETAG, HeaderValue::from_static("W/\"1\""));
    response
}

async fn observation_by_id(
    state: &AppState,
    actor: &wardline_service::Actor,
    id: &str,
) -> Result<Response, FhirError> {
    if let Some((patient, time)) = wardline_fhir::news2_of_id(id) {
        let found = state
            .service
            .news2_scores(
                actor,
                patient,
                (Some(time), Some(time + chrono::Duration::milliseconds(1))),
                Some(1),
            )
            .await;
        // Whether a result exists is not told to those who may not read it.
        let record = match found {
            Ok(mut records) => records.pop(),
            Err(Error::Forbidden) => None,
            Err(other) => return Err(other.into()),
        }
        .ok_or_else(|| Error::NotFound(format!("Observation/{id}")))?;
        return Ok(one_version(
            wardline_service::fhir_resources::news2_resource(&record),
        ));
    }
    let (device, kind, seq) =
        wardline_fhir::id_parts(id).ok_or_else(|| Error::NotFound(format!("Observation/{id}")))?;
    let resource = match kind {
        wardline_fhir::IdKind::Panel => {
            let (systolic, diastolic) = state
                .service
                .fhir_blood_pressure_panel(actor, &device, seq)
                .await?;
            Some(wardline_fhir::blood_pressure_panel(
                &systolic,
                diastolic.as_ref(),
            ))
        }
        wardline_fhir::IdKind::Waveform => {
            let (patient, chunk, decoded) =
                state.service.fhir_waveform(actor, &device, seq).await?;
            // Other signals are not served as FHIR.
            let resource =
                wardline_service::fhir_resources::ecg_resource(patient, &chunk, &decoded);
            Some(resource.ok_or_else(|| Error::NotFound(format!("Observation/{id}")))?)
        }
        wardline_fhir::IdKind::Measured | wardline_fhir::IdKind::Derived => None,
    };
    if let Some(resource) = resource {
        return Ok(one_version(resource));
    }
    let derived = kind == wardline_fhir::IdKind::Derived;
    let observation = state
        .service
        .fhir_reading(actor, &device, derived, seq)
        .await?;
    let resource = observation_resources(
        state,
        actor,
        observation.patient_id,
        std::slice::from_ref(&observation),
    )
    .await?
    .pop()
    .ok_or_else(|| Error::Internal("no resource for a reading".into()))?;
    Ok(one_version(resource))
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct LastnParams {
    /// Required: `Patient/[id]` or `[id]`.
    patient: String,
    /// `vital-signs`, `laboratory` or `exam`.
    category: Option<String>,
    /// One LOINC code.
    code: Option<String>,
    /// How many of each code, newest first: 1 (the default) to 100.
    #[param(minimum = 1, maximum = 100)]
    max: Option<u32>,
}

/// The newest observation (or the newest `max`) of each code of a patient: the latest
/// vital signs at a glance, through the one access check.
#[utoipa::path(get, path = "/fhir/R4/Observation/$lastn", tag = "fhir", params(LastnParams),
    responses((status = 200, description = "A searchset Bundle", content_type = "application/fhir+json", body = Object)))]
pub(crate) async fn last_observations(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
    OriginalUri(uri): OriginalUri,
) -> Result<Response, FhirError> {
    let actor = caller?.actor();
    let pairs = crate::extract::query_pairs(&uri)?;
    let search = wardline_fhir::lastn_search(&pairs)?;
    let mut latest = state
        .service
        .latest_observations(&actor, search.patient)
        .await?;
    // Blood pressure panels: the newest systolic readings, each with its diastolic.
    let newest_systolic = latest
        .iter()
        .find(|observation| observation.code == ObservationCode::SystolicBloodPressure)
        .filter(|_| search.wants_panels())
        .cloned();
    latest.retain(|observation| search.wants(observation.code));
    // Each code's newest `max`, codes in LOINC order.
    let mut groups: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for newest in &latest {
        let readings = newest_of_code(&state, &actor, &search, newest).await?;
        groups.push((
            newest.code.loinc(),
            observation_resources(&state, &actor, search.patient, &readings).await?,
        ));
    }
    if let Some(newest) = &newest_systolic {
        let systolic = newest_of_code(&state, &actor, &search, newest).await?;
        groups.push((
            wardline_fhir::BLOOD_PRESSURE_PANEL,
            panels(&state, &actor, search.patient, &systolic).await?,
        ));
    }
    groups.sort_by_key(|(loinc, _)| *loinc);
    // NEWS2 (SNOMED CT) after the LOINC codes; nothing for a reader who may not see it.
    if search.wants_news2() {
        match state
            .service
            .newest_news2(&actor, search.patient, search.max)
            .await
        {
            Ok(records) => groups.push((
                wardline_fhir::NEWS2_TOTAL,
                records
                    .iter()
                    .map(wardline_service::fhir_resources::news2_resource)
                    .collect(),
            )),
            Err(Error::Forbidden) if !search.news2 => {}
            Err(other) => return Err(other.into()),
        }
    }
    let resources = groups
        .into_iter()
        .flat_map(|(_, resources)| resources)
        .collect();
    Ok(bundle(
        &state,
        "Observation/$lastn",
        &pairs,
        resources,
        None,
    ))
}

/// The newest `max` readings of `newest`'s code, newest first, up to `newest` (a reading
/// arriving meanwhile waits for the next ask).
async fn newest_of_code(
    state: &AppState,
    actor: &wardline_service::Actor,
    search: &wardline_fhir::LastnSearch,
    newest: &wardline_domain::Observation,
) -> Result<Vec<wardline_domain::Observation>, Error> {
    if search.max == 1 {
        return Ok(vec![newest.clone()]);
    }
    Ok(state
        .service
        .observations(
            actor,
            search.patient,
            newest.code,
            (
                Some(wardline_domain::nightscout::earliest()),
                Some(newest.effective + chrono::Duration::milliseconds(1)),
            ),
            wardline_service::clinical::PageRequest {
                limit: Some(search.max),
                cursor: None,
                newest_first: true,
            },
        )
        .await?
        .observations)
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct MedicationRequestSearchParams {
    /// Required: `Patient/[id]` or `[id]` (or as `subject`).
    patient: String,
}

/// A patient's treatment orders (written in video visits or not), newest first, as a
/// `searchset` Bundle of MedicationRequests. Through the one access check, audited as any
/// read of the patient's data.
#[utoipa::path(get, path = "/fhir/R4/MedicationRequest", tag = "fhir", params(MedicationRequestSearchParams),
    responses((status = 200, description = "A searchset Bundle", content_type = "application/fhir+json", body = Object)))]
pub(crate) async fn search_medication_requests(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
    OriginalUri(uri): OriginalUri,
) -> Result<Response, FhirError> {
    let actor = caller?.actor();
    let pairs = crate::extract::query_pairs(&uri)?;
    let patient = wardline_fhir::medication_request_search(&pairs)?;
    let orders = state.service.treatment_orders(&actor, patient).await?;
    let today = chrono::Utc::now().date_naive();
    let resources = orders
        .into_iter()
        .map(|order| {
            wardline_fhir::medication_request(
                &wardline_fhir::MedicationOrderFacts {
                    id: order.id.to_string(),
                    patient: order.patient_id,
                    requester_name: order.ordered_by_name,
                    authored: order.created,
                    medication: order.medication,
                    dose: order.dose,
                    frequency: order.frequency,
                    start: order.start,
                    stop: order.stop,
                    instructions: order.instructions,
                },
                today,
            )
        })
        .collect();
    Ok(bundle(&state, "MedicationRequest", &pairs, resources, None))
}
