//! Schemas for the rules on text that every crate's API types share (only with the
//! `openapi` feature): white space is what Rust's `str::trim` and `char::is_whitespace`
//! take for it, lengths are in characters, as JSON Schema counts them.

use utoipa::openapi::schema::{Object, ObjectBuilder, Type};

/// The characters `str::trim` and `char::is_whitespace` take for white space (Unicode's
/// `White_Space`), as the inside of a regular expression's character class.
pub const WHITE_SPACE: &str =
    r"\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000";

/// White space and control characters (`char::is_whitespace` or `char::is_control`), as
/// the inside of a character class.
pub const SPACE_OR_CONTROL: &str =
    r"\u0000-\u0020\u007f-\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000";

/// What a person's text may not hold once trimmed (`wardline_service::clean_text`):
/// control characters (`char::is_control`) and the bidirectional overrides and isolates,
/// as the inside of a character class.
pub const FORBIDDEN_IN_TEXT: &str = r"\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069";

/// A regular expression for text of 1 to `max` characters once trimmed of white space,
/// with no control or text-direction character inside.
pub fn trimmed_pattern(max: usize) -> String {
    let word = format!("[^{WHITE_SPACE}{FORBIDDEN_IN_TEXT}]");
    format!(
        "^[{WHITE_SPACE}]*{word}([^{FORBIDDEN_IN_TEXT}]{{0,{}}}{word})?[{WHITE_SPACE}]*$",
        max.saturating_sub(2)
    )
}

/// As [`trimmed_pattern`], for text of `min` (at least 2) to `max` characters.
pub fn trimmed_pattern_between(min: usize, max: usize) -> String {
    let word = format!("[^{WHITE_SPACE}{FORBIDDEN_IN_TEXT}]");
    format!(
        "^[{WHITE_SPACE}]*{word}[^{FORBIDDEN_IN_TEXT}]{{{},{}}}{word}[{WHITE_SPACE}]*$",
        min.max(2) - 2,
        max.max(2) - 2
    )
}

/// Text that is trimmed of white space first, then wants `MIN` (at least 2) to `MAX`
/// characters, none of them a control or text-direction character.
pub fn trimmed_text_between<const MIN: usize, const MAX: usize>() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(trimmed_pattern_between(MIN, MAX)))
        .description(Some(format!(
            "{MIN} to {MAX} characters once leading and trailing white space is trimmed; no \
             control characters (line breaks, NUL) or text-direction overrides inside. \
             Stored in Unicode normal form C."
        )))
        .build()
}

/// Text that is trimmed of white space first, then wants 1 to `MAX` characters, none of
/// them a control or text-direction character.
pub fn trimmed_text<const MAX: usize>() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(trimmed_pattern(MAX)))
        .description(Some(format!(
            "1 to {MAX} characters once leading and trailing white space is trimmed; no \
             control characters (line breaks, NUL) or text-direction overrides inside. \
             Stored in Unicode normal form C."
        )))
        .build()
}
