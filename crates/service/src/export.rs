//! A patient's readings taken out of Wardline: every observation of a time range, as CSV
//! (for a spreadsheet) or NDJSON (one JSON observation per line, for a program), for the
//! patient and their care team. An export is read page by page, so a year of
//! second-by-second readings never sits in memory at once.

use std::sync::Arc;

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use wardline_domain::codes::CATALOGUE;
use wardline_domain::{Observation, ObservationCode, PatientId};
use wardline_store::{ObservationQuery, PageCursor, Store};

use crate::Wardline;
use crate::actor::Actor;
use crate::clinical::Window;
use crate::error::Error;

/// Observations read per page of an export.
const PAGE: u32 = 5000;

/// The formats an export is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    Csv,
    Ndjson,
}

impl ExportFormat {
    pub fn parse(text: &str) -> Result<Self, Error> {
        match text {
            "csv" => Ok(ExportFormat::Csv),
            "ndjson" => Ok(ExportFormat::Ndjson),
            other => Err(Error::invalid(
                "format",
                format!("{other:?} is not a format taken here (csv, ndjson)"),
            )),
        }
    }

    pub fn media_type(self) -> &'static str {
        match self {
            ExportFormat::Csv => "text/csv; charset=utf-8",
            ExportFormat::Ndjson => "application/x-ndjson",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            ExportFormat::Csv => "csv",
            ExportFormat::Ndjson => "ndjson",
        }
    }

    /// What comes before the first observation.
    pub fn header(self) -> &'static str {
        match self {
            ExportFormat::Csv => {
                "effective,loinc,display,value,unit,original_value,original_unit,device_id,seq,received,derived\r\n"
            }
            ExportFormat::Ndjson => "",
        }
    }

    /// One observation as a line of this format.
    pub fn line(self, observation: &Observation) -> Result<String, Error> {
        match self {
            ExportFormat::Ndjson => serde_json::to_string(observation)
                .map(|mut line| {
                    line.push('\n');
                    line
                })
                .map_err(|error| Error::Internal(error.to_string())),
            ExportFormat::Csv => {
                let time = |time: DateTime<Utc>| time.to_rfc3339_opts(SecondsFormat::Millis, true);
                let fields = [
                    time(observation.effective),
                    observation.loinc.to_owned(),
                    observation.code.spec().display.to_owned(),
                    observation.value.to_string(),
                    observation.unit.to_owned(),
                    observation
                        .original_value
                        .map(|value| value.to_string())
                        .unwrap_or_default(),
                    observation.original_unit.clone().unwrap_or_default(),
                    observation.device_id.to_string(),
                    observation.seq.to_string(),
                    time(observation.received),
                    observation.derived.to_string(),
                ];
                let mut line = fields
                    .iter()
                    .map(|field| csv_field(field))
                    .collect::<Vec<_>>()
                    .join(",");
                line.push_str("\r\n");
                Ok(line)
            }
        }
    }
}

/// A CSV field as RFC 4180 writes it: quoted when it holds a comma, a quote or a line
/// break, with quotes doubled. A field that a spreadsheet would run as a formula (`=`,
/// `+`, `-`, `@` first) is not produced here: every field is a number, a time, a code or
/// a unit Wardline wrote, but a unit a device sent is quoted with a leading apostrophe
/// when it starts with one of those.
fn csv_field(field: &str) -> String {
    let field = if field.starts_with(['=', '+', '@'])
        || (field.starts_with('-') && field.parse::<f64>().is_err())
    {
        format!("'{field}")
    } else {
        field.to_owned()
    };
    if field.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field
    }
}

/// An export under way: its pages, code by code, each code's observations oldest first.
#[derive(Debug)]
pub struct ObservationExport {
    store: Arc<dyn Store>,
    patient_id: PatientId,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    codes: Vec<ObservationCode>,
    next_code: usize,
    after: Option<PageCursor>,
}

impl ObservationExport {
    /// The next page, or `None` when every code has been read.
    pub async fn next_page(&mut self) -> Result<Option<Vec<Observation>>, Error> {
        while let Some(code) = self.codes.get(self.next_code).copied() {
            let page = self
                .store
                .observations(ObservationQuery {
                    patient_id: self.patient_id,
                    code,
                    from: self.from,
                    to: self.to,
                    after: self.after,
                    limit: PAGE,
                    newest_first: false,
                })
                .await?;
            match page.next {
                Some(next) => self.after = Some(next),
                None => {
                    self.after = None;
                    self.next_code += 1;
                }
            }
            if !page.observations.is_empty() {
                return Ok(Some(page.observations));
            }
        }
        Ok(None)
    }

    pub fn window(&self) -> (DateTime<Utc>, DateTime<Utc>) {
        (self.from, self.to)
    }
}

impl Wardline {
    /// Starts an export of the patient's observations measured in the window (all of
    /// them when it is open), for the patient and their care team. Audited once, with
    /// the window.
    pub async fn export_observations(
        &self,
        actor: &Actor,
        patient_id: PatientId,
        window: Window,
    ) -> Result<ObservationExport, Error> {
        let to = window
            .1
            .unwrap_or_else(|| self.now() + Duration::minutes(5));
        let from = window
            .0
            .unwrap_or_else(wardline_domain::nightscout::earliest);
        if from >= to {
            return Err(Error::invalid("from", "must be before `to`"));
        }
        let access = self
            .authorize_patient(
                actor,
                patient_id,
                "observations.export",
                Some(format!("from {from} to {to}")),
            )
            .await?;
        Ok(ObservationExport {
            store: Arc::clone(&self.store),
            patient_id: access.patient_id(),
            from,
            to,
            codes: CATALOGUE.iter().map(|spec| spec.code).collect(),
            next_code: 0,
            after: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_and_never_formulas() {
        assert_eq!(csv_field("mg/dL"), "mg/dL");
        assert_eq!(csv_field("-12.5"), "-12.5");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_field("@cmd"), "'@cmd");
    }
}
