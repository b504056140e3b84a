//! The document's rules for text agree with the code that enforces them: a string the
//! schema admits is one the server accepts, and (where the schema is exact) the other
//! way round. The patterns are read from the generated document itself.

use std::sync::LazyLock;

use proptest::prelude::*;
use serde_json::Value;
use wardline_domain::DeviceId;
use wardline_service::alarms::{check_address, check_webhook_url, parse_states};
use wardline_service::people::check_username;

fn document() -> &'static Value {
    static DOCUMENT: LazyLock<Value> =
        LazyLock::new(|| serde_json::to_value(crate::openapi()).expect("the document serialises"));
    &DOCUMENT
}

fn component(name: &str) -> &'static Value {
    &document()["components"]["schemas"][name]
}

fn parameter(path: &str, method: &str, name: &str) -> &'static Value {
    document()["paths"][path][method]["parameters"]
        .as_array()
        .expect("parameters")
        .iter()
        .find(|parameter| parameter["name"] == name)
        .map(|parameter| &parameter["schema"])
        .unwrap_or_else(|| panic!("{method} {path} has no parameter {name}"))
}

/// A string schema's own keywords (`pattern`, `minLength`, `maxLength`, `enum`), as a
/// JSON Schema validator reads them: lengths in characters, the pattern found anywhere.
struct Text {
    pattern: Option<regex::Regex>,
    min: Option<usize>,
    max: Option<usize>,
}

impl Text {
    fn of(schema: &Value) -> Self {
        let pattern = schema["pattern"].as_str().map(|pattern| {
            regex::RegexBuilder::new(pattern)
                .size_limit(1 << 26)
                .build()
                .unwrap_or_else(|error| panic!("{pattern}: {error}"))
        });
        let length = |key: &str| {
            schema[key]
                .as_u64()
                .map(|n| usize::try_from(n).expect("length"))
        };
        Text {
            pattern,
            min: length("minLength"),
            max: length("maxLength"),
        }
    }

    fn admits(&self, text: &str) -> bool {
        let length = text.chars().count();
        self.pattern.as_ref().is_none_or(|p| p.is_match(text))
            && self.min.is_none_or(|min| length >= min)
            && self.max.is_none_or(|max| length <= max)
    }
}

/// Text with plenty of what the rules are about: white space (Rust's, and characters
/// other languages take for white space), controls, commas, `@` and non-ASCII.
fn tricky_text(max_len: usize) -> impl Strategy<Value = String> {
    let char = prop_oneof![
        4 => proptest::char::range('a', 'z'),
        2 => Just(' '),
        1 => proptest::sample::select(vec![
            '\t', '\n', '\u{b}', '\u{c}', '\r', '\u{1c}', '\u{85}', '\u{a0}', '\u{1680}',
            '\u{2000}', '\u{200a}', '\u{200b}', '\u{2028}', '\u{202f}', '\u{205f}', '\u{3000}',
            '\u{feff}', '\0', '\u{7f}', '\u{9f}', ',', '@', ':', '.', '-', '_', '+', '/', 'é',
            '\u{1f600}',
        ]),
        1 => any::<char>(),
    ];
    proptest::collection::vec(char, 0..=max_len).prop_map(|chars| chars.into_iter().collect())
}

/// `core` padded with white space on either side, for the trimmed-length rules.
fn padded(core_len: std::ops::RangeInclusive<usize>) -> impl Strategy<Value = String> {
    let space = || {
        proptest::collection::vec(
            proptest::sample::select(vec![' ', '\t', '\u{3000}', '\u{2007}', '\u{85}']),
            0..3,
        )
    };
    (
        space(),
        proptest::collection::vec(
            prop_oneof![4 => Just('x'), 1 => Just(' '), 1 => any::<char>()],
            core_len,
        ),
        space(),
    )
        .prop_map(|(before, core, after)| before.into_iter().chain(core).chain(after).collect())
}

/// The rule of `bounded` after `trim` (care team names, patient names, reasons, notes).
fn trimmed_within(text: &str, max: usize) -> bool {
    wardline_service::bounded("x", text.trim(), max).is_ok()
}

#[test]
fn the_bins_are_the_divisors_of_a_day() {
    let bins: Vec<u32> = (1..=60u32).filter(|m| 1440 % m == 0).collect();
    assert_eq!(
        bins,
        [
            1, 2, 3, 4, 5, 6, 8, 9, 10, 12, 15, 16, 18, 20, 24, 30, 32, 36, 40, 45, 48, 60
        ]
    );
}

#[test]
fn the_white_space_classes_are_rusts() {
    let whitespace: Vec<char> = (0..=0x10_FFFFu32)
        .filter_map(char::from_u32)
        .filter(|c| c.is_whitespace())
        .collect();
    let class = regex::Regex::new(&format!(
        "^[{}]$",
        wardline_domain::text_schema::WHITE_SPACE
    ))
    .expect("class");
    let named: Vec<char> = (0..=0x10_FFFFu32)
        .filter_map(char::from_u32)
        .filter(|c| class.is_match(&c.to_string()))
        .collect();
    assert_eq!(named, whitespace);
    let spaced: Vec<char> = (0..=0x10_FFFFu32)
        .filter_map(char::from_u32)
        .filter(|c| c.is_whitespace() || c.is_control())
        .collect();
    let class = regex::Regex::new(&format!(
        "^[{}]$",
        wardline_domain::text_schema::SPACE_OR_CONTROL
    ))
    .expect("class");
    let named: Vec<char> = (0..=0x10_FFFFu32)
        .filter_map(char::from_u32)
        .filter(|c| class.is_match(&c.to_string()))
        .collect();
    assert_eq!(named, spaced);
}

#[test]
fn every_loinc_code_of_the_document_is_one_the_server_reads() {
    let codes = component("LoincCode")["enum"].as_array().expect("enum");
    assert_eq!(codes.len(), wardline_domain::codes::CATALOGUE.len());
    for code in codes {
        let code = code.as_str().expect("text");
        assert!(crate::routes::clinical::parse_code(code).is_ok(), "{code}");
    }
}

// proptest's default number of cases (256), which PROPTEST_CASES raises for a longer run.
proptest! {

    #[test]
    fn utc_offsets(text in prop_oneof![
        "[ +\\-]{0,2}[0-9+\\-]{0,4}:?[0-9+\\-]{0,4}:?[0-9]?",
        "[ +\\-][+\\-]?0?[0-9]{1,2}:[+\\-]?0?[0-9]{1,2}",
    ]) {
        let schema = Text::of(parameter("/api/v1/patients/{patient_id}/reports/cgm", "get", "utc_offset"));
        let accepted = crate::routes::analytics::parse_offset(Some(&text)).is_ok();
        prop_assert_eq!(schema.admits(&text), accepted, "{:?}", text);
    }

    #[test]
    fn alarm_state_filters(parts in proptest::collection::vec(
        prop_oneof![
            Just("open"), Just("acknowledged"), Just("snoozed"), Just("resolved"),
            Just("unresolved"), Just("all"), Just(""), Just("Open"), Just(" open"),
        ],
        1..4,
    )) {
        let text = parts.join(",");
        for (path, name) in [("/api/v1/alarms", "state"), ("/api/v1/patients/{patient_id}/alarms", "state")] {
            let schema = Text::of(parameter(path, "get", name));
            prop_assert_eq!(schema.admits(&text), parse_states(Some(&text)).is_ok(), "{:?}", text);
        }
    }

    #[test]
    fn device_ids(text in prop_oneof![tricky_text(70), "[A-Za-z0-9_\\-]{0,70}"]) {
        let schema = Text::of(component("DeviceId"));
        prop_assert_eq!(schema.admits(&text), DeviceId::parse(&text).is_ok(), "{:?}", text);
    }

    #[test]
    fn usernames(text in prop_oneof![tricky_text(70), "[A-Za-z0-9._@\\-]{0,70}"]) {
        let schema = Text::of(&component("CreateUserRequest")["oneOf"][0]["properties"]["username"]);
        prop_assert_eq!(schema.admits(&text), check_username(&text).is_ok(), "{:?}", text);
    }

    #[test]
    fn names_of_people_and_devices(text in prop_oneof![tricky_text(8), padded(95..=105), padded(195..=205)]) {
        for (schema, max) in [
            (&component("CreateUserRequest")["oneOf"][1]["properties"]["display_name"], 200),
            (&component("EnrolRequest")["properties"]["model"], 100),
            (&component("EnrolRequest")["properties"]["serial"], 100),
        ] {
            let accepted = wardline_service::bounded("x", &text, max).is_ok();
            prop_assert_eq!(Text::of(schema).admits(&text), accepted, "{:?}", text);
        }
    }

    /// The reason for emergency access: 10 to 500 characters once trimmed, counted as
    /// sent; the schema admits what the service takes.
    #[test]
    fn emergency_access_reasons(text in prop_oneof![tricky_text(12), padded(5..=15), padded(495..=505)]) {
        let schema = Text::of(&component("EmergencyAccessRequest")["properties"]["reason"]);
        let trimmed = text.trim().chars().count();
        let accepted = trimmed >= 10 && wardline_service::bounded("reason", &text, 500).is_ok();
        prop_assert_eq!(schema.admits(&text), accepted, "{:?}", text);
    }

    #[test]
    fn trimmed_texts(text in prop_oneof![tricky_text(8), padded(195..=205), padded(995..=1005), padded(1995..=2005)]) {
        static SCHEMAS: LazyLock<Vec<(Text, usize)>> = LazyLock::new(|| {
            vec![
                (Text::of(&component("CreateCareTeamRequest")["properties"]["name"]), 200),
                (Text::of(&component("CreatePatientRequest")["properties"]["display_name"]), 200),
                (Text::of(&component("CarePlanRequest")["properties"]["reason"]), 1000),
                (Text::of(&component("ResolveRequest")["properties"]["note"]), 2000),
                (Text::of(&component("EmergencyAccessReviewRequest")["properties"]["note"]), 1000),
            ]
        });
        for (schema, max) in SCHEMAS.iter() {
            prop_assert_eq!(schema.admits(&text), trimmed_within(&text, *max), "{:?}", text);
        }
    }

    #[test]
    fn email_addresses(text in prop_oneof![tricky_text(30), "[a-z@,. ]{0,12}"]) {
        let schema = Text::of(&component("ChannelRequest")["oneOf"][1]["properties"]["recipients"]["items"]);
        prop_assert_eq!(schema.admits(&text), check_address(&text).is_ok(), "{:?}", text);
    }

    /// The pattern is the portable part of what the server takes (it also takes IP
    /// addresses and international host names): whatever it admits is accepted by a
    /// server that allows webhooks to this machine (one that does not refuses those with
    /// `not_permitted`, for the configuration's reason, not the URL's form).
    #[test]
    fn webhook_urls(text in prop_oneof![
        "https?://([a-z:]{0,4}@)?[a-zA-Z0-9.\\-\\[\\]:]{0,12}(:[0-9]{0,6})?([/?#][a-z/]{0,4})?",
        "http://(localhost|127\\.0\\.0\\.1|\\[::1\\]|\\[::1)(:[0-9]{0,5})?(/[a-z]{0,3})?",
        tricky_text(20).prop_map(|tail| format!("https://a{tail}")),
    ]) {
        let schema = Text::of(&component("ChannelRequest")["oneOf"][0]["properties"]["url"]);
        if schema.admits(&text) {
            prop_assert!(check_webhook_url(&text, true).is_ok(), "{:?}", text);
        }
    }

    /// Every cursor the pattern admits is read, and every cursor a page of today's
    /// readings (or any in ten thousand years either side of 1970) ends with matches it.
    #[test]
    fn observation_cursors(
        text in "[+\\-]?[0-9]{0,20}\\.?[+\\-]?[0-9]{0,20}",
        effective_ms in -315_569_520_000_000i64..315_569_520_000_000,
        key in 0i64..i64::MAX / 1000,
    ) {
        let schema = Text::of(parameter("/api/v1/patients/{patient_id}/observations", "get", "cursor"));
        if schema.admits(&text) {
            prop_assert!(wardline_store::PageCursor::decode(&text).is_some(), "{:?}", text);
        }
        let issued = wardline_store::PageCursor { effective_ms, key }.encode();
        prop_assert!(schema.admits(&issued), "{:?}", issued);
    }
}
