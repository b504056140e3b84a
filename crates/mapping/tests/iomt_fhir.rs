//! The templates and payloads of iomt-fhir (the open-source code behind Azure's MedTech
//! service), from `WARDLINE_SHARED_DATA/mapping-templates/iomt-fhir`: every template is
//! accepted or refused as iomt-fhir's documentation says, and every pair of a valid
//! template and a payload gives the measurements its docs/Configuration.md and
//! docs/CustomFunctions.md say it must, worked out by hand below, pair by pair. Files
//! this test does not name are still read: each template must be either accepted or
//! refused with a named field, and each payload must map without a panic.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};
use wardline_domain::{ObservationCode, PayloadErrorKind};
use wardline_mapping::{
    ApplyContext, Document, Mapped, Mapping, Measurement, device_template, envelope, fhir_template,
    parse_document,
};

fn data_dir() -> PathBuf {
    std::env::var_os("WARDLINE_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"))
        .join("mapping-templates/iomt-fhir")
}

fn read(relative: &str) -> Vec<u8> {
    let path = data_dir().join(relative);
    std::fs::read(&path).unwrap_or_else(|error| {
        panic!(
            "{} is missing or unreadable ({error}); set WARDLINE_SHARED_DATA to the folder holding mapping-templates/iomt-fhir",
            path.display()
        )
    })
}

fn input(name: &str) -> Value {
    parse_document(&read(&format!("test-input/{name}")), Document::Device).unwrap()
}

fn time(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

/// Payload files that are whole IoT Hub events (`Body`, `Properties`, `SystemProperties`)
/// are used as they are; a bare device payload becomes the event Wardline makes of it.
fn message(name: &str) -> Value {
    let payload = input(name);
    if payload.get("Body").is_some() {
        payload
    } else {
        envelope(payload, "device-under-test", time("2020-08-05T22:27:00Z"))
    }
}

fn extract(
    template: &str,
    payload: &str,
) -> Result<Vec<Measurement>, wardline_mapping::ExtractError> {
    device_template(&input(template))
        .unwrap()
        .extract(&message(payload), 4096, 1000)
}

fn context() -> ApplyContext {
    ApplyContext {
        now: time("2026-12-01T00:00:00Z"),
        max_future_skew: Duration::minutes(5),
        max_readings: 1000,
        message_bytes: 4096,
    }
}

/// (type, time, device, values) of a measurement.
type Summary = (String, DateTime<Utc>, String, Vec<(String, Value)>);

fn summary(measurements: &[Measurement]) -> Vec<Summary> {
    measurements
        .iter()
        .map(|m| {
            (
                m.type_name.clone(),
                m.occurrence,
                m.device_id.clone(),
                m.values.clone(),
            )
        })
        .collect()
}

fn expected(type_name: &str, at: &str, device: &str, values: &[(&str, Value)]) -> Summary {
    (
        type_name.into(),
        time(at),
        device.into(),
        values
            .iter()
            .map(|(name, value)| ((*name).to_owned(), value.clone()))
            .collect(),
    )
}

fn readings(mapped: &Mapped) -> Vec<(ObservationCode, f64, DateTime<Utc>)> {
    mapped
        .readings
        .iter()
        .map(|r| (r.reading.code, r.reading.value, r.reading.effective))
        .collect()
}

// ---- Documentation examples (Configuration.md, "CalculatedContent Examples") ----

#[test]
fn documented_heart_rate_gives_one_measurement_and_a_heart_rate_reading() {
    let found = extract(
        "data_Documentation_CalculatedFunction_HeartRate_Template.json",
        "data_Documentation_CalculatedFunction_HeartRate_Payload.json",
    )
    .unwrap();
    assert_eq!(
        summary(&found),
        vec![expected(
            "heartrate",
            "2019-02-01T22:46:01.875Z",
            "device123",
            &[("hr", json!("78"))]
        )]
    );
    let mapping = Mapping::compile(
        &input("data_Documentation_CalculatedFunction_HeartRate_Template.json"),
        &input("data_CollectionFhirTemplateValid.json"),
    )
    .unwrap();
    let mapped = mapping
        .apply(
            &input("data_Documentation_CalculatedFunction_HeartRate_Payload.json"),
            &["device123"],
            &context(),
        )
        .unwrap();
    assert_eq!(
        readings(&mapped),
        vec![(
            ObservationCode::HeartRate,
            78.0,
            time("2019-02-01T22:46:01.875Z")
        )]
    );
}

#[test]
fn documented_blood_pressure_gives_both_values() {
    let found = extract(
        "data_Documentation_CalculatedFunction_BloodPressure_Template.json",
        "data_Documentation_CalculatedFunction_BloodPressure_Payload.json",
    )
    .unwrap();
    assert_eq!(
        summary(&found),
        vec![expected(
            "bloodpressure",
            "2019-02-01T22:46:01.875Z",
            "device123",
            &[("systolic", json!("123")), ("diastolic", json!("87"))]
        )]
    );
    // A FHIR mapping coding the panel's components as LOINC does (8480-6 and 8462-4).
    let fhir = json!({"templateType": "CollectionFhir", "template": [{"templateType": "CodeValueFhir", "template": {
    "typeName": "bloodpressure", "periodInterval": 0,
    "codes": [{"code": "85354-9", "system": "http://loinc.org"}],
    "components": [
        {"codes": [{"code": "8480-6", "system": "http://loinc.org"}], "value": {"valueName": "systolic", "valueType": "Quantity", "unit": "mmHg"}},
        {"codes": [{"code": "8462-4", "system": "http://loinc.org"}], "value": {"valueName": "diastolic", "valueType": "Quantity", "unit": "mmHg", "code": "mm[Hg]", "system": "http://unitsofmeasure.org"}}
    ]}}]});
    let mapping = Mapping::compile(
        &input("data_Documentation_CalculatedFunction_BloodPressure_Template.json"),
        &fhir,
    )
    .unwrap();
    assert!(mapping.warnings.is_empty(), "{:?}", mapping.warnings);
    let mapped = mapping
        .apply(
            &input("data_Documentation_CalculatedFunction_BloodPressure_Payload.json"),
            &[],
            &context(),
        )
        .unwrap();
    let at = time("2019-02-01T22:46:01.875Z");
    assert_eq!(
        readings(&mapped),
        vec![
            (ObservationCode::SystolicBloodPressure, 123.0, at),
            (ObservationCode::DiastolicBloodPressure, 87.0, at)
        ]
    );
}

/// iomt-fhir's own blood-pressure mappings code the diastolic component 8867-4, which is
/// LOINC's heart rate, in mmHg. Wardline does not store 87 mmHg as a heart rate: the
/// pair is accepted with a warning, and a message is refused naming the value.
#[test]
fn a_diastolic_pressure_coded_as_heart_rate_is_refused_not_stored() {
    let mapping = Mapping::compile(
        &input("data_Documentation_CalculatedFunction_BloodPressure_Template.json"),
        &input("data_CodeValueFhirTemplate_Quantity.json"),
    )
    .unwrap();
    assert!(
        mapping.warnings.iter().any(
            |w| w.contains("bloodpressure.diastolic") && w.contains("not a unit of Heart rate")
        ),
        "{:?}",
        mapping.warnings
    );
    let error = mapping
        .apply(
            &input("data_Documentation_CalculatedFunction_BloodPressure_Payload.json"),
            &[],
            &context(),
        )
        .unwrap_err();
    assert_eq!(error.kind, PayloadErrorKind::UnitMismatch);
    assert_eq!(error.field, "bloodpressure.diastolic");
}

#[test]
fn documented_multiple_matches_read_the_message_and_each_matched_token() {
    let found = extract(
        "data_Documentation_CalculatedFunction_MultipleMatches_Template.json",
        "data_Documentation_CalculatedFunction_MultipleMatches_Payload.json",
    )
    .unwrap();
    assert_eq!(
        summary(&found),
        vec![
            expected(
                "heartrate",
                "2021-07-13T17:29:01.061144Z",
                "device123",
                &[("systolic", json!("120")), ("diastolic", json!("80"))]
            ),
            expected(
                "heartrate",
                "2021-07-13T17:28:01.061122Z",
                "device123",
                &[("systolic", json!("122")), ("diastolic", json!("82"))]
            ),
        ]
    );
    // The example names its type "heartrate" though it extracts pressures: a heart-rate
    // mapping finds no hr value in it, so nothing is stored.
    let mapping = Mapping::compile(
        &input("data_Documentation_CalculatedFunction_MultipleMatches_Template.json"),
        &input("data_CodeValueFhirTemplate_SampledData.json"),
    )
    .unwrap();
    assert!(
        mapping
            .warnings
            .iter()
            .any(|w| w.contains("heartrate.hr: the device template extracts no value"))
    );
    let mapped = mapping
        .apply(
            &input("data_Documentation_CalculatedFunction_MultipleMatches_Payload.json"),
            &[],
            &context(),
        )
        .unwrap();
    assert!(mapped.readings.is_empty());
}

#[test]
fn documented_multiple_measurements_give_one_per_template() {
    let found = extract(
        "data_Documentation_CalculatedFunction_MultipleMeasurements_Template.json",
        "data_Documentation_CalculatedFunction_MultipleMeasurements_Payload.json",
    )
    .unwrap();
    let at = "2019-02-01T22:46:01.875Z";
    assert_eq!(
        summary(&found),
        vec![
            expected("heartrate", at, "device123", &[("hr", json!("78"))]),
            expected("stepcount", at, "device123", &[("steps", json!("2"))]),
        ]
    );
    let mapping = Mapping::compile(
        &input("data_Documentation_CalculatedFunction_MultipleMeasurements_Template.json"),
        &input("data_CollectionFhirTemplateValid.json"),
    )
    .unwrap();
    let mapped = mapping
        .apply(
            &input("data_Documentation_CalculatedFunction_MultipleMeasurements_Payload.json"),
            &[],
            &context(),
        )
        .unwrap();
    assert_eq!(
        readings(&mapped),
        vec![(ObservationCode::HeartRate, 78.0, time(at))]
    );
    assert_eq!(mapped.not_kept.len(), 1);
    assert_eq!(mapped.not_kept[0].type_name, "stepcount");
    assert!(
        mapped.not_kept[0]
            .reason
            .contains("no template of this type")
    );
}

#[test]
fn documented_array_of_heart_rates_gives_three() {
    let found = extract(
        "data_Documentation_CalculatedFunction_HeartRate_Template.json",
        "data_Documentation_CalculatedFunction_MultipleMeasurements_FromArray_Payload.json",
    )
    .unwrap();
    assert_eq!(
        summary(&found),
        vec![
            expected(
                "heartrate",
                "2019-02-01T20:46:01.875Z",
                "device123",
                &[("hr", json!("78"))]
            ),
            expected(
                "heartrate",
                "2019-02-01T21:46:01.875Z",
                "device123",
                &[("hr", json!("81"))]
            ),
            expected(
                "heartrate",
                "2019-02-01T22:46:01.875Z",
                "device123",
                &[("hr", json!("72"))]
            ),
        ]
    );
}

#[test]
fn documented_transformation_converts_inches_with_jmespath() {
    let found = extract(
        "data_Documentation_CalculatedFunction_TransformData_Template.json",
        "data_Documentation_CalculatedFunction_TransformData_Payload.json",
    )
    .unwrap();
    assert_eq!(found.len(), 2);
    // Template 1 (inches): multiply(to_number("78"), 0.0254) = 1.9812 m.
    assert_eq!(found[0].type_name, "heightInMeters");
    assert_eq!(found[0].occurrence, time("2019-02-01T22:46:01.875Z"));
    let height = found[0].values[0].1.as_f64().unwrap();
    assert!((height - 1.9812).abs() < 1e-9, "{height}");
    // Template 2 (meters): as sent.
    assert_eq!(
        summary(&found[1..]),
        vec![expected(
            "heightInMeters",
            "2019-02-01T23:46:01.875Z",
            "device123",
            &[("height", json!("1.9304"))]
        )]
    );
}

// ---- IoT Hub and IoT Central messages ----

#[test]
fn iot_hub_templates_take_device_and_time_from_the_hub() {
    let found = extract(
        "data_IotJsonPathContentTemplateValid.json",
        "data_IotHubPayloadExample.json",
    )
    .unwrap();
    let expect = vec![expected(
        "heartrate",
        "2019-01-30T22:45:02.6073744Z",
        "ev-d795-1d04-55ae",
        &[("hr", json!("203"))],
    )];
    assert_eq!(summary(&found), expect);
    let with_optional = extract(
        "data_IotJsonPathContentTemplateValidWithOptional.json",
        "data_IotHubPayloadExample.json",
    )
    .unwrap();
    assert_eq!(summary(&with_optional), expect);
    assert_eq!(with_optional[0].patient_id, None);

    // Heart rate as SampledData in "bpm", and as the collection's "count/min".
    for fhir in [
        "data_CodeValueFhirTemplate_SampledData.json",
        "data_CollectionFhirTemplateValid.json",
    ] {
        let mapping = Mapping::compile(
            &input("data_IotJsonPathContentTemplateValid.json"),
            &input(fhir),
        )
        .unwrap();
        let mapped = mapping
            .apply(
                &input("data_IotHubPayloadExample.json"),
                &["ev-d795-1d04-55ae"],
                &context(),
            )
            .unwrap();
        assert_eq!(
            readings(&mapped),
            vec![(
                ObservationCode::HeartRate,
                203.0,
                time("2019-01-30T22:45:02.6073744Z")
            )],
            "{fhir}"
        );
    }
}

#[test]
fn an_iot_hub_message_without_its_creation_time_is_refused() {
    let error = extract(
        "data_IotJsonPathContentTemplateValid.json",
        "data_IotHubPayloadExampleMissingCreateTime.json",
    )
    .unwrap_err();
    assert!(error.field.ends_with("timestampExpression"), "{error:?}");
    assert!(
        error
            .reason
            .contains("$.Properties.iothub-creation-time-utc"),
        "{error:?}"
    );
}

#[test]
fn templates_for_other_shapes_say_which_expression_found_nothing() {
    // Each of these reads "device" and "date" beside the heart rate, which an IoT Hub
    // message does not have.
    for template in [
        "data_JsonPathContentTemplateValid.json",
        "data_JsonPathContentTemplateValidWithOptional.json",
        "data_CalculatedFunctionContentTemplateValid.json",
        "data_CalculatedFunctionContentTemplateValidExpressionObject.json",
        "data_CalculatedFunctionContentTemplateValidOptional.json",
        "data_CollectionContentTemplateHrAndSteps.json",
    ] {
        let error = extract(template, "data_IotHubPayloadExample.json").unwrap_err();
        assert!(
            error.field.ends_with("deviceIdExpression"),
            "{template}: {error:?}"
        );
        assert!(
            error.reason.contains("$.device found nothing"),
            "{template}: {error:?}"
        );
    }
    // The JMESPath pair matches top-level members only: nothing in an IoT Hub message.
    assert!(
        extract(
            "data_CollectionContentTemplateHrAndStepsJmesPath.json",
            "data_IotHubPayloadExample.json"
        )
        .unwrap()
        .is_empty()
    );
    // The mixed collection expects HealthKit-style or boot-style fields.
    assert!(
        extract(
            "data_CollectionContentTemplateMixed.json",
            "data_IotHubPayloadMultiValueExample.json"
        )
        .unwrap()
        .is_empty()
    );
}

#[test]
fn iot_central_exports_give_each_message_its_own_device_and_time() {
    let found = extract(
        "data_CollectionContentTemplateMultipleIotCentralJsonPath.json",
        "data_IotCentralPayloadExampleMultipleMessages.json",
    )
    .unwrap();
    let (first, third) = ("2021-06-08T19:45:20.202Z", "2021-06-08T19:44:04.941Z");
    let device = "1qsi9p8t5l2";
    assert_eq!(
        summary(&found),
        vec![
            expected("heartrate", first, device, &[("hr", json!(75))]),
            expected("heartrate", third, device, &[("hr", json!(69))]),
            expected(
                "respiratoryrate",
                first,
                device,
                &[("respiratoryrate", json!(15))]
            ),
            expected(
                "respiratoryrate",
                third,
                device,
                &[("respiratoryrate", json!(15))]
            ),
            expected(
                "bloodpressure",
                first,
                device,
                &[("systolic", json!(62)), ("diastolic", json!(30))]
            ),
            expected(
                "bloodpressure",
                third,
                device,
                &[("systolic", json!(43)), ("diastolic", json!(34))]
            ),
        ]
    );
    assert!(
        found
            .iter()
            .all(|m| m.patient_id.as_deref() == Some(device))
    );

    // iomt-fhir's sandbox mapping: heart rate and respiratory rate are stored; its blood
    // pressure codes diastolic as heart rate, so the message is refused naming it.
    let sandbox_fhir =
        parse_document(&read("sample/sandbox/fhirmapping.json"), Document::Fhir).unwrap();
    let mapping = Mapping::compile(
        &input("data_CollectionContentTemplateMultipleIotCentralJsonPath.json"),
        &sandbox_fhir,
    )
    .unwrap();
    let error = mapping
        .apply(
            &input("data_IotCentralPayloadExampleMultipleMessages.json"),
            &[],
            &context(),
        )
        .unwrap_err();
    assert_eq!(error.field, "bloodpressure.diastolic");
    let without_pressure = json!({"templateType": "CollectionContent", "template":
        input("data_CollectionContentTemplateMultipleIotCentralJsonPath.json")["template"].as_array().unwrap()[..2]});
    let mapping = Mapping::compile(&without_pressure, &sandbox_fhir).unwrap();
    let mapped = mapping
        .apply(
            &input("data_IotCentralPayloadExampleMultipleMessages.json"),
            &[device],
            &context(),
        )
        .unwrap();
    assert_eq!(
        readings(&mapped),
        vec![
            (ObservationCode::HeartRate, 75.0, time(first)),
            (ObservationCode::HeartRate, 69.0, time(third)),
            (ObservationCode::RespiratoryRate, 15.0, time(first)),
            (ObservationCode::RespiratoryRate, 15.0, time(third)),
        ]
    );
}

#[test]
fn the_sandbox_templates_refuse_a_temperature_without_a_unit() {
    let device =
        parse_document(&read("sample/sandbox/devicecontent.json"), Document::Device).unwrap();
    let fhir = parse_document(&read("sample/sandbox/fhirmapping.json"), Document::Fhir).unwrap();
    let mapping = Mapping::compile(&device, &fhir).unwrap();
    assert!(
        mapping
            .warnings
            .iter()
            .any(|w| w.contains("bodytemperature.temp: no unit for Body temperature")),
        "{:?}",
        mapping.warnings
    );
    let found = mapping
        .device
        .extract(
            &input("data_IotCentralPayloadExampleMultipleMessages.json"),
            4096,
            1000,
        )
        .unwrap();
    let types: Vec<&str> = found.iter().map(|m| m.type_name.as_str()).collect();
    assert_eq!(
        types,
        [
            "heartrate",
            "heartrate",
            "respiratoryrate",
            "respiratoryrate",
            "hrv",
            "hrv",
            "bodytemperature",
            "bodytemperature",
            "bloodpressure",
            "bloodpressure",
            "rangeofmotion",
            "kneebend"
        ]
    );
    // The knee sensor is another device in the same export.
    assert_eq!(found[10].device_id, "24bjobtcf8i");
    assert_eq!(found[11].values, vec![("kneebend".to_owned(), json!(-19))]);
    let error = mapping
        .apply(
            &input("data_IotCentralPayloadExampleMultipleMessages.json"),
            &[],
            &context(),
        )
        .unwrap_err();
    assert_eq!(error.kind, PayloadErrorKind::UnitMismatch);
    assert_eq!(error.field, "bodytemperature.temp");
}

#[test]
fn an_iot_central_template_names_the_required_value_it_did_not_find() {
    // The template reads "$.template.Activity", which IoT Central messages do not have.
    let error = extract(
        "data_IotCentralJsonPathContentTemplateValid.json",
        "data_IotCentralPayloadExample.json",
    )
    .unwrap_err();
    assert_eq!(error.field, "template (telemetry).values.activity");
    assert!(
        error.reason.contains("$.template.Activity found nothing"),
        "{error:?}"
    );
}

// ---- The device messages of the mapping generator, with templates written here ----

#[test]
fn calculated_content_with_jmespath_reads_the_device_data_samples() {
    let device = json!({"templateType": "CollectionContent", "template": [
        {"templateType": "CalculatedContent", "template": {
            "typeName": "heartRate", "defaultExpressionLanguage": "JmesPath",
            "typeMatchExpression": "[Body][?type == 'Heart Rate' || heartRate != null]",
            "deviceIdExpression": "matchedToken.device",
            "timestampExpression": "matchedToken.time",
            "patientIdExpression": "matchedToken.patient",
            "values": [{"valueName": "hr", "required": true,
                        "valueExpression": "matchedToken.values.beatsPerMinute || matchedToken.heartRate"}]}},
        {"templateType": "CalculatedContent", "template": {
            "typeName": "bloodPressure",
            "typeMatchExpression": "$..[?(@systolic && @diastolic)]",
            "deviceIdExpression": "$.Body.device",
            "timestampExpression": "$.Body.time",
            "values": [{"valueName": "systolic", "valueExpression": "$.matchedToken.systolic", "required": true},
                       {"valueName": "diastolic", "valueExpression": "$.matchedToken.diastolic", "required": true}]}},
        {"templateType": "CalculatedContent", "template": {
            "typeName": "spo2",
            "typeMatchExpression": {"value": "[Body][?type == 'Oxygen Saturation' || oxygenSaturation != null]", "language": "JmesPath"},
            "deviceIdExpression": "$.matchedToken.device",
            "timestampExpression": {"value": "matchedToken.time", "language": "JmesPath"},
            "values": [{"valueName": "spo2", "required": "true",
                        "valueExpression": {"value": "matchedToken.values.oxygenPercentage || matchedToken.oxygenSaturation", "language": "JmesPath"}}]}}
    ]});
    let fhir = json!({"templateType": "CollectionFhir", "template": [
        {"templateType": "CodeValueFhir", "template": {"typeName": "heartRate", "codes": [{"code": "8867-4", "system": "http://loinc.org"}],
            "value": {"valueName": "hr", "valueType": "Quantity", "unit": "count/min"}}},
        {"templateType": "CodeValueFhir", "template": {"typeName": "bloodPressure", "codes": [{"code": "85354-9", "system": "http://loinc.org"}],
            "components": [
                {"codes": [{"code": "8480-6", "system": "http://loinc.org"}], "value": {"valueName": "systolic", "valueType": "SampledData", "unit": "mmHg"}},
                {"codes": [{"code": "8462-4", "system": "http://loinc.org"}], "value": {"valueName": "diastolic", "valueType": "SampledData", "unit": "mmHg"}}]}},
        {"templateType": "CodeValueFhir", "template": {"typeName": "spo2",
            "codes": [{"code": "59408-5", "system": "http://loinc.org"}, {"code": "2708-6", "system": "http://loinc.org"}],
            "value": {"valueName": "spo2", "valueType": "Quantity", "unit": "%", "code": "%", "system": "http://unitsofmeasure.org"}}}
    ]});
    let mapping = Mapping::compile(&device, &fhir).unwrap();
    assert!(mapping.warnings.is_empty(), "{:?}", mapping.warnings);
    let apply = |file: &str| {
        let payload =
            parse_document(&read(&format!("device-data/{file}")), Document::Device).unwrap();
        mapping
            .apply(
                &envelope(payload, "TestDeviceId", time("2022-07-01T12:05:00Z")),
                &["TestDeviceId"],
                &context(),
            )
            .unwrap()
    };
    assert_eq!(
        readings(&apply("deviceData_HeartRate.json")),
        vec![(
            ObservationCode::HeartRate,
            66.0,
            time("2022-07-01T12:00:00Z")
        )]
    );
    assert_eq!(
        readings(&apply("deviceData_BloodPressure.json")),
        vec![
            (
                ObservationCode::SystolicBloodPressure,
                119.0,
                time("2022-07-01T12:01:00Z")
            ),
            (
                ObservationCode::DiastolicBloodPressure,
                79.0,
                time("2022-07-01T12:01:00Z")
            ),
        ]
    );
    assert_eq!(
        readings(&apply("deviceData_OxygenSaturation.json")),
        vec![(
            ObservationCode::OxygenSaturationPulseOximetry,
            99.0,
            time("2022-07-01T12:02:00Z")
        )]
    );
    let at = time("2022-07-01T12:02:00Z");
    assert_eq!(
        readings(&apply("deviceData_Projection.json")),
        vec![
            (ObservationCode::HeartRate, 66.0, at),
            (ObservationCode::SystolicBloodPressure, 119.0, at),
            (ObservationCode::DiastolicBloodPressure, 79.0, at),
            (ObservationCode::OxygenSaturationPulseOximetry, 99.0, at),
        ]
    );
    // The same message again is the same readings (same sequence numbers): a retry.
    assert_eq!(
        apply("deviceData_Projection.json"),
        apply("deviceData_Projection.json")
    );
    // A message naming another device is refused.
    let payload = parse_document(
        &read("device-data/deviceData_HeartRate.json"),
        Document::Device,
    )
    .unwrap();
    let error = mapping
        .apply(
            &envelope(payload, "TestDeviceId", time("2022-07-01T12:05:00Z")),
            &["another-device"],
            &context(),
        )
        .unwrap_err();
    assert_eq!(error.kind, PayloadErrorKind::NotForDevice);
    assert!(error.reason.contains("\"TestDeviceId\""), "{error:?}");
}

// ---- Templates refused, each naming what is wrong ----

fn refused(name: &str, document: Document) -> Vec<String> {
    let bytes = read(&format!("test-input/{name}"));
    let parsed = match parse_document(&bytes, document) {
        Ok(parsed) => parsed,
        Err(error) => return error.problems.iter().map(ToString::to_string).collect(),
    };
    let result = match document {
        Document::Device => device_template(&parsed).err(),
        Document::Fhir => fhir_template(&parsed).err(),
    };
    result
        .unwrap_or_else(|| panic!("{name} was accepted"))
        .problems
        .iter()
        .map(ToString::to_string)
        .collect()
}

fn assert_problems(name: &str, document: Document, expected: &[&str]) {
    let problems = refused(name, document);
    for fragment in expected {
        assert!(
            problems.iter().any(|p| p.contains(fragment)),
            "{name}: no problem with {fragment:?} in {problems:#?}"
        );
    }
}

#[test]
fn invalid_device_templates_are_refused_naming_the_problem() {
    use Document::Device;
    assert_problems(
        "data_InvalidJson.txt",
        Device,
        &["device_template: not JSON"],
    );
    assert_problems(
        "data_CollectionContentTemplateEmpty.json",
        Device,
        &["device_template.templateType: empty"],
    );
    assert_problems(
        "data_InvalidTemplateType.json",
        Device,
        &["device_template.templateType: \"templateType\" is not a device content template type"],
    );
    assert_problems(
        "data_InvalidCollectionContentTemplateWithNoTemplateArray.json",
        Device,
        &["device_template.template: a CollectionContent's template must be an array"],
    );
    assert_problems(
        "data_CollectionContentTemplateMultipleMocks.json",
        Device,
        &[
            "device_template.template[0].templateType: \"mockA\" is not",
            "device_template.template[1].templateType: \"mockB\" is not",
        ],
    );
    assert_problems(
        "data_JsonPathContentTemplateInvalidMissingExpression.json",
        Device,
        &[
            "device_template.template.deviceIdExpression: missing",
            "device_template.template.timestampExpression: missing",
        ],
    );
    for name in [
        "data_IotJsonPathContentTemplateInvalidMissingTypeMetadata.json",
        "data_IotCentralJsonPathContentTemplateInvalidMissingTypeMetadata.json",
    ] {
        assert_problems(
            name,
            Device,
            &[
                "device_template.template.typeName: missing",
                "device_template.template.typeMatchExpression: missing",
            ],
        );
    }
    for name in [
        "data_IotJsonPathContentTemplateInvalidMissingValueField.json",
        "data_IotCentralJsonPathContentTemplateInvalidMissingValueField.json",
    ] {
        assert_problems(
            name,
            Device,
            &["device_template.template.values[0].valueName: missing"],
        );
    }
    assert_problems(
        "data_CalculatedFunctionContentTemplateValidInvalidAndMissingMembers.json",
        Device,
        &[
            "device_template.template.typeMatchExpressionFake: unknown field",
            "device_template.template.deviceIdExpressionFake: unknown field",
            "device_template.template.typeMatchExpression: missing",
            "device_template.template.deviceIdExpression: missing",
        ],
    );
    assert_problems(
        "data_CollectionContentTemplateInvalid.json",
        Device,
        &[
            "device_template.template[0].template.deviceIdExpression: missing",
            "device_template.template[0].template.timestampExpression: missing",
            "device_template.template[1].template.typeMatchExpression: missing",
        ],
    );
    assert_problems(
        "data_CollectionContentTemplateMixedValidity.json",
        Device,
        &["device_template.template[2].template.typeMatchExpression: missing"],
    );
}

#[test]
fn invalid_fhir_templates_are_refused_naming_the_problem() {
    use Document::Fhir;
    assert_problems(
        "data_CodeValueFhirTemplateInvalid_MissingCodeField.json",
        Fhir,
        &["fhir_template.template.codes: missing"],
    );
    assert_problems(
        "data_CodeValueFhirTemplateInvalid_MissingFields.json",
        Fhir,
        &["fhir_template.template.typeName: missing"],
    );
    assert_problems(
        "data_CollectionFhirTemplateEmpty.json",
        Fhir,
        &["fhir_template.templateType: empty"],
    );
    assert_problems(
        "data_InvalidCollectionFhirTemplateWithNoTemplateArray.json",
        Fhir,
        &["fhir_template.template: a CollectionFhir's template must be an array"],
    );
    assert_problems(
        "data_CollectionFhirTemplateMultipleMocks.json",
        Fhir,
        &["fhir_template.template[0].templateType: \"mockA\" is not a FHIR mapping template type"],
    );
    assert_problems(
        "data_CollectionFhirTemplateMixed.json",
        Fhir,
        &["fhir_template.templateType: \"CollectionContent\" is not a FHIR mapping template type"],
    );
    assert_problems(
        "data_CollectionFhirTemplateMixedValidity.json",
        Fhir,
        &["fhir_template.template[1].template.typeName: missing"],
    );
    assert_problems(
        "data_CollectionFhirTemplateInvalid.json",
        Fhir,
        &[
            "fhir_template.template[0].template.typeName: missing",
            "fhir_template.template[1].template.codes[0].code: missing",
            "fhir_template.template[1].template.value.valueName: missing",
            "fhir_template.template[1].template.value.valueType: missing",
            "fhir_template.template[2].template.typeName: blank",
            "fhir_template.template[2].template.codes[0].code: missing",
        ],
    );
}

#[test]
fn valid_templates_are_accepted() {
    for name in [
        "data_CalculatedFunctionContentTemplateValid.json",
        "data_CalculatedFunctionContentTemplateValidExpressionObject.json",
        "data_CalculatedFunctionContentTemplateValidOptional.json",
        "data_CollectionContentTemplateEmptyWithType.json",
        "data_CollectionContentTemplateHrAndSteps.json",
        "data_CollectionContentTemplateHrAndStepsJmesPath.json",
        "data_CollectionContentTemplateMixed.json",
        "data_CollectionContentTemplateMultipleIotCentralJsonPath.json",
        "data_CollectionFhirTemplateMixed.json",
        "data_IotCentralJsonPathContentTemplateValid.json",
        "data_IotCentralJsonPathContentTemplateValidWithOptional.json",
        "data_IotJsonPathContentTemplateValid.json",
        "data_IotJsonPathContentTemplateValidWithOptional.json",
        "data_JsonPathContentTemplateValid.json",
        "data_JsonPathContentTemplateValidWithOptional.json",
    ] {
        device_template(&input(name)).unwrap_or_else(|error| panic!("{name}: {error}"));
    }
    for name in [
        "data_CodeValueFhirTemplate_CodeableConceptAndStringComponent.json",
        "data_CodeValueFhirTemplate_CodeableConceptData.json",
        "data_CodeValueFhirTemplate_Components.json",
        "data_CodeValueFhirTemplate_Quantity.json",
        "data_CodeValueFhirTemplate_SampledData.json",
        "data_CodeValueFhirTemplate_String.json",
        "data_CollectionFhirTemplateEmptyWithType.json",
        "data_CollectionFhirTemplateValid.json",
    ] {
        fhir_template(&input(name)).unwrap_or_else(|error| panic!("{name}: {error}"));
    }
    for sample in ["basic", "healthkitOnFhir", "sandbox"] {
        let device = parse_document(
            &read(&format!("sample/{sample}/devicecontent.json")),
            Document::Device,
        )
        .unwrap();
        let fhir = parse_document(
            &read(&format!("sample/{sample}/fhirmapping.json")),
            Document::Fhir,
        )
        .unwrap();
        Mapping::compile(&device, &fhir).unwrap_or_else(|error| panic!("{sample}: {error}"));
    }
    let legacy = parse_document(
        &read("sample/sandbox/legacy/devicecontent.json"),
        Document::Device,
    )
    .unwrap();
    device_template(&legacy).unwrap();
}

#[test]
fn codeable_concepts_and_strings_are_reported_as_not_kept() {
    let device = json!({"templateType": "JsonPathContent", "template": {
        "typeName": "alarmEvent", "typeMatchExpression": "$..[?(@alarm)]",
        "deviceIdExpression": "$.device", "timestampExpression": "$.at",
        "values": [{"valueName": "alarm", "valueExpression": "$.alarm", "required": true},
                   {"valueName": "reason", "valueExpression": "$.reason", "required": false}]}});
    let mapping = Mapping::compile(
        &device,
        &input("data_CodeValueFhirTemplate_CodeableConceptAndStringComponent.json"),
    )
    .unwrap();
    let message = envelope(
        json!({"alarm": true, "reason": "fell", "device": "d", "at": "2026-11-30T10:00:00Z"}),
        "d",
        time("2026-11-30T10:00:01Z"),
    );
    let mapped = mapping.apply(&message, &["d"], &context()).unwrap();
    assert!(mapped.readings.is_empty());
    let reasons: Vec<String> = mapped.not_kept.iter().map(ToString::to_string).collect();
    assert_eq!(
        reasons,
        [
            "alarmEvent.alarm: a CodeableConcept value; Wardline's readings are numbers",
            "alarmEvent.reason: a String value; Wardline's readings are numbers",
        ]
    );
}

#[test]
fn a_calculated_template_matching_many_times_in_a_large_message_is_refused() {
    // 2,000 matches of a message of about 70 kB: each match would read the whole message.
    let items: Vec<Value> = (0..2_000)
        .map(|i| json!({"heartRate": 60 + i % 40, "deviceId": "d", "endDate": "2026-11-30T10:00:00Z", "pad": "x".repeat(20)}))
        .collect();
    let message = json!({"Body": items, "Properties": {}, "SystemProperties": {}});
    let template = device_template(&input(
        "data_Documentation_CalculatedFunction_HeartRate_Template.json",
    ))
    .unwrap();
    let error = template.extract(&message, 70_000, 5_000).unwrap_err();
    assert_eq!(error.kind, wardline_mapping::ExtractErrorKind::TooMany);
    assert!(
        error.reason.contains("reads the whole message for each"),
        "{error:?}"
    );
    // The same message within the measurement limit is refused for that first.
    let error = template.extract(&message, 70_000, 1_000).unwrap_err();
    assert!(
        error.reason.contains("more than 1000 measurements"),
        "{error:?}"
    );
}

#[test]
fn every_file_of_the_folder_is_read_without_a_panic() {
    let folder = data_dir().join("test-input");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&folder)
        .unwrap_or_else(|error| panic!("{}: {error}; set WARDLINE_SHARED_DATA", folder.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    for sample in ["sample", "device-data"] {
        for entry in walk(&data_dir().join(sample)) {
            files.push(entry);
        }
    }
    files.sort();
    assert!(
        files.len() > 50,
        "only {} files in {}",
        files.len(),
        data_dir().display()
    );
    let documents: Vec<(PathBuf, Option<Value>)> = files
        .into_iter()
        .map(|path| {
            let parsed = parse_document(&std::fs::read(&path).unwrap(), Document::Device).ok();
            (path, parsed)
        })
        .collect();
    let templates: Vec<Mapping> = documents
        .iter()
        .filter_map(|(_, document)| document.as_ref())
        .filter(|document| document.get("templateType").is_some())
        .filter_map(|document| {
            Mapping::compile(
                document,
                &json!({"templateType": "CollectionFhir", "template": []}),
            )
            .ok()
        })
        .collect();
    assert!(
        templates.len() > 15,
        "{} valid device templates",
        templates.len()
    );
    for (path, document) in &documents {
        let Some(document) = document else { continue };
        if document.get("templateType").is_some() {
            for result in [
                device_template(document).err(),
                fhir_template(document).err(),
            ]
            .into_iter()
            .flatten()
            {
                assert!(
                    result
                        .problems
                        .iter()
                        .all(|p| !p.field.is_empty() && !p.reason.is_empty()),
                    "{}: {result:?}",
                    path.display()
                );
            }
            continue;
        }
        let message = if document.get("Body").is_some() {
            document.clone()
        } else {
            envelope(
                document.clone(),
                "device-under-test",
                time("2022-07-01T12:05:00Z"),
            )
        };
        for mapping in &templates {
            // Refused or mapped, never a panic.
            let _ = mapping.apply(&message, &[], &context());
        }
    }
}

fn walk(folder: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(folder).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(walk(&path));
        } else if path.extension().is_some_and(|ext| ext == "json") {
            found.push(path);
        }
    }
    found
}
