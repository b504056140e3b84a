//! What an administrator registers and what a templated device sends: the input is read
//! as a device content template, a FHIR mapping template, a JSONPath and a JMESPath
//! expression, and as a device's message mapped by fixed templates of every kind.
#![no_main]

use std::sync::LazyLock;

use chrono::{Duration, TimeZone, Utc};
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};
use wardline_mapping::{
    ApplyContext, Document, Expression, JsonPath, Language, Mapping, envelope, parse_document,
};

/// A FHIR mapping for every type name the fixed templates give, with a value of each kind.
fn fhir() -> Value {
    json!({"templateType": "CollectionFhir", "template": [
        {"templateType": "CodeValueFhir", "template": {"typeName": "hr",
            "codes": [{"code": "8867-4", "system": "http://loinc.org"}],
            "value": {"valueName": "hr", "valueType": "SampledData", "unit": "count/min"}}},
        {"templateType": "CodeValueFhir", "template": {"typeName": "bp",
            "codes": [{"code": "85354-9", "system": "http://loinc.org"}],
            "components": [
                {"codes": [{"code": "8480-6", "system": "http://loinc.org"}], "value": {"valueName": "systolic", "valueType": "Quantity", "unit": "mmHg"}},
                {"codes": [{"code": "8462-4", "system": "http://loinc.org"}], "value": {"valueName": "diastolic", "valueType": "Quantity", "unit": "kPa"}}]}},
        {"templateType": "CodeValueFhir", "template": {"typeName": "event",
            "codes": [{"code": "e", "system": "https://example.org"}],
            "value": {"valueName": "event", "valueType": "CodeableConcept", "text": "E"}}}
    ]})
}

/// Templates of every kind, compiled once.
static MAPPINGS: LazyLock<Vec<Mapping>> = LazyLock::new(|| {
    let devices = [
        json!({"templateType": "JsonPathContent", "template": {"typeName": "hr",
            "typeMatchExpression": "$..[?(@hr && @time)]", "deviceIdExpression": "$.device",
            "timestampExpression": "$.time", "values": [{"valueName": "hr", "valueExpression": "$.hr", "required": true}]}}),
        json!({"templateType": "IotJsonPathContent", "template": {"typeName": "bp",
            "typeMatchExpression": "$..[?(@Body.systolic || @Body.diastolic)]",
            "values": [{"valueName": "systolic", "valueExpression": "$.Body.systolic", "required": "false"},
                       {"valueName": "diastolic", "valueExpression": "$.Body.diastolic", "required": "false"}]}}),
        json!({"templateType": "IotCentralJsonPathContent", "template": {"typeName": "hr",
            "typeMatchExpression": "$..[?(@telemetry.HeartRate)]",
            "values": [{"valueName": "hr", "valueExpression": "$.telemetry.HeartRate", "required": true}]}}),
        json!({"templateType": "CalculatedContent", "template": {"typeName": "hr",
            "defaultExpressionLanguage": "JmesPath",
            "typeMatchExpression": "Body[*] || [Body]",
            "deviceIdExpression": "matchedToken.d || 'x'",
            "timestampExpression": "fromUnixTimestampMs(to_number(matchedToken.ts) || `0`)",
            "values": [{"valueName": "hr", "valueExpression": "multiply(to_number(matchedToken.v) || `0`, `1.5`)", "required": true},
                       {"valueName": "event", "valueExpression": "matchedToken.e", "required": false}]}}),
    ];
    devices
        .iter()
        .filter_map(|device| Mapping::compile(device, &fhir()).ok())
        .collect()
});

fuzz_target!(|bytes: &[u8]| {
    // A fixed clock, so that a failing input fails again when it is replayed.
    let now = Utc
        .with_ymd_and_hms(2026, 6, 1, 12, 0, 0)
        .single()
        .expect("a valid time");
    let context = ApplyContext {
        now,
        max_future_skew: Duration::minutes(5),
        max_readings: 1000,
        message_bytes: bytes.len(),
    };
    assert_eq!(MAPPINGS.len(), 4, "every fixed template compiles");
    // As a template document: its own mapping, tried on a message of each fixed shape.
    if let Ok(document) = parse_document(bytes, Document::Device) {
        let _ = wardline_mapping::fhir_template(&document);
        if let Ok(mapping) = Mapping::compile(&document, &fhir()) {
            for message in [
                json!({"Body": {"hr": 70, "time": "2026-06-01T11:00:00Z", "device": "d"}, "Properties": {}, "SystemProperties": {}}),
                envelope(json!([{"v": "3", "ts": 1_780_000_000_000_i64}]), "d", now),
            ] {
                let _ = mapping.apply(&message, &["d"], &context);
            }
        }
        // As a device's message, mapped by every fixed template.
        let message = envelope(document, "d", now);
        for mapping in MAPPINGS.iter() {
            if let Ok(mapped) = mapping.apply(&message, &[], &context) {
                for reading in &mapped.readings {
                    assert!(reading.reading.value.is_finite());
                }
            }
        }
    }
    // As an expression.
    if let Ok(text) = std::str::from_utf8(bytes) {
        let sample = json!({"a": [1, {"b": "x"}], "Body": {"hr": "72"}});
        if let Ok(path) = JsonPath::parse(text) {
            let _ = path.select(&sample);
        }
        if let Ok(expression) = Expression::compile(text, Language::JmesPath) {
            let _ = expression.select_tokens(&sample);
        }
    }
});
