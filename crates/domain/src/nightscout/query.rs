//! Nightscout's read queries, as uploaders and followers send them: `count=10`,
//! `find[type]=sgv`, `find[date][$gte]=1705000000000`,
//! `find[created_at][$gte]=2026-01-15T00:00:00Z`, `find[eventType]=Correction+Bolus`.
//!
//! Conditions on a collection's time (`date`, `dateString`, `sysTime`, `created_at`,
//! `mills`, `startDate`) become a time range the store reads by index; a condition on
//! the document's type becomes an equality the store also filters on; every other
//! condition is checked on each document the store returns.

use std::cmp::Ordering;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::Collection;

/// Most documents one read returns, whatever `count` asks: a day of readings a minute
/// apart, and a bound on the answer's size where documents are large (a Loop device
/// status with its predictions is tens of kilobytes).
pub fn max_count(collection: Collection) -> usize {
    match collection {
        Collection::Entries => 10_000,
        Collection::Treatments => 5_000,
        Collection::DeviceStatus => 1_000,
        Collection::Profile => 100,
    }
}

/// A comparison of `find[field][$op]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    Eq,
    Ne,
    Gt,
    Gte,
    Lt,
    Lte,
}

impl Comparison {
    fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "$eq" => Comparison::Eq,
            "$ne" => Comparison::Ne,
            "$gt" => Comparison::Gt,
            "$gte" => Comparison::Gte,
            "$lt" => Comparison::Lt,
            "$lte" => Comparison::Lte,
            _ => return None,
        })
    }

    fn holds(self, ordering: Ordering) -> bool {
        match self {
            Comparison::Eq => ordering == Ordering::Equal,
            Comparison::Ne => ordering != Ordering::Equal,
            Comparison::Gt => ordering == Ordering::Greater,
            Comparison::Gte => ordering != Ordering::Less,
            Comparison::Lt => ordering == Ordering::Less,
            Comparison::Lte => ordering != Ordering::Greater,
        }
    }
}

/// One `find` condition checked on the documents.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub field: String,
    pub comparison: Comparison,
    pub value: String,
}

impl Condition {
    /// Whether the document meets it; a document without the field meets only `$ne`.
    pub fn holds(&self, document: &Map<String, Value>) -> bool {
        let Some(actual) = lookup(document, &self.field) else {
            return self.comparison == Comparison::Ne;
        };
        let ordering = match (actual, self.value.parse::<f64>()) {
            (Value::Number(actual), Ok(wanted)) => actual
                .as_f64()
                .and_then(|actual| actual.partial_cmp(&wanted))
                .unwrap_or(Ordering::Less),
            (Value::String(text), _) => text.as_str().cmp(self.value.as_str()),
            (other, _) => other.to_string().as_str().cmp(self.value.as_str()),
        };
        self.comparison.holds(ordering)
    }
}

/// A field by its dotted path (`pump.battery.percent`).
fn lookup<'a>(document: &'a Map<String, Value>, field: &str) -> Option<&'a Value> {
    let mut parts = field.split('.');
    let mut value = document.get(parts.next()?)?;
    for part in parts {
        value = value.as_object()?.get(part)?;
    }
    (!value.is_null()).then_some(value)
}

/// A parsed read.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub count: usize,
    /// Documents whose time is at or after this (milliseconds).
    pub from_ms: Option<i64>,
    /// Documents whose time is at or before this (milliseconds).
    pub to_ms: Option<i64>,
    /// `type` (entries), `eventType` (treatments) or `device` (device status).
    pub kind: Option<String>,
    pub conditions: Vec<Condition>,
}

impl Query {
    pub fn matches(&self, document: &Map<String, Value>) -> bool {
        self.conditions
            .iter()
            .all(|condition| condition.holds(document))
    }
}

/// Why a query was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{parameter}: {reason}")]
pub struct QueryError {
    pub parameter: String,
    pub reason: String,
}

fn query_error(parameter: &str, reason: impl Into<String>) -> QueryError {
    QueryError {
        parameter: parameter.to_owned(),
        reason: reason.into(),
    }
}

/// Whether `field` is the collection's time under one of the names clients use.
fn is_time_field(collection: Collection, field: &str) -> bool {
    match collection {
        Collection::Entries => matches!(field, "date" | "dateString" | "sysTime"),
        Collection::Treatments | Collection::DeviceStatus => {
            matches!(field, "created_at" | "mills" | "date" | "timestamp")
        }
        Collection::Profile => matches!(field, "startDate" | "created_at" | "mills"),
    }
}

fn time_ms(parameter: &str, value: &str) -> Result<i64, QueryError> {
    if let Ok(number) = value.parse::<f64>()
        && number.is_finite()
        && number.abs() < 8.64e15
    {
        return Ok(if number.abs() < 1e11 {
            (number * 1000.0) as i64
        } else {
            number as i64
        });
    }
    if let Ok(time) = DateTime::parse_from_rfc3339(value) {
        return Ok(time.timestamp_millis());
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(time) = chrono::NaiveDateTime::parse_from_str(value, format) {
            return Ok(time.and_utc().timestamp_millis());
        }
    }
    if let Ok(date) = chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d")
        && let Some(time) = date.and_hms_opt(0, 0, 0)
    {
        return Ok(time.and_utc().timestamp_millis());
    }
    Err(query_error(
        parameter,
        format!("{value:?} is not a time (ISO 8601 or milliseconds since 1970)"),
    ))
}

/// Parses a query's parameters (already URL-decoded, in order). `type_from_path` is the
/// type a path such as `/entries/sgv.json` names.
pub fn parse_query(
    collection: Collection,
    parameters: &[(String, String)],
    type_from_path: Option<&str>,
) -> Result<Query, QueryError> {
    let mut query = Query {
        count: collection.default_count(),
        from_ms: None,
        to_ms: None,
        kind: type_from_path.map(str::to_owned),
        conditions: Vec::new(),
    };
    for (name, value) in parameters {
        if name == "count" {
            let count: usize = value
                .trim()
                .parse()
                .map_err(|_| query_error("count", format!("{value:?} is not a whole number")))?;
            // Nightscout reads `count=0` as "no limit"; the bound still holds.
            let most = max_count(collection);
            query.count = if count == 0 { most } else { count.min(most) };
            continue;
        }
        let Some(rest) = name.strip_prefix("find[") else {
            // Parameters uploaders add that do not filter (token, secret, cache busters).
            continue;
        };
        let (field, comparison) = match rest.split_once("][") {
            Some((field, operator)) => {
                let operator = operator.strip_suffix(']').unwrap_or(operator);
                let comparison = Comparison::parse(operator).ok_or_else(|| {
                    query_error(
                        name,
                        format!(
                            "{operator:?} is not an operator taken here ($eq, $ne, $gt, $gte, $lt, $lte)"
                        ),
                    )
                })?;
                (field, comparison)
            }
            None => (rest.strip_suffix(']').unwrap_or(rest), Comparison::Eq),
        };
        if field.is_empty() || field.len() > 64 {
            return Err(query_error(name, "names no field"));
        }
        if is_time_field(collection, field) && comparison != Comparison::Ne {
            let ms = time_ms(name, value)?;
            match comparison {
                Comparison::Gte => {
                    query.from_ms = Some(query.from_ms.map_or(ms, |from| from.max(ms)))
                }
                Comparison::Gt => {
                    query.from_ms = Some(query.from_ms.map_or(ms + 1, |from| from.max(ms + 1)))
                }
                Comparison::Lte => query.to_ms = Some(query.to_ms.map_or(ms, |to| to.min(ms))),
                Comparison::Lt => {
                    query.to_ms = Some(query.to_ms.map_or(ms - 1, |to| to.min(ms - 1)))
                }
                Comparison::Eq => {
                    query.from_ms = Some(ms);
                    query.to_ms = Some(ms);
                }
                Comparison::Ne => {}
            }
            continue;
        }
        if collection.kind_field() == Some(field) && comparison == Comparison::Eq {
            query.kind = Some(value.clone());
            continue;
        }
        query.conditions.push(Condition {
            field: field.to_owned(),
            comparison,
            value: value.clone(),
        });
    }
    Ok(query)
}

/// A time as the `created_at` of stored documents is written, for comparisons.
pub fn iso_ms(ms: i64) -> Option<String> {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .map(|time| time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(text: &[(&str, &str)]) -> Vec<(String, String)> {
        text.iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect()
    }

    #[test]
    fn times_become_a_range_and_types_an_equality() {
        let query = parse_query(
            Collection::Entries,
            &pairs(&[
                ("count", "20"),
                ("find[type]", "sgv"),
                ("find[date][$gte]", "1705000000000"),
                ("find[dateString][$lte]", "2024-01-12T00:00:00Z"),
                ("find[sgv][$lt]", "70"),
            ]),
            None,
        )
        .unwrap();
        assert_eq!(query.count, 20);
        assert_eq!(query.kind.as_deref(), Some("sgv"));
        assert_eq!(query.from_ms, Some(1705000000000));
        assert_eq!(query.to_ms, Some(1705017600000));
        assert_eq!(query.conditions.len(), 1);
        let low: Map<String, Value> = serde_json::from_str(r#"{"sgv": 65}"#).unwrap();
        let high: Map<String, Value> = serde_json::from_str(r#"{"sgv": 165}"#).unwrap();
        assert!(query.matches(&low));
        assert!(!query.matches(&high));
    }

    #[test]
    fn bad_parameters_are_named() {
        let error =
            parse_query(Collection::Entries, &pairs(&[("count", "ten")]), None).unwrap_err();
        assert_eq!(error.parameter, "count");
        let error = parse_query(
            Collection::Treatments,
            &pairs(&[("find[created_at][$where]", "1")]),
            None,
        )
        .unwrap_err();
        assert!(error.reason.contains("$where"));
        let error = parse_query(
            Collection::Treatments,
            &pairs(&[("find[created_at][$gte]", "yesterday")]),
            None,
        )
        .unwrap_err();
        assert!(error.reason.contains("not a time"));
    }

    #[test]
    fn string_fields_compare_as_text_and_nested_fields_are_reached() {
        let query = parse_query(
            Collection::DeviceStatus,
            &pairs(&[
                ("find[pump.battery.percent][$gte]", "50"),
                ("find[uploader]", "phone"),
            ]),
            None,
        )
        .unwrap();
        let document: Map<String, Value> =
            serde_json::from_str(r#"{"uploader": "phone", "pump": {"battery": {"percent": 75}}}"#)
                .unwrap();
        assert!(query.matches(&document));
        let other: Map<String, Value> =
            serde_json::from_str(r#"{"uploader": "watch", "pump": {"battery": {"percent": 75}}}"#)
                .unwrap();
        assert!(!query.matches(&other));
    }
}
