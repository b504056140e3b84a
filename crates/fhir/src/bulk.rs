//! FHIR Bulk Data Access (the `$export` operation): the kick-off's parameters as Wardline
//! reads them, and the manifest of a finished export.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

use crate::search::{SearchError, invalid, unsupported};

/// The media type of an export's files.
pub const FHIR_NDJSON: &str = "application/fhir+ndjson";

/// What `_outputFormat` may say: FHIR NDJSON, by any of the names the specification
/// lets a client use for it.
const OUTPUT_FORMATS: [&str; 3] = [FHIR_NDJSON, "application/ndjson", "ndjson"];

/// A kick-off's parameters.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExportParameters {
    /// `_type`, in the order given, each once; `None` for every type.
    pub types: Option<Vec<String>>,
    /// `_since`: only resources changed from then on.
    pub since: Option<DateTime<Utc>>,
}

/// Reads a kick-off's query: `_outputFormat`, `_since` (an instant, with its time zone)
/// and `_type` (comma-separated, repeatable; each of `known`). A parameter Wardline
/// cannot honour is refused by name, never ignored: an export that silently dropped a
/// `_typeFilter` would hand over more than was asked for.
pub fn export_parameters(
    pairs: &[(String, String)],
    known: &[&str],
) -> Result<ExportParameters, SearchError> {
    let mut parameters = ExportParameters::default();
    for (name, value) in pairs {
        match name.as_str() {
            "_outputFormat" => {
                if !OUTPUT_FORMATS.contains(&value.as_str()) {
                    return Err(unsupported(
                        "_outputFormat",
                        format!("{value:?}: exports are written as {FHIR_NDJSON} only"),
                    ));
                }
            }
            "_since" => {
                if parameters.since.is_some() {
                    return Err(invalid("_since", "given more than once"));
                }
                let since = DateTime::parse_from_rfc3339(value).map_err(|_| {
                    invalid(
                        "_since",
                        format!(
                            "{value:?} is not a FHIR instant (a date and time to the second \
                             with its zone, as 2026-12-01T00:00:00Z)"
                        ),
                    )
                })?;
                parameters.since = Some(since.with_timezone(&Utc));
            }
            "_type" => {
                let types = parameters.types.get_or_insert_with(Vec::new);
                for name in value.split(',').map(str::trim) {
                    if !known.contains(&name) {
                        return Err(invalid(
                            "_type",
                            format!(
                                "{name:?} is not a type Wardline exports ({})",
                                known.join(", ")
                            ),
                        ));
                    }
                    if !types.iter().any(|listed| listed == name) {
                        types.push(name.to_owned());
                    }
                }
            }
            "_typeFilter" | "_elements" | "patient" | "includeAssociatedData" => {
                return Err(unsupported(
                    name,
                    "not supported by Wardline's bulk export: export by type and `_since`",
                ));
            }
            other if crate::search::IGNORED_PARAMETERS.contains(&other) => {}
            other => {
                return Err(unsupported(
                    other,
                    "not a parameter of $export (_outputFormat, _since, _type)",
                ));
            }
        }
    }
    Ok(parameters)
}

/// One file of a finished export, as its manifest lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportFile {
    pub resource_type: String,
    pub url: String,
    pub count: u64,
}

/// The manifest of a finished export: when its data was taken (`transactionTime`, the
/// `_since` of the next export), the request, and its files, which are fetched with the
/// requester's access token.
pub fn export_manifest(
    transaction_time: DateTime<Utc>,
    request: &str,
    files: &[ExportFile],
) -> Value {
    json!({
        "transactionTime": transaction_time.to_rfc3339_opts(SecondsFormat::Millis, true),
        "request": request,
        "requiresAccessToken": true,
        "output": files
            .iter()
            .map(|file| json!({"type": file.resource_type, "url": file.url, "count": file.count}))
            .collect::<Vec<_>>(),
        "error": [],
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const KNOWN: [&str; 3] = ["Patient", "Observation", "Device"];

    fn pairs(query: &[(&str, &str)]) -> Vec<(String, String)> {
        query
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect()
    }

    #[test]
    fn types_are_read_in_order_once_and_since_as_an_instant() {
        let read = export_parameters(
            &pairs(&[
                ("_type", "Observation, Patient"),
                ("_type", "Observation"),
                ("_since", "2026-12-01T08:00:00+01:00"),
                ("_outputFormat", "application/fhir+ndjson"),
            ]),
            &KNOWN,
        )
        .unwrap();
        assert_eq!(
            read.types,
            Some(vec!["Observation".to_owned(), "Patient".to_owned()])
        );
        assert_eq!(
            read.since.unwrap().to_rfc3339(),
            "2026-12-01T07:00:00+00:00"
        );
        assert_eq!(
            export_parameters(&[], &KNOWN).unwrap(),
            ExportParameters::default()
        );
        for format in ["ndjson", "application/ndjson"] {
            assert!(export_parameters(&pairs(&[("_outputFormat", format)]), &KNOWN).is_ok());
        }
    }

    #[test]
    fn what_cannot_be_honoured_is_refused_by_name() {
        let refused =
            |query: &[(&str, &str)]| export_parameters(&pairs(query), &KNOWN).unwrap_err();
        let error = refused(&[("_type", "Observation,Medication")]);
        assert_eq!(error.parameter, "_type");
        assert!(error.reason.contains("\"Medication\""), "{}", error.reason);
        assert!(!error.not_supported);
        let error = refused(&[("_since", "2026-12-01")]);
        assert_eq!(error.parameter, "_since");
        let error = refused(&[
            ("_since", "2026-12-01T00:00:00Z"),
            ("_since", "2026-12-02T00:00:00Z"),
        ]);
        assert_eq!(error.parameter, "_since");
        let error = refused(&[("_outputFormat", "text/csv")]);
        assert_eq!(
            (error.parameter.as_str(), error.not_supported),
            ("_outputFormat", true)
        );
        let error = refused(&[("_typeFilter", "Observation?code=8867-4")]);
        assert_eq!(
            (error.parameter.as_str(), error.not_supported),
            ("_typeFilter", true)
        );
        let error = refused(&[("_count", "10")]);
        assert_eq!(
            (error.parameter.as_str(), error.not_supported),
            ("_count", true)
        );
    }

    #[test]
    fn a_manifest_lists_its_files_and_asks_for_the_token() {
        let time = DateTime::parse_from_rfc3339("2026-12-07T10:00:00.250Z")
            .unwrap()
            .with_timezone(&Utc);
        let manifest = export_manifest(
            time,
            "https://h/fhir/R4/Patient/$export",
            &[ExportFile {
                resource_type: "Observation".into(),
                url: "https://h/fhir/R4/$export-file/x/Observation.1.ndjson".into(),
                count: 7,
            }],
        );
        assert_eq!(manifest["transactionTime"], "2026-12-07T10:00:00.250Z");
        assert_eq!(manifest["requiresAccessToken"], true);
        assert_eq!(manifest["output"][0]["type"], "Observation");
        assert_eq!(manifest["output"][0]["count"], 7);
        assert_eq!(manifest["error"], json!([]));
    }
}
