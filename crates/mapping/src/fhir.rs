//! FHIR mapping templates (iomt-fhir's `CollectionFhir` of `CodeValueFhir`): for each
//! type of measurement, the codes of its observation and how each value is recorded.
//! Wardline reads them for what they decide about a reading: its LOINC code and unit.

use serde_json::Value;

use crate::problems::{Problems, entries, kind_of};

/// A coding (`code`, `system`, `display`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coding {
    pub code: String,
    pub system: Option<String>,
    pub display: Option<String>,
}

pub const LOINC: &str = "http://loinc.org";
pub const UCUM: &str = "http://unitsofmeasure.org";

/// How one value is recorded.
#[derive(Debug, Clone, PartialEq)]
pub enum ValueTemplate {
    SampledData {
        value_name: String,
        unit: Option<String>,
        default_period_ms: Option<f64>,
    },
    Quantity {
        value_name: String,
        unit: Option<String>,
        code: Option<String>,
        system: Option<String>,
    },
    String {
        value_name: String,
    },
    CodeableConcept {
        value_name: String,
        text: Option<String>,
        codes: Vec<Coding>,
    },
}

impl ValueTemplate {
    pub fn value_name(&self) -> &str {
        match self {
            Self::SampledData { value_name, .. }
            | Self::Quantity { value_name, .. }
            | Self::String { value_name }
            | Self::CodeableConcept { value_name, .. } => value_name,
        }
    }

    /// The unit a numeric value is in, as the template states it: a Quantity's UCUM
    /// code when it has one, else its unit text.
    pub fn stated_unit(&self) -> Option<&str> {
        match self {
            Self::SampledData { unit, .. } => unit.as_deref(),
            Self::Quantity {
                unit, code, system, ..
            } => match (code, system) {
                (Some(code), Some(system)) if system == UCUM && !code.is_empty() => {
                    Some(code.as_str())
                }
                _ => unit.as_deref(),
            },
            Self::String { .. } | Self::CodeableConcept { .. } => None,
        }
        .filter(|unit| !unit.trim().is_empty())
    }

    pub fn type_label(&self) -> &'static str {
        match self {
            Self::SampledData { .. } => "SampledData",
            Self::Quantity { .. } => "Quantity",
            Self::String { .. } => "String",
            Self::CodeableConcept { .. } => "CodeableConcept",
        }
    }
}

/// A component of an observation: its own codes and value.
#[derive(Debug, Clone, PartialEq)]
pub struct Component {
    pub codes: Vec<Coding>,
    pub value: ValueTemplate,
}

/// One `CodeValueFhir` template.
#[derive(Debug, Clone, PartialEq)]
pub struct CodeValueTemplate {
    pub type_name: String,
    pub codes: Vec<Coding>,
    /// Minutes of grouping in iomt-fhir's observations (0: one per measurement); a
    /// Wardline reading is always one measurement, so this is kept but not applied.
    pub period_interval: Option<i64>,
    pub value: Option<ValueTemplate>,
    pub components: Vec<Component>,
}

/// A FHIR mapping document.
#[derive(Debug, Clone, Default)]
pub struct FhirTemplate {
    pub templates: Vec<CodeValueTemplate>,
}

impl FhirTemplate {
    pub fn for_type(&self, type_name: &str) -> Option<&CodeValueTemplate> {
        self.templates
            .iter()
            .find(|template| template.type_name == type_name)
    }

    /// Reads a `CollectionFhir` document, or one `CodeValueFhir` on its own.
    pub(crate) fn from_json(document: &Value, problems: &mut Problems) -> Self {
        let mut templates = Vec::new();
        for entry in entries(document, "CollectionFhir", problems) {
            if entry.kind.eq_ignore_ascii_case("CodeValueFhir") {
                if let Some(template) = code_value(entry.body, &entry.at("template"), problems) {
                    templates.push(template);
                }
            } else {
                problems.add(entry.at("templateType"), unknown_kind(entry.kind));
            }
        }
        let mut seen = std::collections::HashSet::new();
        for (index, template) in templates.iter().enumerate() {
            if !seen.insert(template.type_name.as_str()) {
                problems.add(
                    format!("template[{index}].template.typeName"),
                    format!(
                        "{:?} is mapped twice; a type has one mapping",
                        template.type_name
                    ),
                );
            }
        }
        Self { templates }
    }
}

fn unknown_kind(kind: &str) -> String {
    format!("{kind:?} is not a FHIR mapping template type (CollectionFhir, CodeValueFhir)")
}

fn string_field(
    members: &serde_json::Map<String, Value>,
    name: &str,
    at: &str,
    problems: &mut Problems,
) -> Option<String> {
    match members.get(name) {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => Some(text.clone()),
        Some(other) => {
            problems.add(
                format!("{at}.{name}"),
                format!("must be a string, not {}", kind_of(other)),
            );
            None
        }
    }
}

fn known_fields(
    members: &serde_json::Map<String, Value>,
    known: &[&str],
    what: &str,
    at: &str,
    problems: &mut Problems,
) {
    for name in members.keys() {
        if !known.contains(&name.as_str()) {
            problems.add(
                format!("{at}.{name}"),
                format!("unknown field of {what} ({})", known.join(", ")),
            );
        }
    }
}

fn code_value(body: &Value, at: &str, problems: &mut Problems) -> Option<CodeValueTemplate> {
    let Value::Object(members) = body else {
        problems.add(
            at,
            format!(
                "a CodeValueFhir template is an object, not {}",
                kind_of(body)
            ),
        );
        return None;
    };
    let before = problems.len();
    known_fields(
        members,
        &[
            "typeName",
            "codes",
            "periodInterval",
            "category",
            "value",
            "components",
        ],
        "a CodeValueFhir template",
        at,
        problems,
    );
    let type_name = match string_field(members, "typeName", at, problems) {
        Some(name) if !name.trim().is_empty() => Some(name),
        Some(_) => {
            problems.add(
                format!("{at}.typeName"),
                "blank: name the type of measurement it maps",
            );
            None
        }
        None => {
            if !members.contains_key("typeName") {
                problems.add(
                    format!("{at}.typeName"),
                    "missing: name the type of measurement it maps",
                );
            }
            None
        }
    };
    let codes = codings(members.get("codes"), &format!("{at}.codes"), true, problems);
    let period_interval = match members.get("periodInterval") {
        None | Some(Value::Null) => None,
        Some(Value::Number(number)) if number.as_i64().is_some_and(|n| n >= 0) => number.as_i64(),
        Some(other) => {
            problems.add(
                format!("{at}.periodInterval"),
                format!(
                    "must be a whole number of minutes, 0 or more, not {}",
                    kind_of(other)
                ),
            );
            None
        }
    };
    if let Some(category) = members
        .get("category")
        .filter(|category| !category.is_array())
    {
        problems.add(
            format!("{at}.category"),
            format!("must be an array, not {}", kind_of(category)),
        );
    }
    let value = members
        .get("value")
        .and_then(|value| value_template(value, &format!("{at}.value"), problems));
    let components = match members.get("components") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .filter_map(|(index, item)| {
                let at = format!("{at}.components[{index}]");
                let Value::Object(component) = item else {
                    problems.add(
                        at,
                        format!(
                            "a component is an object with codes and value, not {}",
                            kind_of(item)
                        ),
                    );
                    return None;
                };
                known_fields(component, &["codes", "value"], "a component", &at, problems);
                let codes = codings(
                    component.get("codes"),
                    &format!("{at}.codes"),
                    true,
                    problems,
                );
                let value = match component.get("value") {
                    Some(value) => value_template(value, &format!("{at}.value"), problems),
                    None => {
                        problems.add(
                            format!("{at}.value"),
                            "missing: how the component's value is recorded",
                        );
                        None
                    }
                };
                Some(Component {
                    codes,
                    value: value?,
                })
            })
            .collect(),
        Some(other) => {
            problems.add(
                format!("{at}.components"),
                format!("must be an array, not {}", kind_of(other)),
            );
            Vec::new()
        }
    };
    if problems.len() != before {
        return None;
    }
    Some(CodeValueTemplate {
        type_name: type_name?,
        codes,
        period_interval,
        value,
        components,
    })
}

fn codings(
    value: Option<&Value>,
    at: &str,
    required: bool,
    problems: &mut Problems,
) -> Vec<Coding> {
    let items = match value {
        Some(Value::Array(items)) if !items.is_empty() => items,
        Some(Value::Array(_)) | None | Some(Value::Null) => {
            if required {
                problems.add(at, "missing: at least one code (code, system, display)");
            }
            return Vec::new();
        }
        Some(other) => {
            problems.add(
                at,
                format!("must be an array of codes, not {}", kind_of(other)),
            );
            return Vec::new();
        }
    };
    items
        .iter()
        .enumerate()
        .filter_map(|(index, item)| {
            let at = format!("{at}[{index}]");
            let Value::Object(members) = item else {
                problems.add(
                    at,
                    format!(
                        "a code is an object (code, system, display), not {}",
                        kind_of(item)
                    ),
                );
                return None;
            };
            known_fields(
                members,
                &["code", "system", "display"],
                "a code",
                &at,
                problems,
            );
            let code = match string_field(members, "code", &at, problems) {
                Some(code) if !code.trim().is_empty() => Some(code),
                _ => {
                    problems.add(format!("{at}.code"), "missing: the code itself");
                    None
                }
            };
            let system = string_field(members, "system", &at, problems);
            let display = string_field(members, "display", &at, problems);
            Some(Coding {
                code: code?,
                system,
                display,
            })
        })
        .collect()
}

fn value_template(value: &Value, at: &str, problems: &mut Problems) -> Option<ValueTemplate> {
    let Value::Object(members) = value else {
        problems.add(
            at,
            format!(
                "a value is an object with valueName and valueType, not {}",
                kind_of(value)
            ),
        );
        return None;
    };
    let value_name = match string_field(members, "valueName", at, problems) {
        Some(name) if !name.trim().is_empty() => Some(name),
        _ => {
            problems.add(
                format!("{at}.valueName"),
                "missing: the name of the value in the device template",
            );
            None
        }
    };
    let value_type = match string_field(members, "valueType", at, problems) {
        Some(kind) => Some(kind),
        None => {
            problems.add(
                format!("{at}.valueType"),
                "missing: SampledData, Quantity, String or CodeableConcept",
            );
            None
        }
    };
    let unit = string_field(members, "unit", at, problems);
    let template = match value_type
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("sampleddata") => {
            known_fields(
                members,
                &["valueName", "valueType", "unit", "defaultPeriod"],
                "a SampledData value",
                at,
                problems,
            );
            let default_period_ms = match members.get("defaultPeriod") {
                None | Some(Value::Null) => None,
                Some(Value::Number(number)) if number.as_f64().is_some_and(|p| p > 0.0) => {
                    number.as_f64()
                }
                Some(other) => {
                    problems.add(
                        format!("{at}.defaultPeriod"),
                        format!(
                            "must be a positive number of milliseconds, not {}",
                            kind_of(other)
                        ),
                    );
                    None
                }
            };
            ValueTemplate::SampledData {
                value_name: value_name.clone()?,
                unit,
                default_period_ms,
            }
        }
        Some("quantity") => {
            known_fields(
                members,
                &["valueName", "valueType", "unit", "code", "system"],
                "a Quantity value",
                at,
                problems,
            );
            ValueTemplate::Quantity {
                value_name: value_name.clone()?,
                unit,
                code: string_field(members, "code", at, problems),
                system: string_field(members, "system", at, problems),
            }
        }
        Some("string") => {
            known_fields(
                members,
                &["valueName", "valueType"],
                "a String value",
                at,
                problems,
            );
            ValueTemplate::String {
                value_name: value_name.clone()?,
            }
        }
        Some("codeableconcept") => {
            known_fields(
                members,
                &["valueName", "valueType", "text", "codes"],
                "a CodeableConcept value",
                at,
                problems,
            );
            ValueTemplate::CodeableConcept {
                value_name: value_name.clone()?,
                text: string_field(members, "text", at, problems),
                codes: codings(
                    members.get("codes"),
                    &format!("{at}.codes"),
                    false,
                    problems,
                ),
            }
        }
        Some(_) => {
            problems.add(
                format!("{at}.valueType"),
                format!(
                    "{:?} is not SampledData, Quantity, String or CodeableConcept",
                    value_type.unwrap_or_default()
                ),
            );
            return None;
        }
        None => return None,
    };
    Some(template)
}
