//! Device content templates: which part of a message is which measurement (iomt-fhir's
//! `CollectionContent`, `JsonPathContent`, `IotJsonPathContent`,
//! `IotCentralJsonPathContent` and `CalculatedContent`).

use chrono::{DateTime, NaiveDateTime, Utc};
use serde_json::{Map, Value};

use crate::expression::{Expression, Language, Scope};
use wardline_domain::json::kind as json_type;

use crate::problems::{Problems, entries, kind_of};

/// The kinds of device content template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentKind {
    /// JSONPath; later expressions read the matched token.
    JsonPath,
    /// A message from Azure IoT Hub's device SDKs: the device and time come from the
    /// hub's properties.
    IotJsonPath,
    /// A message exported by Azure IoT Central: the device and time are its own fields.
    IotCentralJsonPath,
    /// JSONPath or JMESPath; later expressions read the message with the matched token
    /// added as `matchedToken`.
    Calculated,
}

impl ContentKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::JsonPath => "JsonPathContent",
            Self::IotJsonPath => "IotJsonPathContent",
            Self::IotCentralJsonPath => "IotCentralJsonPathContent",
            Self::Calculated => "CalculatedContent",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        [
            Self::JsonPath,
            Self::IotJsonPath,
            Self::IotCentralJsonPath,
            Self::Calculated,
        ]
        .into_iter()
        .find(|kind| kind.name().eq_ignore_ascii_case(text))
    }

    /// The device and time expressions the kind fixes, if it fixes them.
    fn fixed_expressions(self) -> Option<(&'static str, &'static str)> {
        match self {
            Self::IotJsonPath => Some((
                "$.SystemProperties.iothub-connection-device-id",
                "$.Properties.iothub-creation-time-utc",
            )),
            Self::IotCentralJsonPath => Some(("$.deviceId", "$.enqueuedTime")),
            Self::JsonPath | Self::Calculated => None,
        }
    }
}

/// One value a template extracts.
#[derive(Debug, Clone)]
pub struct ValueExpression {
    pub name: String,
    pub expression: Expression,
    pub required: bool,
}

/// One content template.
#[derive(Debug, Clone)]
pub struct ContentTemplate {
    /// Where it is in the document, for messages (`template[2]`).
    pub location: String,
    pub kind: ContentKind,
    pub type_name: String,
    pub type_match: Expression,
    pub device_id: Expression,
    pub timestamp: Expression,
    pub patient_id: Option<Expression>,
    pub encounter_id: Option<Expression>,
    pub correlation_id: Option<Expression>,
    pub values: Vec<ValueExpression>,
}

/// A device content document: the templates every message is evaluated against.
#[derive(Debug, Clone)]
pub struct DeviceTemplate {
    pub templates: Vec<ContentTemplate>,
}

/// What a template found in a message (iomt-fhir's normalised measurement).
#[derive(Debug, Clone, PartialEq)]
pub struct Measurement {
    pub type_name: String,
    /// The index of the template that found it.
    pub template: usize,
    pub occurrence: DateTime<Utc>,
    pub device_id: String,
    pub patient_id: Option<String>,
    pub encounter_id: Option<String>,
    pub correlation_id: Option<String>,
    /// Named values, in the template's order; an optional value not present is absent.
    pub values: Vec<(String, Value)>,
}

/// Why a message could not be mapped: the field (template and expression) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtractError {
    pub field: String,
    pub reason: String,
    pub kind: ExtractErrorKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtractErrorKind {
    Missing,
    BadTimestamp,
    Expression,
    TooMany,
}

const CONTENT_FIELDS: &[&str] = &[
    "typeName",
    "typeMatchExpression",
    "deviceIdExpression",
    "timestampExpression",
    "patientIdExpression",
    "encounterIdExpression",
    "correlationIdExpression",
    "values",
    "defaultExpressionLanguage",
];

impl DeviceTemplate {
    /// Reads a `CollectionContent` document, or one content template on its own. Every
    /// problem is collected, each with its place in the document.
    pub(crate) fn from_json(document: &Value, problems: &mut Problems) -> Self {
        let mut templates = Vec::new();
        for entry in entries(document, "CollectionContent", problems) {
            match ContentKind::parse(entry.kind) {
                Some(kind) => {
                    if let Some(template) =
                        content_template(kind, entry.body, &entry.location, problems)
                    {
                        templates.push(template);
                    }
                }
                None => problems.add(entry.at("templateType"), unknown_kind(entry.kind)),
            }
        }
        Self { templates }
    }

    /// The measurements `message` gives: every template is tried, and each token a
    /// template's type match finds is one measurement. `message_bytes` is the message's
    /// size: a CalculatedContent template reads the whole message for each token, so
    /// the tokens times the size is bounded (a hostile message must not cost gigabytes).
    pub fn extract(
        &self,
        message: &Value,
        message_bytes: usize,
        max_measurements: usize,
    ) -> Result<Vec<Measurement>, ExtractError> {
        let mut measurements = Vec::new();
        let whole = Scope::new(message);
        for (index, template) in self.templates.iter().enumerate() {
            let matched = template
                .type_match
                .select_tokens_in(&whole)
                .map_err(|reason| {
                    template.error("typeMatchExpression", &template.type_match, reason)
                })?;
            if measurements.len() + matched.len() > max_measurements {
                return Err(ExtractError {
                    field: "$".into(),
                    reason: format!("the message gives more than {max_measurements} measurements"),
                    kind: ExtractErrorKind::TooMany,
                });
            }
            if template.kind == ContentKind::Calculated
                && matched.len().saturating_mul(message_bytes) > MAX_CALCULATED_WORK
            {
                return Err(ExtractError {
                    field: format!(
                        "{} ({}).typeMatchExpression",
                        template.location_or_root(),
                        template.type_name
                    ),
                    reason: format!(
                        "{} tokens in a message of {message_bytes} bytes: a CalculatedContent template reads the whole message for each, more than one message may cost ({} MiB)",
                        matched.len(),
                        MAX_CALCULATED_WORK >> 20
                    ),
                    kind: ExtractErrorKind::TooMany,
                });
            }
            match template.kind {
                ContentKind::Calculated => {
                    // One copy of the message per template, its `matchedToken` replaced for
                    // each token.
                    let mut scope = match message {
                        Value::Object(members) => Value::Object(members.clone()),
                        _ => Value::Object(Map::new()),
                    };
                    for token in matched {
                        if let Value::Object(members) = &mut scope {
                            members.insert("matchedToken".into(), token);
                        }
                        measurements.push(template.measurement(index, &Scope::new(&scope))?);
                    }
                }
                _ => {
                    for token in matched {
                        measurements.push(template.measurement(index, &Scope::new(&token))?);
                    }
                }
            }
        }
        Ok(measurements)
    }
}

/// The most bytes of message a CalculatedContent template may read in one message (its
/// matched tokens times the message's size).
pub(crate) const MAX_CALCULATED_WORK: usize = 64 << 20;

impl ContentTemplate {
    fn error(&self, field: &str, expression: &Expression, reason: String) -> ExtractError {
        ExtractError {
            field: format!("{} ({}).{field}", self.location_or_root(), self.type_name),
            reason: format!("{}: {reason}", expression.text()),
            kind: ExtractErrorKind::Expression,
        }
    }

    fn location_or_root(&self) -> &str {
        if self.location.is_empty() {
            "template"
        } else {
            &self.location
        }
    }

    fn missing(&self, field: &str, expression: &Expression) -> ExtractError {
        ExtractError {
            field: format!("{} ({}).{field}", self.location_or_root(), self.type_name),
            reason: format!(
                "{} found nothing in the message, and it is required",
                expression.text()
            ),
            kind: ExtractErrorKind::Missing,
        }
    }

    fn text(
        &self,
        field: &str,
        expression: &Expression,
        scope: &Scope<'_>,
    ) -> Result<Option<String>, ExtractError> {
        let token = expression
            .select_token_in(scope)
            .map_err(|reason| self.error(field, expression, reason))?;
        Ok(token.filter(present).map(|token| match token {
            Value::String(text) => text,
            other => other.to_string(),
        }))
    }

    fn measurement(&self, index: usize, scope: &Scope<'_>) -> Result<Measurement, ExtractError> {
        let device_id = self
            .text("deviceIdExpression", &self.device_id, scope)?
            .ok_or_else(|| self.missing("deviceIdExpression", &self.device_id))?;
        let time = self
            .timestamp
            .select_token_in(scope)
            .map_err(|reason| self.error("timestampExpression", &self.timestamp, reason))?
            .filter(present)
            .ok_or_else(|| self.missing("timestampExpression", &self.timestamp))?;
        let occurrence = parse_time(&time).map_err(|reason| ExtractError {
            field: format!(
                "{} ({}).timestampExpression",
                self.location_or_root(),
                self.type_name
            ),
            reason,
            kind: ExtractErrorKind::BadTimestamp,
        })?;
        let optional = |field: &str, expression: &Option<Expression>| match expression {
            Some(expression) => self.text(field, expression, scope),
            None => Ok(None),
        };
        let mut values = Vec::with_capacity(self.values.len());
        for value in &self.values {
            let field = format!("values.{}", value.name);
            let token = value
                .expression
                .select_token_in(scope)
                .map_err(|reason| self.error(&field, &value.expression, reason))?
                .filter(present);
            match token {
                Some(token) => values.push((value.name.clone(), token)),
                None if value.required => return Err(self.missing(&field, &value.expression)),
                None => {}
            }
        }
        Ok(Measurement {
            type_name: self.type_name.clone(),
            template: index,
            occurrence,
            device_id,
            patient_id: optional("patientIdExpression", &self.patient_id)?,
            encounter_id: optional("encounterIdExpression", &self.encounter_id)?,
            correlation_id: optional("correlationIdExpression", &self.correlation_id)?,
            values,
        })
    }
}

/// Present as iomt-fhir counts it: not null, and not an empty string.
fn present(token: &Value) -> bool {
    match token {
        Value::Null => false,
        Value::String(text) => !text.is_empty(),
        _ => true,
    }
}

/// A measurement time: RFC 3339, or a date and time without a zone, read as UTC (as
/// iomt-fhir does).
pub(crate) fn parse_time(token: &Value) -> Result<DateTime<Utc>, String> {
    let Value::String(text) = token else {
        return Err(format!(
            "{} is {}, not a timestamp; a Unix time becomes one with fromUnixTimestamp() or fromUnixTimestampMs() in a JMESPath expression",
            token,
            kind_of(token)
        ));
    };
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Ok(time.with_timezone(&Utc));
    }
    NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
        .map(|naive| naive.and_utc())
        .map_err(|_| format!("{text:?} is not an ISO 8601 date and time"))
}

fn unknown_kind(kind: &str) -> String {
    format!(
        "{kind:?} is not a device content template type (CollectionContent, JsonPathContent, IotJsonPathContent, IotCentralJsonPathContent, CalculatedContent)"
    )
}

fn content_template(
    kind: ContentKind,
    body: &Value,
    location: &str,
    problems: &mut Problems,
) -> Option<ContentTemplate> {
    let base = if location.is_empty() {
        "template".to_owned()
    } else {
        format!("{location}.template")
    };
    let at = |field: &str| format!("{base}.{field}");
    let Value::Object(members) = body else {
        problems.add(
            base.clone(),
            format!(
                "a {} template is an object, not {}",
                kind.name(),
                kind_of(body)
            ),
        );
        return None;
    };
    let before = problems.len();
    for name in members.keys() {
        if !CONTENT_FIELDS.contains(&name.as_str()) {
            problems.add(
                at(name),
                format!("unknown field of a {} template", kind.name()),
            );
        }
    }
    let default_language = match members.get("defaultExpressionLanguage") {
        None => Language::JsonPath,
        Some(_) if kind != ContentKind::Calculated => {
            problems.add(
                at("defaultExpressionLanguage"),
                format!(
                    "{} templates are JSONPath only; CalculatedContent takes JMESPath",
                    kind.name()
                ),
            );
            Language::JsonPath
        }
        Some(Value::String(text)) => Language::parse(text).unwrap_or_else(|| {
            problems.add(
                at("defaultExpressionLanguage"),
                format!("{text:?} is not JsonPath or JmesPath"),
            );
            Language::JsonPath
        }),
        Some(other) => {
            problems.add(
                at("defaultExpressionLanguage"),
                format!("must be a string, not {}", kind_of(other)),
            );
            Language::JsonPath
        }
    };
    let type_name = match members.get("typeName") {
        Some(Value::String(name)) if !name.trim().is_empty() => Some(name.clone()),
        Some(Value::String(_)) => {
            problems.add(at("typeName"), "blank: name the type of measurement");
            None
        }
        Some(other) => {
            problems.add(
                at("typeName"),
                format!("must be a string, not {}", kind_of(other)),
            );
            None
        }
        None => {
            problems.add(at("typeName"), "missing: name the type of measurement");
            None
        }
    };
    let expression = |field: &str, required: bool, problems: &mut Problems| -> Option<Expression> {
        match members.get(field) {
            None | Some(Value::Null) => {
                if required {
                    problems.add(
                        at(field),
                        format!("missing: {} templates need it", kind.name()),
                    );
                }
                None
            }
            Some(value) => compile_expression(value, kind, default_language, &at(field), problems),
        }
    };
    let type_match = expression("typeMatchExpression", true, problems);
    let (device_id, timestamp) = match kind.fixed_expressions() {
        Some((device, time)) => (
            Expression::compile(device, Language::JsonPath).ok(),
            Expression::compile(time, Language::JsonPath).ok(),
        ),
        None => (
            expression("deviceIdExpression", true, problems),
            expression("timestampExpression", true, problems),
        ),
    };
    let patient_id = expression("patientIdExpression", false, problems);
    let encounter_id = expression("encounterIdExpression", false, problems);
    let correlation_id = expression("correlationIdExpression", false, problems);
    let values = match members.get("values") {
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .enumerate()
            .filter_map(|(index, item)| {
                value_expression(
                    item,
                    kind,
                    default_language,
                    &at(&format!("values[{index}]")),
                    problems,
                )
            })
            .collect(),
        Some(Value::Array(_)) | None => {
            problems.add(
                at("values"),
                "missing: a template extracts at least one value",
            );
            Vec::new()
        }
        Some(other) => {
            problems.add(
                at("values"),
                format!("must be an array, not {}", kind_of(other)),
            );
            Vec::new()
        }
    };
    if problems.len() != before {
        return None;
    }
    Some(ContentTemplate {
        location: location.to_owned(),
        kind,
        type_name: type_name?,
        type_match: type_match?,
        device_id: device_id?,
        timestamp: timestamp?,
        patient_id,
        encounter_id,
        correlation_id,
        values,
    })
}

fn value_expression(
    item: &Value,
    kind: ContentKind,
    default_language: Language,
    at: &str,
    problems: &mut Problems,
) -> Option<ValueExpression> {
    let Value::Object(members) = item else {
        problems.add(
            at,
            format!(
                "a value is an object with valueName and valueExpression, not {}",
                kind_of(item)
            ),
        );
        return None;
    };
    for name in members.keys() {
        if !["valueName", "valueExpression", "required"].contains(&name.as_str()) {
            problems.add(
                format!("{at}.{name}"),
                "unknown field of a value (valueName, valueExpression, required)",
            );
        }
    }
    let name = match members.get("valueName") {
        Some(Value::String(name)) if !name.trim().is_empty() => Some(name.clone()),
        Some(_) => {
            problems.add(
                format!("{at}.valueName"),
                "must be a name that is not blank",
            );
            None
        }
        None => {
            problems.add(
                format!("{at}.valueName"),
                "missing: the name the FHIR mapping uses for the value",
            );
            None
        }
    };
    let expression = match members.get("valueExpression") {
        Some(value) => compile_expression(
            value,
            kind,
            default_language,
            &format!("{at}.valueExpression"),
            problems,
        ),
        None => {
            problems.add(
                format!("{at}.valueExpression"),
                "missing: where the value is",
            );
            None
        }
    };
    let required = match members.get("required") {
        None => false,
        Some(Value::Bool(required)) => *required,
        Some(Value::String(text)) if text.eq_ignore_ascii_case("true") => true,
        Some(Value::String(text)) if text.eq_ignore_ascii_case("false") => false,
        Some(other) => {
            problems.add(
                format!("{at}.required"),
                format!("must be true or false, not {other}"),
            );
            false
        }
    };
    Some(ValueExpression {
        name: name?,
        expression: expression?,
        required,
    })
}

fn compile_expression(
    value: &Value,
    kind: ContentKind,
    default_language: Language,
    at: &str,
    problems: &mut Problems,
) -> Option<Expression> {
    let (text, language) = match value {
        Value::String(text) => (text.as_str(), default_language),
        Value::Object(members) => {
            for name in members.keys() {
                if name != "value" && name != "language" {
                    problems.add(
                        format!("{at}.{name}"),
                        "unknown field of an expression (value, language)",
                    );
                }
            }
            let language = match members.get("language") {
                None => default_language,
                Some(Value::String(text)) => match Language::parse(text) {
                    Some(language) => language,
                    None => {
                        problems.add(
                            format!("{at}.language"),
                            format!("{text:?} is not JsonPath or JmesPath"),
                        );
                        return None;
                    }
                },
                Some(other) => {
                    problems.add(
                        format!("{at}.language"),
                        format!("must be a string, not {}", kind_of(other)),
                    );
                    return None;
                }
            };
            match members.get("value") {
                Some(Value::String(text)) => (text.as_str(), language),
                Some(other) => {
                    problems.add(
                        format!("{at}.value"),
                        format!("must be the expression as a string, not {}", kind_of(other)),
                    );
                    return None;
                }
                None => {
                    problems.add(format!("{at}.value"), "missing: the expression");
                    return None;
                }
            }
        }
        other => {
            problems.add(at, format!("must be an expression (a string, or an object with value and language), not {}", json_type(other)));
            return None;
        }
    };
    if language == Language::JmesPath && kind != ContentKind::Calculated {
        problems.add(
            at,
            format!(
                "{} templates are JSONPath only; CalculatedContent takes JMESPath",
                kind.name()
            ),
        );
        return None;
    }
    if text.trim().is_empty() {
        problems.add(at, "empty: write the expression");
        return None;
    }
    match Expression::compile(text, language) {
        Ok(expression) => Some(expression),
        Err(reason) => {
            let language = match language {
                Language::JsonPath => "JSONPath",
                Language::JmesPath => "JMESPath",
            };
            problems.add(at, format!("not a valid {language} expression: {reason}"));
            None
        }
    }
}
