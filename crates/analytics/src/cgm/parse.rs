//! Importers for CGM exports. They take text, never paths: the caller owns I/O.

use chrono::{DateTime, NaiveDateTime};

use super::{GlucoseReading, MAX_PLAUSIBLE_MG_DL};
use crate::AnalyticsError;

/// Glucose a Dexcom G6 stands for when it prints "Low" (below its 40 mg/dL floor).
pub const DEXCOM_LOW_MG_DL: f64 = 40.0;
/// Glucose a Dexcom G6 stands for when it prints "High" (above its 400 mg/dL ceiling).
pub const DEXCOM_HIGH_MG_DL: f64 = 400.0;
/// mg/dL per mmol/L (molar mass of glucose 180.16 g/mol), as Tidepool uses.
const MG_DL_PER_MMOL_L: f64 = 18.018;

const TIMESTAMP_FORMATS: [&str; 2] = ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"];

/// Reads an ISO 8601 local time (`2015-06-06T16:50:27`, a space instead of
/// `T` and fractional seconds are accepted) into wall-clock seconds.
pub fn parse_timestamp(text: &str) -> Option<i64> {
    let text = text.trim();
    TIMESTAMP_FORMATS
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(text, f).ok())
        .map(|t| t.and_utc().timestamp())
}

/// Writes wall-clock seconds back as `YYYY-MM-DDThh:mm:ss`.
pub fn format_timestamp(timestamp: i64) -> String {
    DateTime::from_timestamp(timestamp, 0)
        .map(|t| t.naive_utc().format("%Y-%m-%dT%H:%M:%S").to_string())
        .unwrap_or_else(|| timestamp.to_string())
}

/// Parses the common layout `timestamp,glucose_mg_dl`: one header line, then
/// one reading per line; an empty glucose field is a missing value.
///
/// Blank lines are skipped, a UTF-8 byte-order mark and CRLF line ends are
/// tolerated. Rows must be in time order (equal timestamps allowed), because
/// an out-of-order row usually means two files were concatenated.
pub fn parse_common_csv(text: &str) -> Result<Vec<GlucoseReading>, AnalyticsError> {
    let mut lines = numbered_lines(text);
    let (header_line, header) = lines
        .next()
        .ok_or(AnalyticsError::InsufficientData("the CSV text is empty"))?;
    let columns = split_csv_line(header);
    if columns != ["timestamp", "glucose_mg_dl"] {
        return Err(parse_error(
            header_line,
            "header",
            format!("expected `timestamp,glucose_mg_dl`, found `{header}`"),
        ));
    }
    let mut readings = Vec::new();
    for (line, text) in lines {
        let fields = split_csv_line(text);
        let [timestamp, glucose] = fields.as_slice() else {
            return Err(parse_error(
                line,
                "row",
                format!("expected 2 fields, found {}", fields.len()),
            ));
        };
        let timestamp = read_timestamp(line, "timestamp", timestamp)?;
        let glucose = read_glucose(line, "glucose_mg_dl", glucose, 1.0)?;
        push_in_order(&mut readings, line, timestamp, glucose)?;
    }
    Ok(readings)
}

/// Parses a Dexcom Clarity CSV export, keeping its `EGV` (estimated glucose
/// value) rows and ignoring patient, device, alert, calibration and event rows.
///
/// Columns are found by their header names, so column order and extra columns
/// do not matter. `Low` and `High` become [`DEXCOM_LOW_MG_DL`] and
/// [`DEXCOM_HIGH_MG_DL`], the sensor's limits, so that they still count as
/// below 54 / above 250 in the consensus metrics. An mmol/L export is
/// converted to mg/dL.
pub fn parse_dexcom_clarity(text: &str) -> Result<Vec<GlucoseReading>, AnalyticsError> {
    let mut lines = numbered_lines(text);
    let (header_line, header) = lines.next().ok_or(AnalyticsError::InsufficientData(
        "the Clarity export is empty",
    ))?;
    let layout = ClarityLayout::from_header(header_line, header)?;
    let mut readings = Vec::new();
    for (line, text) in lines {
        let fields = split_csv_line(text);
        let field = |index: usize| fields.get(index).map_or("", |f| f.trim());
        if field(layout.event_type) != "EGV" {
            continue;
        }
        let timestamp = read_timestamp(line, "Timestamp", field(layout.timestamp))?;
        let glucose = match field(layout.glucose) {
            "Low" | "LOW" => Some(DEXCOM_LOW_MG_DL),
            "High" | "HIGH" => Some(DEXCOM_HIGH_MG_DL),
            other => read_glucose(line, "Glucose Value", other, layout.to_mg_dl)?,
        };
        push_in_order(&mut readings, line, timestamp, glucose)?;
    }
    Ok(readings)
}

/// What a reading of an import is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportedKind {
    /// The sensor's own periodic reading (Clarity's `EGV`, LibreView's historic glucose).
    Sensor,
    /// A reading the patient took by scanning the sensor (LibreView).
    Scan,
}

/// One glucose of an export, at its local clock time (exports carry no zone).
#[derive(Debug, Clone, PartialEq)]
pub struct ImportedReading {
    /// Its line in the file, for the summary of what was refused.
    pub line: usize,
    pub local: NaiveDateTime,
    pub glucose_mg_dl: f64,
    pub kind: ImportedKind,
}

/// A row of an export that held a glucose and was not taken, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct RefusedRow {
    pub line: usize,
    pub field: String,
    pub reason: String,
}

/// What an export gives an import: its glucose readings, the rows refused with their
/// reasons, and how many rows held something else (alerts, insulin, food, the
/// patient's name).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CgmImport {
    pub readings: Vec<ImportedReading>,
    pub refused: Vec<RefusedRow>,
    pub other_rows: usize,
}

impl CgmImport {
    fn take(
        &mut self,
        line: usize,
        kind: ImportedKind,
        local: Result<i64, AnalyticsError>,
        glucose: Result<Option<f64>, AnalyticsError>,
    ) {
        let refuse = |error: AnalyticsError| match error {
            AnalyticsError::Parse {
                line,
                field,
                reason,
            } => RefusedRow {
                line,
                field,
                reason,
            },
            other => RefusedRow {
                line,
                field: "row".into(),
                reason: other.to_string(),
            },
        };
        match (local, glucose) {
            (Ok(local), Ok(Some(glucose_mg_dl))) => {
                if let Some(local) = DateTime::from_timestamp(local, 0) {
                    self.readings.push(ImportedReading {
                        line,
                        local: local.naive_utc(),
                        glucose_mg_dl,
                        kind,
                    });
                }
            }
            (Ok(_), Ok(None)) => self.refused.push(RefusedRow {
                line,
                field: "glucose".into(),
                reason: "no glucose value".into(),
            }),
            (Err(error), _) | (_, Err(error)) => self.refused.push(refuse(error)),
        }
    }
}

/// Reads a Dexcom Clarity export for an import: as [`parse_dexcom_clarity`], but a bad
/// row is refused on its own (with its line, field and reason) instead of failing the
/// file; only a file that is not a Clarity export at all is an error.
pub fn import_dexcom_clarity(text: &str) -> Result<CgmImport, AnalyticsError> {
    let mut lines = numbered_lines(text);
    let (header_line, header) = lines.next().ok_or(AnalyticsError::InsufficientData(
        "the Clarity export is empty",
    ))?;
    let layout = ClarityLayout::from_header(header_line, header)?;
    let mut import = CgmImport::default();
    for (line, text) in lines {
        let fields = split_csv_line(text);
        let field = |index: usize| fields.get(index).map_or("", |f| f.trim());
        if field(layout.event_type) != "EGV" {
            import.other_rows += 1;
            continue;
        }
        let glucose = match field(layout.glucose) {
            "Low" | "LOW" => Ok(Some(DEXCOM_LOW_MG_DL)),
            "High" | "HIGH" => Ok(Some(DEXCOM_HIGH_MG_DL)),
            other => read_glucose(line, "Glucose Value", other, layout.to_mg_dl),
        };
        let local = read_timestamp(line, "Timestamp", field(layout.timestamp));
        import.take(line, ImportedKind::Sensor, local, glucose);
    }
    Ok(import)
}

/// Glucose a FreeStyle Libre stands for when it prints "LO" (below its 40 mg/dL floor).
pub const LIBRE_LOW_MG_DL: f64 = 40.0;
/// Glucose a FreeStyle Libre stands for when it prints "HI" (above its 500 mg/dL ceiling).
pub const LIBRE_HIGH_MG_DL: f64 = 500.0;

/// LibreView's clock formats: with AM/PM the export is American (month first); in 24-hour
/// time it is European (day first); some exports write ISO dates.
const LIBREVIEW_TIME_FORMATS: [&str; 6] = [
    "%m-%d-%Y %I:%M %p",
    "%m/%d/%Y %I:%M %p",
    "%d-%m-%Y %H:%M",
    "%d/%m/%Y %H:%M",
    "%d.%m.%Y %H:%M",
    "%Y-%m-%d %H:%M",
];

/// Reads a LibreView glucose export (FreeStyle Libre readers and the LibreLink app): its
/// historic glucose (every 15 minutes), in mg/dL or mmol/L. The first lines
/// may be LibreView's title ("Glucose Data, Generated on, …"); the header is the line
/// that names `Device Timestamp` and `Record Type`. Scans, strip (finger-prick) glucose,
/// insulin, food, notes and clock changes are counted as other rows.
pub fn import_libreview(text: &str) -> Result<CgmImport, AnalyticsError> {
    let mut lines = numbered_lines(text);
    let (header_line, columns) = loop {
        let (line, text) = lines.next().ok_or_else(|| {
            parse_error(
                1,
                "header",
                "no line names `Device Timestamp` and `Record Type`: is this a LibreView glucose export?".into(),
            )
        })?;
        let columns = split_csv_line(text);
        if columns.iter().any(|c| c.trim() == "Device Timestamp")
            && columns.iter().any(|c| c.trim() == "Record Type")
        {
            break (line, columns);
        }
        if line > 5 {
            return Err(parse_error(
                line,
                "header",
                "no line of the first five names `Device Timestamp` and `Record Type`: is this a LibreView glucose export?".into(),
            ));
        }
    };
    let find = |name: &str| columns.iter().position(|c| c.trim() == name);
    let glucose_column = |prefix: &str| -> Result<Option<(usize, f64)>, AnalyticsError> {
        match (
            find(&format!("{prefix} mg/dL")),
            find(&format!("{prefix} mmol/L")),
        ) {
            (Some(index), _) => Ok(Some((index, 1.0))),
            (None, Some(index)) => Ok(Some((index, MG_DL_PER_MMOL_L))),
            (None, None) => Ok(None),
        }
    };
    let timestamp = find("Device Timestamp").unwrap_or(0);
    let record_type = find("Record Type").unwrap_or(0);
    let historic = glucose_column("Historic Glucose")?;
    if historic.is_none() {
        return Err(parse_error(
            header_line,
            "header",
            "no `Historic Glucose` column (in mg/dL or mmol/L)".into(),
        ));
    }
    let mut import = CgmImport::default();
    for (line, text) in lines {
        let fields = split_csv_line(text);
        let field = |index: usize| fields.get(index).map_or("", |f| f.trim());
        // Historic readings only, as LibreView's own reports: scans are taken when the
        // patient looks, which is most often during an excursion, and would weigh the
        // metrics toward it.
        let (column, kind, name) = match (field(record_type), historic) {
            ("0", Some(column)) => (column, ImportedKind::Sensor, "Historic Glucose"),
            _ => {
                import.other_rows += 1;
                continue;
            }
        };
        let (index, to_mg_dl) = column;
        let glucose = match field(index) {
            "LO" | "Lo" => Ok(Some(LIBRE_LOW_MG_DL)),
            "HI" | "Hi" => Ok(Some(LIBRE_HIGH_MG_DL)),
            other => read_glucose(line, name, other, to_mg_dl),
        };
        let clock = field(timestamp);
        let local = LIBREVIEW_TIME_FORMATS
            .iter()
            .find_map(|format| NaiveDateTime::parse_from_str(clock, format).ok())
            .map(|time| time.and_utc().timestamp())
            .ok_or_else(|| {
                parse_error(
                    line,
                    "Device Timestamp",
                    format!("`{clock}` is not a LibreView time (such as 01-14-2024 08:03 AM or 14-01-2024 08:03)"),
                )
            });
        import.take(line, kind, local, glucose);
    }
    Ok(import)
}

/// Where the columns a Clarity importer needs sit in this export.
struct ClarityLayout {
    timestamp: usize,
    event_type: usize,
    glucose: usize,
    to_mg_dl: f64,
}

impl ClarityLayout {
    fn from_header(line: usize, header: &str) -> Result<Self, AnalyticsError> {
        let columns = split_csv_line(header);
        let find = |prefix: &str| {
            columns
                .iter()
                .position(|c| c.trim().starts_with(prefix))
                .ok_or_else(|| {
                    parse_error(
                        line,
                        "header",
                        format!("no `{prefix}` column: is this a Dexcom Clarity export?"),
                    )
                })
        };
        let glucose = find("Glucose Value")?;
        let unit = columns.get(glucose).map_or("", |c| c.as_str());
        let to_mg_dl = if unit.contains("mmol/L") {
            MG_DL_PER_MMOL_L
        } else if unit.contains("mg/dL") {
            1.0
        } else {
            return Err(parse_error(
                line,
                "Glucose Value",
                format!("unknown glucose unit in `{unit}`"),
            ));
        };
        Ok(Self {
            timestamp: find("Timestamp")?,
            event_type: find("Event Type")?,
            glucose,
            to_mg_dl,
        })
    }
}

/// Non-blank lines with their 1-based numbers, BOM and line ends removed.
fn numbered_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim_end_matches('\r')))
        .filter(|(_, l)| !l.trim().is_empty())
}

/// Splits one CSV record (RFC 4180 quoting, no embedded line breaks, which
/// neither layout produces).
fn split_csv_line(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(std::mem::take(&mut field)),
            _ => field.push(c),
        }
    }
    fields.push(field);
    fields
}

fn read_timestamp(line: usize, field: &str, text: &str) -> Result<i64, AnalyticsError> {
    if text.trim().is_empty() {
        return Err(parse_error(line, field, "missing timestamp".to_owned()));
    }
    parse_timestamp(text).ok_or_else(|| {
        parse_error(
            line,
            field,
            format!("`{text}` is not a YYYY-MM-DDThh:mm:ss time"),
        )
    })
}

fn read_glucose(
    line: usize,
    field: &str,
    text: &str,
    to_mg_dl: f64,
) -> Result<Option<f64>, AnalyticsError> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let value: f64 = text
        .parse()
        .map_err(|_| parse_error(line, field, format!("`{text}` is not a number")))?;
    let mg_dl = value * to_mg_dl;
    if !mg_dl.is_finite() || mg_dl <= 0.0 || mg_dl > MAX_PLAUSIBLE_MG_DL {
        return Err(parse_error(
            line,
            field,
            format!("{mg_dl} mg/dL is not a plausible glucose (0 < g <= {MAX_PLAUSIBLE_MG_DL})"),
        ));
    }
    Ok(Some(mg_dl))
}

fn push_in_order(
    readings: &mut Vec<GlucoseReading>,
    line: usize,
    timestamp: i64,
    glucose_mg_dl: Option<f64>,
) -> Result<(), AnalyticsError> {
    if let Some(previous) = readings.last()
        && timestamp < previous.timestamp
    {
        return Err(parse_error(
            line,
            "timestamp",
            format!(
                "{} is earlier than the previous row ({}); rows must be in time order",
                format_timestamp(timestamp),
                format_timestamp(previous.timestamp)
            ),
        ));
    }
    readings.push(GlucoseReading {
        timestamp,
        glucose_mg_dl,
    });
    Ok(())
}

fn parse_error(line: usize, field: &str, reason: String) -> AnalyticsError {
    AnalyticsError::Parse {
        line,
        field: field.to_owned(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_import_refuses_bad_rows_one_by_one() {
        let import = import_dexcom_clarity(
            "Index,Timestamp (YYYY-MM-DDThh:mm:ss),Event Type,Glucose Value (mg/dL)\n\
             1,,FirstName,\n\
             2,2016-10-24T11:24:17,EGV,103\n\
             3,2016-10-24T11:29:17,EGV,abc\n\
             4,yesterday,EGV,100\n\
             5,2016-10-24T11:39:17,EGV,Low\n",
        )
        .unwrap();
        assert_eq!(import.readings.len(), 2);
        assert_eq!(import.readings[1].glucose_mg_dl, DEXCOM_LOW_MG_DL);
        assert_eq!(import.other_rows, 1);
        assert_eq!(
            import
                .refused
                .iter()
                .map(|row| (row.line, row.field.as_str()))
                .collect::<Vec<_>>(),
            vec![(4, "Glucose Value"), (5, "Timestamp")]
        );
        assert!(
            import_dexcom_clarity("a,b\n1,2\n").is_err(),
            "not a Clarity export"
        );
    }

    #[test]
    fn libreview_exports_in_either_clock_and_unit() {
        let american = import_libreview(
            "Glucose Data,Generated on,01-15-2024 10:00 AM UTC,Generated by,Jane Doe\n\
             Device,Serial Number,Device Timestamp,Record Type,Historic Glucose mg/dL,Scan Glucose mg/dL,Notes\n\
             FreeStyle LibreLink,ABC,01-14-2024 08:03 PM,0,105,,\n\
             FreeStyle LibreLink,ABC,01-14-2024 08:10 PM,1,,112,\n\
             FreeStyle LibreLink,ABC,01-14-2024 08:12 PM,6,,,clock changed\n\
             FreeStyle LibreLink,ABC,01-14-2024 08:18 PM,0,LO,,\n",
        )
        .unwrap();
        assert_eq!(american.readings.len(), 2, "historic readings only");
        assert_eq!(
            american.readings[0].local.to_string(),
            "2024-01-14 20:03:00"
        );
        assert_eq!(american.readings[1].glucose_mg_dl, LIBRE_LOW_MG_DL);
        assert_eq!(american.other_rows, 2, "the scan and the clock change");
        let european = import_libreview(
            "Device,Serial Number,Device Timestamp,Record Type,Historic Glucose mmol/L,Scan Glucose mmol/L\n\
             FreeStyle Libre 2,XYZ,02-03-2024 14:15,0,5.5,\n",
        )
        .unwrap();
        assert_eq!(
            european.readings[0].local.to_string(),
            "2024-03-02 14:15:00"
        );
        assert!((european.readings[0].glucose_mg_dl - 99.099).abs() < 1e-3);
        assert!(import_libreview("timestamp,glucose_mg_dl\n").is_err());
    }

    #[test]
    fn common_csv_reads_missing_values_and_reports_bad_lines() {
        let readings = parse_common_csv(
            "timestamp,glucose_mg_dl\r\n2020-01-01T00:00:00,100\r\n2020-01-01T00:05:00,\r\n",
        )
        .unwrap();
        assert_eq!(readings.len(), 2);
        assert_eq!(readings[0].glucose_mg_dl, Some(100.0));
        assert_eq!(readings[1].glucose_mg_dl, None);
        assert_eq!(readings[1].timestamp - readings[0].timestamp, 300);

        let err =
            parse_common_csv("timestamp,glucose_mg_dl\n2020-01-01T00:00:00,abc\n").unwrap_err();
        assert!(
            matches!(err, AnalyticsError::Parse { line: 2, ref field, .. } if field == "glucose_mg_dl")
        );
        let err =
            parse_common_csv("timestamp,glucose_mg_dl\n2020-13-01T00:00:00,90\n").unwrap_err();
        assert!(
            matches!(err, AnalyticsError::Parse { line: 2, ref field, .. } if field == "timestamp")
        );
        let err = parse_common_csv("time,value\n").unwrap_err();
        assert!(matches!(err, AnalyticsError::Parse { line: 1, .. }));
        let err = parse_common_csv(
            "timestamp,glucose_mg_dl\n2020-01-01T00:05:00,90\n2020-01-01T00:00:00,90\n",
        )
        .unwrap_err();
        assert!(matches!(err, AnalyticsError::Parse { line: 3, .. }));
        let err =
            parse_common_csv("timestamp,glucose_mg_dl\n2020-01-01T00:05:00,-4\n").unwrap_err();
        assert!(matches!(err, AnalyticsError::Parse { line: 2, .. }));
        assert!(parse_common_csv("").is_err());
    }

    #[test]
    fn clarity_maps_low_and_high_and_skips_other_rows() {
        let text = "\u{feff}Index,Timestamp (YYYY-MM-DDThh:mm:ss),Event Type,Event Subtype,Glucose Value (mg/dL)\n\
                    1,,Alert,High,200\n\
                    2,2020-01-01T00:00:00,EGV,,Low\n\
                    3,2020-01-01T00:05:00,EGV,,High\n\
                    4,2020-01-01T00:10:00,EGV,,123\n\
                    5,2020-01-01T00:12:00,Calibration,,130\n";
        let readings = parse_dexcom_clarity(text).unwrap();
        let values: Vec<_> = readings.iter().map(|r| r.glucose_mg_dl).collect();
        assert_eq!(values, [Some(40.0), Some(400.0), Some(123.0)]);

        let bad =
            "Index,Timestamp (YYYY-MM-DDThh:mm:ss),Event Type,Glucose Value (mg/dL)\n1,,EGV,100\n";
        let err = parse_dexcom_clarity(bad).unwrap_err();
        assert!(
            matches!(err, AnalyticsError::Parse { line: 2, ref field, .. } if field == "Timestamp")
        );
        assert!(parse_dexcom_clarity("a,b\n").is_err());
    }

    #[test]
    fn quoted_fields_keep_their_commas() {
        assert_eq!(split_csv_line(r#"a,"b,c","d""e""#), ["a", "b,c", "d\"e"]);
    }
}
