//! The search parameters Wardline reads, each refused with the parameter named when it
//! cannot be honoured (a search that silently ignored one would return the wrong data).

use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, TimeZone, Utc};
use wardline_domain::{ObservationCode, PatientId};

use crate::LOINC;

/// Why a search cannot be run: the parameter and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{parameter}: {reason}")]
pub struct SearchError {
    pub parameter: String,
    pub reason: String,
    /// Whether it is a parameter Wardline does not support (rather than a bad value).
    pub not_supported: bool,
}

pub(crate) fn invalid(parameter: &str, reason: impl Into<String>) -> SearchError {
    SearchError {
        parameter: parameter.to_owned(),
        reason: reason.into(),
        not_supported: false,
    }
}

pub(crate) fn unsupported(parameter: &str, reason: impl Into<String>) -> SearchError {
    SearchError {
        parameter: parameter.to_owned(),
        reason: reason.into(),
        not_supported: true,
    }
}

/// What an Observation search asks for: readings of one code, or blood pressure as the
/// 85354-9 panel (each systolic reading with the diastolic of the same device and time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchCode {
    Reading(ObservationCode),
    BloodPressurePanel,
    /// MDC_ECG_ELEC_POTL: ECG chunks as `valueSampledData`, every lead.
    Ecg,
    /// No code: every reading of a category (`vital-signs`, `laboratory`, `exam`).
    Category(&'static str),
    /// SNOMED CT's NEWS2 total score: the NEWS2 results Wardline computed.
    News2,
}

/// The codes whose observations are in `category`.
pub fn codes_of_category(category: &str) -> Vec<ObservationCode> {
    wardline_domain::codes::CATALOGUE
        .iter()
        .map(|spec| spec.code)
        .filter(|code| crate::category(*code).0 == category)
        .collect()
}

/// LOINC's blood pressure panel.
pub const BLOOD_PRESSURE_PANEL: &str = "85354-9";

impl SearchCode {
    /// The category its observations are in.
    pub fn category(self) -> &'static str {
        match self {
            Self::Reading(code) => crate::category(code).0,
            Self::BloodPressurePanel => "vital-signs",
            Self::Ecg => "procedure",
            Self::Category(category) => category,
            Self::News2 => "survey",
        }
    }
}

/// An Observation search, as Wardline runs it.
#[derive(Debug, Clone, PartialEq)]
pub struct ObservationSearch {
    pub patient: PatientId,
    pub code: SearchCode,
    /// Inclusive.
    pub from: Option<DateTime<Utc>>,
    /// Exclusive.
    pub to: Option<DateTime<Utc>>,
    pub count: u32,
    /// Where the previous page ended (the `_page` of a next link).
    pub page: Option<String>,
    /// False when a `category` was asked for that the code is not in: no results.
    pub category_matches: bool,
    /// `_sort=-date`: newest first.
    pub newest_first: bool,
    /// `_summary=count`: how many match, and no resources.
    pub count_only: bool,
    /// `_include=Observation:device`: the devices that measured the page's readings.
    pub include_devices: bool,
}

/// The most and the default results per page.
pub const MAX_COUNT: u32 = 1000;
pub const DEFAULT_COUNT: u32 = 100;

/// Parameters a FHIR client may add to any request that change nothing here.
pub const IGNORED_PARAMETERS: &[&str] = &["_format", "_pretty"];

/// Reads an Observation search's query parameters (in order, repeated ones included).
pub fn observation_search(pairs: &[(String, String)]) -> Result<ObservationSearch, SearchError> {
    let mut patient = None;
    let mut code = None;
    let mut from: Option<DateTime<Utc>> = None;
    let mut to: Option<DateTime<Utc>> = None;
    let mut count = DEFAULT_COUNT;
    let mut page = None;
    let mut category = None;
    let mut newest_first = false;
    let mut count_only = false;
    let mut include_devices = false;
    for (name, value) in pairs {
        match name.as_str() {
            "patient" | "subject" => {
                let parsed = patient_parameter(name, value)?;
                if patient.is_some_and(|earlier| earlier != parsed) {
                    return Err(unsupported(name, "one patient per search"));
                }
                patient = Some(parsed);
            }
            "code" => {
                if value.contains(',') {
                    return Err(unsupported(name, "one code per search"));
                }
                let loinc = match value.split_once('|') {
                    Some((system, loinc)) if system == LOINC => loinc,
                    Some((system, given)) if system == crate::MDC || system == crate::SNOMED => {
                        // Each of these systems has one code Wardline serves.
                        let (served, found, what) = if system == crate::MDC {
                            (
                                crate::MDC_ECG,
                                SearchCode::Ecg,
                                "an MDC code Wardline serves (for the ECG)",
                            )
                        } else {
                            (
                                crate::NEWS2_TOTAL,
                                SearchCode::News2,
                                "a SNOMED CT code Wardline serves (for NEWS2)",
                            )
                        };
                        if given != served {
                            return Err(invalid(
                                name,
                                format!("{given} is not {what}: {served} is"),
                            ));
                        }
                        if code.is_some_and(|earlier| earlier != found) {
                            return Err(unsupported(name, "one code per search"));
                        }
                        code = Some(found);
                        continue;
                    }
                    Some((system, _)) => {
                        return Err(invalid(
                            name,
                            format!(
                                "Wardline's observations are coded in LOINC ({LOINC}), the ECG in MDC ({}|{}) and NEWS2 in SNOMED CT ({}|{}), not {system}",
                                crate::MDC,
                                crate::MDC_ECG,
                                crate::SNOMED,
                                crate::NEWS2_TOTAL
                            ),
                        ));
                    }
                    None => value.as_str(),
                };
                let found = if loinc == BLOOD_PRESSURE_PANEL {
                    SearchCode::BloodPressurePanel
                } else {
                    SearchCode::Reading(ObservationCode::from_loinc(loinc).ok_or_else(|| {
                        invalid(name, format!("{loinc} is not a LOINC code Wardline stores"))
                    })?)
                };
                if code.is_some_and(|earlier| earlier != found) {
                    return Err(unsupported(name, "one code per search"));
                }
                code = Some(found);
            }
            "category" => category = Some(category_parameter(name, value)?),
            "date" => {
                narrow(&mut from, &mut to, name, value)?;
            }
            "_count" => {
                count = count_parameter(name, value, MAX_COUNT)?;
            }
            "_sort" => {
                newest_first = match value.as_str() {
                    "date" => false,
                    "-date" => true,
                    _ => {
                        return Err(unsupported(
                            name,
                            "date (oldest first) or -date (newest first)",
                        ));
                    }
                };
            }
            "_summary" => {
                count_only = match value.as_str() {
                    "count" => true,
                    "false" => false,
                    _ => {
                        return Err(unsupported(
                            name,
                            "count (how many match), or false; resources are always whole",
                        ));
                    }
                };
            }
            "_include" => {
                if value != "Observation:device" {
                    return Err(unsupported(name, "Observation:device only"));
                }
                include_devices = true;
            }
            "_page" => page = Some(value.clone()),
            other if IGNORED_PARAMETERS.contains(&other) => {}
            other => {
                return Err(unsupported(
                    other,
                    "not a search parameter Wardline supports for Observation (see the CapabilityStatement)",
                ));
            }
        }
    }
    let patient = patient.ok_or_else(|| invalid("patient", "required: Patient/[id]"))?;
    let code = match (code, category.as_deref()) {
        (Some(code), _) => code,
        // A category alone: the ECG's is its chunks, the others every reading in them.
        (None, Some("procedure")) => SearchCode::Ecg,
        (None, Some("survey")) => SearchCode::News2,
        (None, Some(category)) => SearchCode::Category(
            ["vital-signs", "laboratory", "exam"]
                .into_iter()
                .find(|known| *known == category)
                .ok_or_else(|| {
                    invalid(
                        "category",
                        "vital-signs, laboratory, exam, procedure or survey",
                    )
                })?,
        ),
        (None, None) => {
            return Err(invalid(
                "code",
                "required, or a category: one LOINC code (http://loinc.org|8867-4) or category=vital-signs",
            ));
        }
    };
    if let (Some(from), Some(to)) = (from, to)
        && from >= to
    {
        return Err(invalid("date", "the bounds leave no time between them"));
    }
    Ok(ObservationSearch {
        patient,
        code,
        from,
        to,
        count,
        page,
        category_matches: category.is_none_or(|wanted| code.category() == wanted),
        newest_first,
        count_only,
        include_devices,
    })
}

/// The bounds a date parameter sets: the inclusive start and the exclusive end, either
/// open.
pub type DateBounds = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);

/// A `$lastn` query: the newest observation of each code of a patient, optionally of
/// one category or one code.
#[derive(Debug, Clone, PartialEq)]
pub struct LastnSearch {
    pub patient: PatientId,
    pub category: Option<String>,
    /// One LOINC code Wardline stores, or (`panel`) the blood pressure panel.
    pub code: Option<ObservationCode>,
    /// `code=85354-9`: blood pressure panels only.
    pub panel: bool,
    /// `code=http://snomed.info/sct|1104051000000101`: NEWS2 results only.
    pub news2: bool,
    /// The newest this many of each code (1 to [`MAX_LASTN`]).
    pub max: u32,
}

/// The most observations of one code `$lastn` gives.
pub const MAX_LASTN: u32 = 100;

impl LastnSearch {
    /// Whether an observation of `code` is one the query asks for.
    pub fn wants(&self, code: ObservationCode) -> bool {
        !self.panel
            && !self.news2
            && self.code.is_none_or(|wanted| wanted == code)
            && self
                .category
                .as_deref()
                .is_none_or(|wanted| crate::category(code).0 == wanted)
    }

    /// Whether the query asks for blood pressure panels (85354-9): by that code, or by
    /// no code in vital signs or in every category.
    pub fn wants_panels(&self) -> bool {
        self.panel
            || (self.code.is_none()
                && !self.news2
                && self
                    .category
                    .as_deref()
                    .is_none_or(|wanted| wanted == "vital-signs"))
    }

    /// Whether the query asks for NEWS2 results: by their code, or by no code in the
    /// `survey` category or in every category.
    pub fn wants_news2(&self) -> bool {
        self.news2
            || (self.code.is_none()
                && !self.panel
                && self
                    .category
                    .as_deref()
                    .is_none_or(|wanted| wanted == "survey"))
    }
}

/// Reads `Observation/$lastn`'s parameters: `patient` (required), `category`, `code`
/// (85354-9 for blood pressure panels), and `max` (1 to [`MAX_LASTN`]).
pub fn lastn_search(pairs: &[(String, String)]) -> Result<LastnSearch, SearchError> {
    let mut max = 1;
    let mut patient = None;
    let mut category = None;
    let mut code = None;
    let mut panel = false;
    let mut news2 = false;
    for (name, value) in pairs {
        match name.as_str() {
            "patient" | "subject" => {
                patient = Some(patient_parameter(name, value)?);
            }
            "category" => category = Some(category_parameter(name, value)?),
            "code"
                if value.strip_prefix("http://loinc.org|").unwrap_or(value)
                    == BLOOD_PRESSURE_PANEL =>
            {
                panel = true;
            }
            "code" if value.split_once('|') == Some((crate::SNOMED, crate::NEWS2_TOTAL)) => {
                news2 = true;
            }
            "code" => {
                let loinc = value.strip_prefix("http://loinc.org|").unwrap_or(value);
                code = Some(ObservationCode::from_loinc(loinc).ok_or_else(|| {
                    invalid(
                        name,
                        format!("{value:?} is not one LOINC code Wardline stores"),
                    )
                })?);
            }
            "max" => {
                max = value
                    .parse::<u32>()
                    .ok()
                    .filter(|max| (1..=MAX_LASTN).contains(max))
                    .ok_or_else(|| {
                        invalid(
                            name,
                            format!("{value:?}: the newest 1 to {MAX_LASTN} of each code"),
                        )
                    })?;
            }
            other if IGNORED_PARAMETERS.contains(&other) => {}
            other => {
                return Err(unsupported(
                    other,
                    "not a parameter of $lastn Wardline supports (patient, category, code, max)",
                ));
            }
        }
    }
    if [panel, news2, code.is_some()]
        .iter()
        .filter(|asked| **asked)
        .count()
        > 1
    {
        return Err(unsupported("code", "one code per $lastn"));
    }
    Ok(LastnSearch {
        patient: patient.ok_or_else(|| invalid("patient", "required: Patient/[id]"))?,
        category,
        code,
        panel,
        news2,
        max,
    })
}

/// Reads a MedicationRequest search: `patient` (or `subject`), required; nothing else.
pub fn medication_request_search(pairs: &[(String, String)]) -> Result<PatientId, SearchError> {
    patient_search("MedicationRequest", pairs)
}

/// Reads a search of `resource` that takes only its patient (`patient`, or `subject`),
/// required: CareTeam, CarePlan, MedicationRequest.
pub fn patient_search(
    resource: &str,
    pairs: &[(String, String)],
) -> Result<PatientId, SearchError> {
    let mut patient = None;
    for (name, value) in pairs {
        match name.as_str() {
            "patient" | "subject" => patient = Some(patient_parameter(name, value)?),
            other if IGNORED_PARAMETERS.contains(&other) => {}
            other => {
                return Err(unsupported(
                    other,
                    format!(
                        "not a search parameter Wardline supports for {resource} (patient, subject)"
                    ),
                ));
            }
        }
    }
    patient.ok_or_else(|| invalid("patient", "required: Patient/[id]"))
}

/// A search of records kept over time (alarms, the audit trail): newest first, paged.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordSearch {
    pub patient: Option<PatientId>,
    /// Inclusive.
    pub from: Option<DateTime<Utc>>,
    /// Exclusive.
    pub to: Option<DateTime<Utc>>,
    pub count: u32,
    /// Where the previous page ended (the `_page` of a next link).
    pub page: Option<String>,
}

/// What a record search of one resource type takes.
#[derive(Debug, Clone, Copy)]
pub struct RecordSearchRules {
    pub resource: &'static str,
    /// The name of its date parameter (`identified`), if it has one.
    pub date: Option<&'static str>,
    pub patient_required: bool,
    pub max_count: u32,
}

/// Reads a search of records: `patient` (or `subject`), the date parameter with its
/// prefixes (repeatable), `_count` and `_page`; anything else is named as unsupported.
pub fn record_search(
    rules: RecordSearchRules,
    pairs: &[(String, String)],
) -> Result<RecordSearch, SearchError> {
    let mut patient = None;
    let mut from: Option<DateTime<Utc>> = None;
    let mut to: Option<DateTime<Utc>> = None;
    let mut count = DEFAULT_COUNT.min(rules.max_count);
    let mut page = None;
    for (name, value) in pairs {
        match name.as_str() {
            "patient" | "subject" => {
                let parsed = patient_parameter(name, value)?;
                if patient.is_some_and(|earlier| earlier != parsed) {
                    return Err(unsupported(name, "one patient per search"));
                }
                patient = Some(parsed);
            }
            date if Some(date) == rules.date => {
                narrow(&mut from, &mut to, name, value)?;
            }
            "_count" => {
                count = count_parameter(name, value, rules.max_count)?;
            }
            "_page" => page = Some(value.clone()),
            other if IGNORED_PARAMETERS.contains(&other) => {}
            other => {
                return Err(unsupported(
                    other,
                    format!(
                        "not a search parameter Wardline supports for {} (patient, {}_count)",
                        rules.resource,
                        rules
                            .date
                            .map(|date| format!("{date}, "))
                            .unwrap_or_default()
                    ),
                ));
            }
        }
    }
    if rules.patient_required && patient.is_none() {
        return Err(invalid("patient", "required: Patient/[id]"));
    }
    if let (Some(from), Some(to)) = (from, to)
        && from >= to
    {
        return Err(invalid(
            rules.date.unwrap_or("date"),
            "the bounds leave no time between them",
        ));
    }
    Ok(RecordSearch {
        patient,
        from,
        to,
        count,
        page,
    })
}

/// Narrows `[from, to)` by a date parameter (repeated ones narrow further).
fn narrow(
    from: &mut Option<DateTime<Utc>>,
    to: &mut Option<DateTime<Utc>>,
    name: &str,
    value: &str,
) -> Result<(), SearchError> {
    let (start, end) = date_bounds(value).map_err(|reason| invalid(name, reason))?;
    if let Some(start) = start {
        *from = Some(from.map_or(start, |from| from.max(start)));
    }
    if let Some(end) = end {
        *to = Some(to.map_or(end, |to| to.min(end)));
    }
    Ok(())
}

/// A `_count` parameter: 1 to `max`.
fn count_parameter(name: &str, value: &str, max: u32) -> Result<u32, SearchError> {
    value
        .parse::<u32>()
        .ok()
        .filter(|count| (1..=max).contains(count))
        .ok_or_else(|| invalid(name, format!("1 to {max}")))
}

/// A `patient` or `subject` parameter: `Patient/[id]` or `[id]`.
fn patient_parameter(name: &str, value: &str) -> Result<PatientId, SearchError> {
    value
        .strip_prefix("Patient/")
        .unwrap_or(value)
        .parse()
        .map_err(|_| {
            invalid(
                name,
                format!("{value:?} is not Patient/[id] of a Wardline patient"),
            )
        })
}

/// A `category` parameter, with or without its system.
fn category_parameter(name: &str, value: &str) -> Result<String, SearchError> {
    let wanted = value.rsplit('|').next().unwrap_or(value);
    if !["vital-signs", "laboratory", "exam", "procedure", "survey"].contains(&wanted) {
        return Err(invalid(
            name,
            format!(
                "{wanted:?} is not vital-signs, laboratory, exam, procedure (the ECG) or survey (NEWS2)"
            ),
        ));
    }
    Ok(wanted.to_owned())
}

/// The `[start, end)` a date parameter (with its prefix) allows: a date or date-time of
/// any FHIR precision (year, month, day, minute, second) stands for all of its period.
pub fn date_bounds(text: &str) -> Result<DateBounds, String> {
    let (prefix, value) = match text.get(..2) {
        Some(prefix @ ("eq" | "ge" | "gt" | "le" | "lt")) => (prefix, &text[2..]),
        Some("ne" | "sa" | "eb" | "ap") => {
            return Err(format!(
                "the prefix {} is not supported (eq, ge, gt, le, lt)",
                &text[..2]
            ));
        }
        _ => ("eq", text),
    };
    let (start, end) = period(value)?;
    Ok(match prefix {
        "ge" => (Some(start), None),
        "gt" => (Some(end), None),
        "le" => (None, Some(end)),
        "lt" => (None, Some(start)),
        _ => (Some(start), Some(end)),
    })
}

/// The period a FHIR date or dateTime stands for.
fn period(value: &str) -> Result<(DateTime<Utc>, DateTime<Utc>), String> {
    let bad = || {
        format!(
            "{value:?} is not a FHIR date or dateTime (YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm:ss with a zone)"
        )
    };
    if let Ok(time) = DateTime::parse_from_rfc3339(value) {
        let time = time.with_timezone(&Utc);
        return Ok((time, time + Duration::seconds(1)));
    }
    // A minute without seconds, with its zone.
    if let Some((minute, zone)) = value.get(..16).zip(value.get(16..))
        && let Ok(time) = DateTime::parse_from_rfc3339(&format!("{minute}:00{zone}"))
    {
        let time = time.with_timezone(&Utc);
        return Ok((time, time + Duration::minutes(1)));
    }
    let day = |year: i32, month: u32, day: u32| {
        NaiveDate::from_ymd_opt(year, month, day)
            .and_then(|date| date.and_hms_opt(0, 0, 0))
            .map(|midnight: NaiveDateTime| Utc.from_utc_datetime(&midnight))
    };
    let parts: Vec<&str> = value.split('-').collect();
    let number = |text: &str, width: usize| {
        (text.len() == width && text.chars().all(|c| c.is_ascii_digit()))
            .then(|| text.parse::<u32>().ok())
            .flatten()
    };
    match parts.as_slice() {
        [year] => {
            let year = number(year, 4).ok_or_else(bad)? as i32;
            Ok((
                day(year, 1, 1).ok_or_else(bad)?,
                day(year + 1, 1, 1).ok_or_else(bad)?,
            ))
        }
        [year, month] => {
            let (year, month) = (
                number(year, 4).ok_or_else(bad)? as i32,
                number(month, 2).ok_or_else(bad)?,
            );
            let next = if month == 12 {
                (year + 1, 1)
            } else {
                (year, month + 1)
            };
            Ok((
                day(year, month, 1).ok_or_else(bad)?,
                day(next.0, next.1, 1).ok_or_else(bad)?,
            ))
        }
        [year, month, date] => {
            let start = day(
                number(year, 4).ok_or_else(bad)? as i32,
                number(month, 2).ok_or_else(bad)?,
                number(date, 2).ok_or_else(bad)?,
            )
            .ok_or_else(bad)?;
            Ok((start, start + Duration::days(1)))
        }
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn lastn_takes_the_blood_pressure_panel_by_its_code() {
        let patient = PatientId::random();
        let pairs = |code: &str| {
            vec![
                ("patient".to_owned(), patient.to_string()),
                ("code".to_owned(), code.to_owned()),
            ]
        };
        let panel = lastn_search(&pairs("http://loinc.org|85354-9")).unwrap();
        assert!(panel.panel && panel.wants_panels());
        assert!(!panel.wants(ObservationCode::SystolicBloodPressure));
        let heart = lastn_search(&pairs("8867-4")).unwrap();
        assert!(!heart.wants_panels());
        assert!(heart.wants(ObservationCode::HeartRate));
        let mut both = pairs("85354-9");
        both.push(("code".into(), "8867-4".into()));
        assert_eq!(lastn_search(&both).unwrap_err().parameter, "code");
        let news2 = lastn_search(&pairs("http://snomed.info/sct|1104051000000101")).unwrap();
        assert!(news2.wants_news2() && !news2.wants_panels());
        assert!(!news2.wants(ObservationCode::HeartRate));
        assert!(!heart.wants_news2() && !panel.wants_news2());
    }

    fn pairs(text: &[(&str, &str)]) -> Vec<(String, String)> {
        text.iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect()
    }

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn a_search_reads_patient_code_dates_and_count() {
        let patient = PatientId::random();
        let search = observation_search(&pairs(&[
            ("patient", &format!("Patient/{patient}")),
            ("code", "http://loinc.org|8867-4"),
            ("date", "ge2026-12"),
            ("date", "lt2026-12-03T10:00:00+01:00"),
            ("_count", "50"),
            ("_sort", "date"),
            ("_format", "json"),
        ]))
        .unwrap();
        assert_eq!(search.patient, patient);
        assert_eq!(search.code, SearchCode::Reading(ObservationCode::HeartRate));
        assert_eq!(search.from, Some(at("2026-12-01T00:00:00Z")));
        assert_eq!(search.to, Some(at("2026-12-03T09:00:00Z")));
        assert_eq!(search.count, 50);
        assert!(search.category_matches);
        assert!(!search.newest_first && !search.count_only);
        let newest = observation_search(&pairs(&[
            ("patient", &format!("Patient/{patient}")),
            ("code", "8867-4"),
            ("_sort", "-date"),
            ("_summary", "count"),
        ]))
        .unwrap();
        assert!(newest.newest_first && newest.count_only && !newest.include_devices);
    }

    #[test]
    fn prefixes_cover_the_whole_period_of_a_partial_date() {
        assert_eq!(
            date_bounds("2026").unwrap(),
            (
                Some(at("2026-01-01T00:00:00Z")),
                Some(at("2027-01-01T00:00:00Z"))
            )
        );
        assert_eq!(
            date_bounds("gt2026-02").unwrap(),
            (Some(at("2026-03-01T00:00:00Z")), None)
        );
        assert_eq!(
            date_bounds("le2026-12-31").unwrap(),
            (None, Some(at("2027-01-01T00:00:00Z")))
        );
        assert_eq!(
            date_bounds("eq2026-12-01T08:30Z").unwrap(),
            (
                Some(at("2026-12-01T08:30:00Z")),
                Some(at("2026-12-01T08:31:00Z"))
            )
        );
        assert!(date_bounds("ap2026").unwrap_err().contains("not supported"));
        assert!(
            date_bounds("2026-13")
                .unwrap_err()
                .contains("not a FHIR date")
        );
    }

    #[test]
    fn what_cannot_be_honoured_is_refused_by_name() {
        let patient = format!("Patient/{}", PatientId::random());
        for (extra, parameter, unsupported) in [
            (("code", "8867-4,8310-5"), "code", true),
            (("code", "http://snomed.info/sct|364075005"), "code", false),
            (("_sort", "value-quantity"), "_sort", true),
            (("_summary", "text"), "_summary", true),
            (("_include", "Observation:subject"), "_include", true),
            (("value-quantity", "gt100"), "value-quantity", true),
            (("_count", "0"), "_count", false),
            (("category", "social-history"), "category", false),
        ] {
            let error =
                observation_search(&pairs(&[("patient", &patient), ("code", "8867-4"), extra]))
                    .unwrap_err();
            assert_eq!(
                (error.parameter.as_str(), error.not_supported),
                (parameter, unsupported),
                "{error}"
            );
        }
        assert_eq!(
            observation_search(&pairs(&[("code", "8867-4")]))
                .unwrap_err()
                .parameter,
            "patient"
        );
        assert_eq!(
            observation_search(&pairs(&[("patient", &patient)]))
                .unwrap_err()
                .parameter,
            "code"
        );
        let other = observation_search(&pairs(&[
            ("patient", &patient),
            ("code", "8867-4"),
            ("category", "laboratory"),
        ]))
        .unwrap();
        assert!(!other.category_matches);
    }
}
