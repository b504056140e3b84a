//! What JSON from outside (a Nightscout upload, a templated device's message) is, read
//! the same way wherever it arrives.

use serde_json::Value;

/// A value's JSON type, for messages: "a string", "an object", …
pub fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A finite number, or a string that holds one (care portals send `"carbs": "15"`, and
/// devices often send their values as text).
pub fn number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(number) => number.as_f64().filter(|value| value.is_finite()),
        Value::String(text) => text
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|value| value.is_finite()),
        _ => None,
    }
}
