//! Reading what devices write: the HL7 R4 examples in `WARDLINE_SHARED_DATA/fhir`, each
//! given a time within the last hour (they were measured in 1999–2016, and a reading is
//! stored for the patient its device is assigned to when it was measured), and the
//! Bundles a Personal Health Device gateway posts.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};
use wardline_domain::{ObservationCode, Signal};
use wardline_fhir::{BundleKind, EntryRequest, IssueType, Target, read_bundle, read_observation};

fn data_dir() -> PathBuf {
    std::env::var_os("WARDLINE_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"))
        .join("fhir")
}

fn example(name: &str) -> Value {
    let path = data_dir().join(name);
    let text = std::fs::read(&path).unwrap_or_else(|error| {
        panic!(
            "{} is missing or unreadable ({error}); set WARDLINE_SHARED_DATA to the folder holding fhir/",
            path.display()
        )
    });
    serde_json::from_slice(&text).unwrap()
}

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-12-06T10:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

const MEASURED: &str = "2026-12-06T09:30:00+01:00";

/// The example as a device would send it now: its time set to `MEASURED`.
fn measured_now(name: &str) -> Value {
    let mut resource = example(name);
    let members = resource.as_object_mut().unwrap();
    members.remove("effectiveDateTime");
    members.remove("effectivePeriod");
    members.insert("effectiveDateTime".into(), json!(MEASURED));
    resource
}

fn read(resource: &Value) -> wardline_fhir::InboundObservation {
    read_observation(resource, now(), Duration::minutes(5)).unwrap()
}

fn refusal(resource: &Value) -> wardline_fhir::InboundError {
    read_observation(resource, now(), Duration::minutes(5)).unwrap_err()
}

/// An example's file, its code, the value stored, and the value and unit as sent when
/// they were converted.
type Expected = (
    &'static str,
    ObservationCode,
    f64,
    Option<(f64, &'static str)>,
);

#[test]
fn every_example_that_is_a_measurement_gives_its_reading() {
    let at = DateTime::parse_from_rfc3339(MEASURED)
        .unwrap()
        .with_timezone(&Utc);
    // (file, code, stored value, original value and unit when converted)
    let cases: &[Expected] = &[
        (
            "observation-example-heart-rate.json",
            ObservationCode::HeartRate,
            44.0,
            None,
        ),
        // 59408-5 beside 2708-6: measured by pulse oximetry.
        (
            "observation-example-satO2.json",
            ObservationCode::OxygenSaturationPulseOximetry,
            95.0,
            None,
        ),
        (
            "observation-example-body-temperature.json",
            ObservationCode::BodyTemperature,
            36.5,
            None,
        ),
        (
            "observation-example-respiratory-rate.json",
            ObservationCode::RespiratoryRate,
            26.0,
            None,
        ),
        (
            "observation-example-mbp.json",
            ObservationCode::MeanBloodPressure,
            80.0,
            None,
        ),
        (
            "observation-example-bmi.json",
            ObservationCode::BodyMassIndex,
            16.2,
            None,
        ),
        (
            "observation-example-body-height.json",
            ObservationCode::BodyHeight,
            66.899_999_999_999_99 * 2.54,
            Some((66.899_999_999_999_99, "[in_i]")),
        ),
        (
            "observation-example.json",
            ObservationCode::BodyWeight,
            185.0 * 0.453_592_37,
            Some((185.0, "[lb_av]")),
        ),
        (
            "observation-example-f001-glucose.json",
            ObservationCode::GlucoseBlood,
            6.3 * 18.0156,
            Some((6.3, "mmol/L")),
        ),
    ];
    for (file, code, value, original) in cases {
        let observation = read(&measured_now(file));
        assert_eq!(observation.readings.len(), 1, "{file}");
        let reading = &observation.readings[0];
        assert_eq!(reading.code, *code, "{file}");
        assert!(
            (reading.value - value).abs() < 1e-9,
            "{file}: {}",
            reading.value
        );
        assert_eq!(
            reading.original,
            original.map(|(value, unit)| (value, unit.to_owned())),
            "{file}"
        );
        assert_eq!(reading.effective, at, "{file}");
        assert_eq!(
            reading.seq,
            code.seq_at(at),
            "{file}: the same measurement is the same reading"
        );
        let patient = if file.contains("f001") {
            "f001"
        } else {
            "example"
        };
        assert_eq!(observation.subject, Target::Named(patient.into()), "{file}");
    }
    // The satO2 example names the DeviceMetric channel of the device that sent it.
    assert_eq!(
        read(&measured_now("observation-example-satO2.json")).device,
        Target::Unnamed
    );
}

#[test]
fn pulse_oximetry_is_kept_apart_from_arterial_saturation() {
    let mut resource = measured_now("observation-example-satO2.json");
    resource["code"]["coding"] = json!([{"system": "http://loinc.org", "code": "2708-6"}]);
    assert_eq!(
        read(&resource).readings[0].code,
        ObservationCode::OxygenSaturation
    );
}

#[test]
fn a_blood_pressure_panel_gives_its_systolic_and_diastolic() {
    let observation = read(&measured_now("observation-example-bloodpressure.json"));
    let values: Vec<(ObservationCode, f64)> = observation
        .readings
        .iter()
        .map(|reading| (reading.code, reading.value))
        .collect();
    assert_eq!(
        values,
        [
            (ObservationCode::SystolicBloodPressure, 107.0),
            (ObservationCode::DiastolicBloodPressure, 60.0)
        ]
    );
    // The diastolic the device did not send is absent, not zero.
    let observation = read(&measured_now("observation-example-bloodpressure-dar.json"));
    assert_eq!(observation.readings.len(), 1);
    assert_eq!(
        observation.readings[0].code,
        ObservationCode::SystolicBloodPressure
    );
}

#[test]
fn what_is_not_a_measurement_is_refused_with_the_element_named() {
    let cancelled = refusal(&measured_now(
        "observation-example-bloodpressure-cancel.json",
    ));
    assert_eq!(cancelled.expression, "Observation.status");
    assert!(cancelled.message.contains("cancelled"), "{cancelled}");

    let panel = refusal(&measured_now("observation-example-vitals-panel.json"));
    assert_eq!(panel.expression, "Observation.hasMember");
    assert!(panel.message.contains("members"), "{panel}");

    // The examples as published: a day is not a measurement's time, and 1999 is before
    // any device Wardline serves was set.
    let day = refusal(&example("observation-example-heart-rate.json"));
    assert_eq!(day.expression, "Observation.effectiveDateTime");
    assert!(day.message.contains("to the second"), "{day}");
    let mut old = example("observation-example-satO2.json");
    old["effectiveDateTime"] = json!("1999-12-31T23:59:59Z");
    assert!(refusal(&old).message.contains("before 2000"));
    let mut future = example("observation-example-satO2.json");
    future["effectiveDateTime"] = json!("2026-12-06T10:06:00Z");
    assert!(
        refusal(&future)
            .message
            .contains("ahead of the server clock")
    );
}

#[test]
fn the_ecg_example_gives_each_lead_its_samples_origin_and_factor_as_sent() {
    let resource = measured_now("observation-example-sample-data.json");
    let observation = read(&resource);
    assert!(observation.readings.is_empty());
    let start = DateTime::parse_from_rfc3339(MEASURED)
        .unwrap()
        .with_timezone(&Utc);
    let leads: Vec<_> = observation
        .waveforms
        .iter()
        .map(|lead| lead.signal)
        .collect();
    assert_eq!(
        leads,
        [Signal::EcgLeadI, Signal::EcgLeadIi, Signal::EcgLeadIii]
    );
    for (index, lead) in observation.waveforms.iter().enumerate() {
        let sampled = &resource["component"][index]["valueSampledData"];
        let sent: Vec<i32> = sampled["data"]
            .as_str()
            .unwrap()
            .split_whitespace()
            .map(|step| step.parse().unwrap())
            .collect();
        assert_eq!(lead.samples, sent);
        assert_eq!(lead.samples.len(), 116);
        // The origin says no unit: mV, so nothing is converted.
        assert_eq!(lead.factor, 1.612);
        assert_eq!(lead.origin, 2048.0);
        assert_eq!(lead.sampling_rate_hz, 100.0);
        assert_eq!(lead.start, start);
        assert_eq!(lead.end(), start + Duration::milliseconds(1160));
        // The same ECG sent again is the same chunks; leads never share a number.
        assert_eq!(lead.seq, lead.signal.seq_at(start));
    }
    assert_ne!(observation.waveforms[0].seq, observation.waveforms[1].seq);

    // In µV the origin and factor become mV; the samples stay as sent.
    let mut microvolts = resource.clone();
    microvolts["component"][0]["valueSampledData"]["origin"] =
        json!({"value": 2048, "system": "http://unitsofmeasure.org", "code": "uV"});
    let lead = &read(&microvolts).waveforms[0];
    assert!((lead.origin - 2.048).abs() < 1e-12);
    assert!((lead.factor - 0.001612).abs() < 1e-12);
    assert_eq!(lead.samples[..3], [2041, 2043, 2037]);

    // One lead as the Observation's own value, coded as the lead.
    let mut single = resource.clone();
    let members = single.as_object_mut().unwrap();
    let first = members["component"][0].clone();
    members.remove("component");
    members.insert("code".into(), first["code"].clone());
    members.insert("valueSampledData".into(), first["valueSampledData"].clone());
    assert_eq!(read(&single).waveforms.len(), 1);
}

#[test]
fn an_ecg_that_cannot_be_stored_as_sent_is_refused_with_the_element_named() {
    let ecg = measured_now("observation-example-sample-data.json");
    let lead = "Observation.component[1].valueSampledData";
    let cases: [(&str, Value, &str, &str); 9] = [
        ("data", json!("2041 E 2037"), ".data", "\"E\""),
        ("data", json!("2041 2043.5"), ".data", "whole number"),
        ("data", json!("2041 99999999999"), ".data", "whole number"),
        ("data", json!("  "), ".data", "nothing to store"),
        ("dimensions", json!(2), ".dimensions", "one lead"),
        ("period", json!(0), ".period", "1 to 10000 Hz"),
        ("factor", json!(0), ".factor", "origin"),
        (
            "origin",
            json!({"value": 0, "code": "mm[Hg]"}),
            ".origin.code",
            "mV",
        ),
        ("origin", json!({"code": "mV"}), ".origin.value", "missing"),
    ];
    for (field, value, expression, says) in cases {
        let mut bad = ecg.clone();
        bad["component"][1]["valueSampledData"][field] = value;
        let error = refusal(&bad);
        assert_eq!(
            error.expression,
            format!("{lead}{expression}"),
            "{field}: {error}"
        );
        assert!(error.message.contains(says), "{field}: {error}");
    }

    let mut unknown_lead = ecg.clone();
    unknown_lead["component"][2]["code"]["coding"][0]["code"] = json!("131400");
    let error = refusal(&unknown_lead);
    assert_eq!(error.expression, "Observation.component[2].code.coding");
    assert!(
        error.message.contains("131329 (MDC_ECG_ELEC_POTL_I)"),
        "{error}"
    );

    let mut twice = ecg.clone();
    twice["component"][2]["code"] = ecg["component"][0]["code"].clone();
    assert_eq!(refusal(&twice).expression, "Observation.component[2].code");

    let mut mixed = ecg.clone();
    mixed["component"][1] = json!({"code": {"text": "note"}, "valueString": "x"});
    let error = refusal(&mixed);
    assert_eq!(error.expression, "Observation.component[1]");
    assert_eq!(error.issue, IssueType::NotSupported);

    // Too many samples for one lead, and a recording that would end in the future.
    let mut long = ecg.clone();
    long["component"][0]["valueSampledData"]["data"] =
        json!(vec!["1"; wardline_fhir::MAX_SAMPLES_PER_LEAD + 1].join(" "));
    assert!(refusal(&long).message.contains("more than"));
    let mut future = ecg.clone();
    future["effectiveDateTime"] = json!("2026-12-06T10:04:59Z");
    let error = refusal(&future);
    assert_eq!(
        error.expression,
        "Observation.component[0].valueSampledData.data"
    );
    assert!(error.message.contains("future"), "{error}");
}

#[test]
fn bad_values_and_units_are_refused_with_the_element_named() {
    let base = measured_now("observation-example-heart-rate.json");
    let cases: Vec<(Value, &str, &str)> = vec![
        (
            json!({"value": 44, "code": "mm[Hg]", "system": "http://unitsofmeasure.org"}),
            "Observation.valueQuantity.code",
            "does not fit",
        ),
        (
            json!({"value": 44, "unit": "beats"}),
            "Observation.valueQuantity.unit",
            "does not fit",
        ),
        (
            json!({"value": 4000, "code": "/min"}),
            "Observation.valueQuantity.value",
            "possible range",
        ),
        (
            json!({"value": "44", "code": "/min"}),
            "Observation.valueQuantity.value",
            "expected a number",
        ),
        (
            json!({"code": "/min"}),
            "Observation.valueQuantity.value",
            "missing",
        ),
        (
            json!({"value": 44}),
            "Observation.valueQuantity.code",
            "UCUM",
        ),
        (
            json!({"value": 44, "code": "/min", "comparator": ">"}),
            "Observation.valueQuantity.comparator",
            "exact value",
        ),
        (
            json!({"value": 44, "code": "/min", "system": "http://example.org"}),
            "Observation.valueQuantity.system",
            "UCUM",
        ),
        (json!([44]), "Observation.valueQuantity", "Quantity"),
    ];
    for (quantity, expression, words) in cases {
        let mut resource = base.clone();
        resource["valueQuantity"] = quantity.clone();
        let error = refusal(&resource);
        assert_eq!(error.expression, expression, "{quantity}: {error}");
        assert!(error.message.contains(words), "{quantity}: {error}");
    }
    let mut unknown = base.clone();
    unknown["code"] = json!({"coding": [{"system": "http://loinc.org", "code": "1234-5"}]});
    let error = refusal(&unknown);
    assert_eq!(error.expression, "Observation.code.coding");
    assert!(error.message.contains("http://loinc.org|1234-5"), "{error}");
    let mut subject = base.clone();
    subject["subject"] = json!({"reference": "Group/ward"});
    assert_eq!(
        refusal(&subject).expression,
        "Observation.subject.reference"
    );
    let mut device = base;
    device["device"] = json!({"reference": "Practitioner/1"});
    assert_eq!(refusal(&device).expression, "Observation.device.reference");
    assert_eq!(
        read_observation(
            &json!({"resourceType": "Patient"}),
            now(),
            Duration::minutes(5)
        )
        .unwrap_err()
        .expression,
        "resourceType"
    );
}

/// A PHD gateway's upload: its device by EUI-64 (conditional create), the patient, and
/// two observations that refer to both by `fullUrl`.
fn phd_bundle() -> Value {
    json!({
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"fullUrl": "urn:uuid:0b6f8d1e-0000-4000-8000-000000000001",
             "resource": {"resourceType": "Device",
                          "identifier": [{"system": "urn:oid:1.2.840.10004.1.1.1.0.0.1.0.0.1.2680",
                                          "value": "FE-ED-AB-EE-DE-AD-BE-EF"}],
                          "serialNumber": "SN-0042"},
             "request": {"method": "POST", "url": "Device",
                         "ifNoneExist": "identifier=urn:oid:1.2.840.10004.1.1.1.0.0.1.0.0.1.2680%7CFE-ED-AB-EE-DE-AD-BE-EF"}},
            {"fullUrl": "urn:uuid:0b6f8d1e-0000-4000-8000-000000000002",
             "resource": {"resourceType": "Patient",
                          "identifier": [{"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]},
                                          "value": "MRN-7"}]},
             "request": {"method": "POST", "url": "Patient", "ifNoneExist": "identifier=MRN-7"}},
            {"resource": {"resourceType": "Observation", "status": "final",
                          "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                          "subject": {"reference": "urn:uuid:0b6f8d1e-0000-4000-8000-000000000002"},
                          "device": {"reference": "urn:uuid:0b6f8d1e-0000-4000-8000-000000000001"},
                          "effectiveDateTime": "2026-12-06T09:59:00Z",
                          "valueQuantity": {"value": 72, "system": "http://unitsofmeasure.org", "code": "/min"}},
             "request": {"method": "POST", "url": "Observation"}},
            {"resource": {"resourceType": "Observation", "status": "final",
                          "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                          "device": {"reference": "Device?identifier=urn:oid:1.2.840.10004.1.1.1.0.0.1.0.0.1.2680|FE-ED-AB-EE-DE-AD-BE-EF"},
                          "effectiveDateTime": "2026-12-06T09:59:30Z",
                          "valueQuantity": {"value": 74, "code": "/min"}},
             "request": {"method": "POST", "url": "Observation"}}
        ]
    })
}

#[test]
fn a_phd_transaction_names_its_device_patient_and_readings() {
    let (kind, entries) = read_bundle(&phd_bundle(), now(), Duration::minutes(5)).unwrap();
    assert_eq!(kind, BundleKind::Transaction);
    let entries: Vec<_> = entries.into_iter().map(Result::unwrap).collect();
    match &entries[0].request {
        EntryRequest::Device(names) => {
            assert!(
                names.ids.contains(&"FE-ED-AB-EE-DE-AD-BE-EF".to_owned()),
                "{names:?}"
            );
            assert_eq!(names.serials, ["SN-0042"]);
        }
        other => panic!("{other:?}"),
    }
    match &entries[1].request {
        EntryRequest::Patient(names) => assert_eq!(names.mrns, ["MRN-7"]),
        other => panic!("{other:?}"),
    }
    let EntryRequest::Observation(first) = &entries[2].request else {
        panic!("{:?}", entries[2]);
    };
    assert_eq!(
        first.device,
        Target::Entry("urn:uuid:0b6f8d1e-0000-4000-8000-000000000001".into())
    );
    assert_eq!(
        first.subject,
        Target::Entry("urn:uuid:0b6f8d1e-0000-4000-8000-000000000002".into())
    );
    assert_eq!(first.path, "Bundle.entry[2].resource");
    let EntryRequest::Observation(second) = &entries[3].request else {
        panic!("{:?}", entries[3]);
    };
    assert!(
        matches!(&second.device, Target::Named(names) if names.ids == ["FE-ED-AB-EE-DE-AD-BE-EF"])
    );
    assert_eq!(second.readings[0].value, 74.0);
}

#[test]
fn a_bundle_that_cannot_be_taken_is_refused_and_a_bad_entry_is_named() {
    let now = now();
    let skew = Duration::minutes(5);
    let mut searchset = phd_bundle();
    searchset["type"] = json!("searchset");
    assert_eq!(
        read_bundle(&searchset, now, skew).unwrap_err().expression,
        "Bundle.type"
    );
    let mut too_many = phd_bundle();
    too_many["entry"] = Value::Array(vec![json!({}); wardline_fhir::MAX_BUNDLE_ENTRIES + 1]);
    assert!(
        read_bundle(&too_many, now, skew)
            .unwrap_err()
            .message
            .contains("at most")
    );

    let mut bad = phd_bundle();
    bad["entry"][3]["resource"]["valueQuantity"]["code"] = json!("Cel");
    bad["entry"][1]["request"] = json!({"method": "DELETE", "url": "Patient/1"});
    let (_, entries) = read_bundle(&bad, now, skew).unwrap();
    let errors: Vec<String> = entries
        .iter()
        .filter_map(|entry| entry.as_ref().err().map(|error| error.expression.clone()))
        .collect();
    assert_eq!(
        errors,
        [
            "Bundle.entry[1].request",
            "Bundle.entry[3].resource.valueQuantity.code"
        ]
    );
    let mut put = phd_bundle();
    put["entry"][2]["request"] = json!({"method": "PUT", "url": "Observation/abc"});
    let (_, entries) = read_bundle(&put, now, skew).unwrap();
    assert!(
        entries[2]
            .as_ref()
            .unwrap_err()
            .message
            .contains("never replaced")
    );
}
