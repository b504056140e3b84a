//! What is wrong with a template: every problem, each with its place in the document.

use serde_json::Value;

/// One problem: where in the template document (`template[1].template.typeName`) and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    pub field: String,
    pub reason: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

#[derive(Debug, Default)]
pub(crate) struct Problems {
    list: Vec<Problem>,
}

impl Problems {
    pub(crate) fn add(&mut self, field: impl Into<String>, reason: impl Into<String>) {
        self.list.push(Problem {
            field: field.into(),
            reason: reason.into(),
        });
    }

    pub(crate) fn len(&self) -> usize {
        self.list.len()
    }

    pub(crate) fn into_vec(self) -> Vec<Problem> {
        self.list
    }
}

/// A value's type and, when short, the value: for messages.
pub(crate) fn kind_of(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(flag) => flag.to_string(),
        Value::Number(number) => format!("the number {number}"),
        Value::String(text) if text.chars().count() <= 40 => format!("the string {text:?}"),
        Value::String(_) => "a string".into(),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

/// The `templateType` and `template` of a template document or of one entry of a
/// collection (at `location`), or the problems that keep it from having them.
pub(crate) fn container<'a>(
    document: &'a Value,
    location: &str,
    problems: &mut Problems,
) -> Option<(&'a str, &'a Value)> {
    let at = |field: &str| {
        if location.is_empty() {
            field.to_owned()
        } else {
            format!("{location}.{field}")
        }
    };
    let Value::Object(members) = document else {
        problems.add(
            if location.is_empty() {
                "$".to_owned()
            } else {
                location.to_owned()
            },
            format!(
                "a template is an object with templateType and template, not {}",
                kind_of(document)
            ),
        );
        return None;
    };
    for name in members.keys() {
        if name != "templateType" && name != "template" {
            problems.add(
                at(name),
                "unknown field: a template has only templateType and template",
            );
        }
    }
    let kind = match members.get("templateType") {
        Some(Value::String(kind)) if !kind.trim().is_empty() => kind.as_str(),
        Some(Value::String(_)) => {
            problems.add(at("templateType"), "empty: name the kind of template");
            return None;
        }
        Some(other) => {
            problems.add(
                at("templateType"),
                format!("must be a string, not {}", kind_of(other)),
            );
            return None;
        }
        None => {
            problems.add(at("templateType"), "missing: name the kind of template");
            return None;
        }
    };
    let Some(body) = members.get("template") else {
        problems.add(at("template"), "missing: the template itself");
        return None;
    };
    Some((kind, body))
}

/// One template of a document: where it is (`template[2]`, or empty for a document that
/// is one template), its `templateType` and its `template`.
pub(crate) struct Entry<'a> {
    pub(crate) location: String,
    pub(crate) kind: &'a str,
    pub(crate) body: &'a Value,
}

impl Entry<'_> {
    /// A field's place: `template[2].name`, or `name` for a lone template.
    pub(crate) fn at(&self, field: &str) -> String {
        if self.location.is_empty() {
            field.to_owned()
        } else {
            format!("{}.{field}", self.location)
        }
    }
}

/// The templates of a document: the entries of a `collection` (its `templateType`, in
/// any case), or the document itself when it is one template. What is not a template is
/// a problem and no entry.
pub(crate) fn entries<'a>(
    document: &'a Value,
    collection: &str,
    problems: &mut Problems,
) -> Vec<Entry<'a>> {
    let Some((kind, body)) = container(document, "", problems) else {
        return Vec::new();
    };
    if !kind.eq_ignore_ascii_case(collection) {
        return vec![Entry {
            location: String::new(),
            kind,
            body,
        }];
    }
    let Value::Array(items) = body else {
        problems.add(
            "template",
            format!(
                "a {collection}'s template must be an array of templates, not {}",
                kind_of(body)
            ),
        );
        return Vec::new();
    };
    items
        .iter()
        .enumerate()
        .filter_map(|(index, item)| {
            let location = format!("template[{index}]");
            let (kind, body) = container(item, &location, problems)?;
            Some(Entry {
                location,
                kind,
                body,
            })
        })
        .collect()
}
