//! Schemas the derive macros cannot state from a field's type alone: the rules the
//! service checks on text (white space is what Rust's `str::trim` removes), the values a
//! query parameter takes from a table in the code, and the range of every fixed-width
//! integer. Each says exactly what the server accepts, so that a client (or a test
//! generating requests from the document) can tell a valid request without sending it.

use utoipa::openapi::schema::{
    AdditionalProperties, ArrayBuilder, ArrayItems, KnownFormat, Object, ObjectBuilder,
    OneOfBuilder, Schema, SchemaFormat, SchemaType, Type,
};
use utoipa::openapi::{OpenApi, RefOr};

pub(crate) use wardline_domain::text_schema::{SPACE_OR_CONTROL, trimmed_text};

fn string() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String)
}

/// A LOINC code Wardline stores, as a query parameter takes it (the schema only: the
/// handlers read the text and look it up).
pub(crate) struct LoincCode;

impl utoipa::PartialSchema for LoincCode {
    fn schema() -> RefOr<Schema> {
        string()
            .enum_values(Some(
                wardline_domain::codes::CATALOGUE
                    .iter()
                    .map(|spec| spec.loinc),
            ))
            .description(Some(
                "A LOINC code Wardline stores, e.g. `99504-3` for CGM glucose.",
            ))
            .into()
    }
}

impl utoipa::ToSchema for LoincCode {}

/// The bin widths the ambulatory glucose profile takes: the divisors of a day's 1440
/// minutes from 1 to 60.
pub(crate) fn agp_bin_minutes() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::UInt32)))
        .enum_values(Some((1..=60u32).filter(|minutes| 1440 % minutes == 0)))
        .description(Some(
            "The AGP's bin width in minutes: a divisor of 1440 from 1 to 60 (default 15).",
        ))
        .build()
}

fn null() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::Null)
}

/// The longest snooze of any alarm: a low-priority one's 240 minutes.
const MAX_SNOOZE_SECS: i64 = 240 * 60;

/// `{"minutes": …}` or `{"seconds": …}`: one of the two, as the snooze handler reads them.
pub(crate) fn snooze_request() -> RefOr<Schema> {
    OneOfBuilder::new()
        .description(Some(
            "How long: `minutes` or `seconds`, not both. At most 30, 60 or 240 minutes for \
             a high, medium or low priority alarm.",
        ))
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .property(
                    "minutes",
                    ObjectBuilder::new()
                        .schema_type(Type::Number)
                        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Double)))
                        // Rounded to whole seconds, of which there must be at least one.
                        .minimum(Some(1.0 / 120.0))
                        .maximum(Some(240.0))
                        .description(Some("Minutes, rounded to whole seconds.")),
                )
                .property("seconds", null())
                .required("minutes"),
        )
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .property(
                    "seconds",
                    ObjectBuilder::new()
                        .schema_type(Type::Integer)
                        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
                        .minimum(Some(1))
                        .maximum(Some(MAX_SNOOZE_SECS)),
                )
                .property("minutes", null())
                .required("seconds"),
        )
        .into()
}

/// Webhook URLs `check_webhook_url` accepts: an https:// URL with a host name, or an
/// http:// one to this machine (refused as `not_permitted` unless the configuration
/// allows webhooks to this machine), without white space or control characters. The server
/// also takes URLs with IP addresses or international host names that its client can
/// parse; this is their portable form, which every URL parser splits alike.
pub(crate) fn webhook_url_pattern() -> String {
    let x = SPACE_OR_CONTROL;
    let userinfo = "([A-Za-z0-9._~-]+(:[A-Za-z0-9._~-]*)?@)?";
    let label = "[A-Za-z0-9]+(-[A-Za-z0-9]+)*";
    // The last label starts with a letter, so that the host is not read as an address.
    let host = format!("({label}\\.)*[A-Za-z][A-Za-z0-9]*(-[A-Za-z0-9]+)*");
    let port = "(:[0-9]{0,4})?";
    format!(
        "^(https://{userinfo}{host}|http://{userinfo}(localhost|127\\.0\\.0\\.1|\\[::1\\]))\
         {port}([/?#][^{x}]*)?$"
    )
}

/// What `check_address` accepts: something, `@`, something, without white space,
/// control characters or commas.
pub(crate) fn email_address_pattern() -> String {
    let x = SPACE_OR_CONTROL;
    format!("^[^@,{x}]+@[^,{x}]+$")
}

/// A webhook (`kind`, `url`) or an e-mail channel (`kind`, `recipients`).
pub(crate) fn channel_request() -> RefOr<Schema> {
    let minimal = || {
        ObjectBuilder::new()
            .schema_type(SchemaType::from_iter([Type::Boolean, Type::Null]))
            .description(Some(
                "Send only \"alarm X for patient Y, open Wardline\" (the default).",
            ))
    };
    let kind = |name: &str| string().enum_values(Some([name]));
    OneOfBuilder::new()
        .description(Some("A webhook or an e-mail channel."))
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .property("kind", kind("webhook"))
                .property(
                    "url",
                    string()
                        .max_length(Some(2000))
                        .pattern(Some(webhook_url_pattern()))
                        .description(Some(
                            "An https:// URL (http:// only to localhost), at most 2000 bytes.",
                        )),
                )
                .property(
                    "recipients",
                    ArrayBuilder::new()
                        .schema_type(SchemaType::from_iter([Type::Array, Type::Null]))
                        .items(string())
                        .description(Some("Not used by a webhook.")),
                )
                .property("minimal", minimal())
                .required("kind")
                .required("url")
                .additional_properties(Some(AdditionalProperties::FreeForm(false))),
        )
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .property("kind", kind("email"))
                .property(
                    "recipients",
                    ArrayBuilder::new()
                        .items(
                            string()
                                .max_length(Some(254))
                                .pattern(Some(email_address_pattern()))
                                .description(Some(
                                    "An address like nurse@example.org, at most 254 bytes.",
                                )),
                        )
                        .min_items(Some(1))
                        .max_items(Some(50)),
                )
                .property(
                    "url",
                    string()
                        .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
                        .description(Some("Not used by an e-mail channel.")),
                )
                .property("minimal", minimal())
                .required("kind")
                .required("recipients")
                .additional_properties(Some(AdditionalProperties::FreeForm(false))),
        )
        .into()
}

/// What `check_username` accepts.
pub(crate) const USERNAME_PATTERN: &str = "^[A-Za-z0-9._@-]{3,64}$";

/// An account: a patient account names its patient record, any other names none.
pub(crate) fn create_user_request() -> RefOr<Schema> {
    use wardline_domain::Role;
    let account = |roles: Vec<Role>, patient_id: RefOr<Schema>, patient_required: bool| {
        let mut object = ObjectBuilder::new()
            .schema_type(Type::Object)
            .property(
                "username",
                string().pattern(Some(USERNAME_PATTERN)).description(Some(
                    "3 to 64 characters from letters, digits, `.`, `_`, `-` and `@`.",
                )),
            )
            .property("display_name", trimmed_text::<200>())
            .property(
                "role",
                string().enum_values(Some(roles.into_iter().map(Role::as_str))),
            )
            .property(
                "password",
                ObjectBuilder::new()
                    .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
                    .min_length(Some(12))
                    .max_length(Some(1024))
                    .description(Some(
                        "At least 12 characters and at most 1024 bytes, and not easy to \
                         guess (common or leaked passwords, words, patterns and the account's \
                         own names are refused); when absent, a password is generated and \
                         returned once.",
                    )),
            )
            .property("patient_id", patient_id)
            .property(
                "password_change_required",
                ObjectBuilder::new()
                    .schema_type(SchemaType::from_iter([Type::Boolean, Type::Null]))
                    .description(Some(
                        "Whether the holder must change the password at the first login \
                         before doing anything else. Defaults to true: the administrator \
                         who set or received it knows it.",
                    )),
            )
            .required("username")
            .required("display_name")
            .required("role");
        if patient_required {
            object = object.required("patient_id");
        }
        object
    };
    let patient_id: RefOr<Schema> = utoipa::openapi::Ref::from_schema_name("PatientId").into();
    OneOfBuilder::new()
        .description(Some(
            "An account. A patient's names the patient record it is; no other account \
             names one.",
        ))
        .item(account(vec![Role::Patient], patient_id, true))
        .item(account(
            Role::ALL
                .into_iter()
                .filter(|role| *role != Role::Patient)
                .collect(),
            null().into(),
            false,
        ))
        .into()
}

/// Applies `edit` to every schema of the document, each before its parts.
fn for_each_schema(document: &mut OpenApi, edit: &mut impl FnMut(&mut Schema)) {
    let mut visit = |schema: &mut RefOr<Schema>| walk(schema, edit);
    if let Some(components) = document.components.as_mut() {
        components.schemas.values_mut().for_each(&mut visit);
    }
    for item in document.paths.paths.values_mut() {
        for operation in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ]
        .into_iter()
        .flatten()
        {
            for parameter in operation.parameters.iter_mut().flatten() {
                if let RefOr::T(parameter) = parameter {
                    parameter.schema.iter_mut().for_each(&mut visit);
                }
            }
            let mut contents = Vec::new();
            if let Some(RefOr::T(body)) = operation.request_body.as_mut() {
                contents.extend(body.content.values_mut());
            }
            for response in operation.responses.responses.values_mut() {
                if let RefOr::T(response) = response {
                    contents.extend(response.content.values_mut());
                }
            }
            for content in contents {
                if let RefOr::T(content) = content {
                    content.schema.iter_mut().for_each(&mut visit);
                }
            }
        }
    }
}

fn walk(schema: &mut RefOr<Schema>, edit: &mut impl FnMut(&mut Schema)) {
    let RefOr::T(schema) = schema else {
        return;
    };
    edit(schema);
    match schema {
        Schema::Object(object) => {
            for property in object.properties.values_mut() {
                walk(property, edit);
            }
            if let Some(additional) = object.additional_properties.as_deref_mut()
                && let AdditionalProperties::RefOr(inner) = additional
            {
                walk(inner, edit);
            }
        }
        Schema::Array(array) => {
            if let ArrayItems::RefOrSchema(items) = &mut array.items {
                walk(items, edit);
            }
        }
        Schema::OneOf(one_of) => one_of.items.iter_mut().for_each(|item| walk(item, edit)),
        Schema::AllOf(all_of) => all_of.items.iter_mut().for_each(|item| walk(item, edit)),
        Schema::AnyOf(any_of) => any_of.items.iter_mut().for_each(|item| walk(item, edit)),
        _ => {}
    }
}

/// Gives every integer of a fixed width without declared bounds the range of its type,
/// which the server's parser enforces: `format` alone (e.g. `u-int32`) says nothing a
/// validator checks.
pub(crate) fn bound_integers(document: &mut OpenApi) {
    for_each_schema(document, &mut |schema| {
        if let Schema::Object(object) = schema {
            bound_object(object);
        }
    });
}

/// Writes a nullable value with a `format` (`{"type": ["string", "null"], "format":
/// "date-time"}`) as `oneOf` the formatted value or `null`: the same set of values, in
/// the form test generators read right (schemathesis 4.32 generates `""` as a valid
/// date-time from the first).
pub(crate) fn split_nullable_formats(document: &mut OpenApi) {
    for_each_schema(document, &mut |schema| {
        let Schema::Object(object) = schema else {
            return;
        };
        let SchemaType::Array(kinds) = &object.schema_type else {
            return;
        };
        let others: Vec<Type> = kinds
            .iter()
            .filter(|kind| **kind != Type::Null)
            .cloned()
            .collect();
        if object.format.is_none() || others.len() != 1 || others.len() == kinds.len() {
            return;
        }
        let mut value = object.clone();
        value.schema_type = SchemaType::Type(others[0].clone());
        let description = value.description.take();
        *schema = OneOfBuilder::new()
            .item(value)
            .item(null())
            .description(description)
            .build()
            .into();
    });
}

fn bound_object(object: &mut Object) {
    let integer = match &object.schema_type {
        SchemaType::Type(kind) => *kind == Type::Integer,
        SchemaType::Array(kinds) => kinds.contains(&Type::Integer),
        SchemaType::AnyValue => false,
    };
    let Some(SchemaFormat::KnownFormat(format)) = &object.format else {
        return;
    };
    if !integer {
        return;
    }
    let (minimum, maximum): (i128, i128) = match format {
        KnownFormat::Int8 => (i8::MIN.into(), i8::MAX.into()),
        KnownFormat::Int16 => (i16::MIN.into(), i16::MAX.into()),
        KnownFormat::UInt8 => (0, u8::MAX.into()),
        KnownFormat::UInt16 => (0, u16::MAX.into()),
        KnownFormat::UInt32 => (0, u32::MAX.into()),
        KnownFormat::UInt64 => (0, u64::MAX.into()),
        _ => return,
    };
    let number = |value: i128| -> Option<utoipa::Number> {
        if value < 0 {
            isize::try_from(value).ok().map(utoipa::Number::Int)
        } else {
            usize::try_from(value).ok().map(utoipa::Number::UInt)
        }
    };
    if object.enum_values.is_some() {
        return;
    }
    if object.minimum.is_none() && object.exclusive_minimum.is_none() {
        object.minimum = number(minimum);
    }
    if object.maximum.is_none() && object.exclusive_maximum.is_none() {
        object.maximum = number(maximum);
    }
}

#[cfg(test)]
mod tests;
