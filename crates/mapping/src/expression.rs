//! Template expressions: JSONPath (the default) or JMESPath with iomt-fhir's custom
//! functions (docs/CustomFunctions.md of iomt-fhir).

use std::sync::{Arc, LazyLock, OnceLock};

use chrono::{DateTime, SecondsFormat};
use jmespath::functions::{ArgumentType, CustomFunction, Signature};
use jmespath::{Context, ErrorReason, JmespathError, Rcvar, Runtime, RuntimeError, Variable};
use serde_json::Value;

use crate::jsonpath::JsonPath;

/// The language an expression is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    JsonPath,
    JmesPath,
}

impl Language {
    /// As templates name it; the case of the letters does not matter.
    pub fn parse(text: &str) -> Option<Self> {
        if text.eq_ignore_ascii_case("JsonPath") {
            Some(Self::JsonPath)
        } else if text.eq_ignore_ascii_case("JmesPath") {
            Some(Self::JmesPath)
        } else {
            None
        }
    }
}

/// A compiled expression.
#[derive(Clone)]
pub enum Expression {
    JsonPath { text: String, path: JsonPath },
    JmesPath(Arc<jmespath::Expression<'static>>),
}

impl std::fmt::Debug for Expression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.text())
    }
}

impl Expression {
    /// Compiles `text`; the error names what is wrong, and for JMESPath also a function
    /// that does not exist (which the library would only find when it runs).
    pub fn compile(text: &str, language: Language) -> Result<Self, String> {
        let length = text.chars().count();
        if length > MAX_EXPRESSION_CHARS {
            return Err(format!(
                "{length} characters; an expression is at most {MAX_EXPRESSION_CHARS}"
            ));
        }
        match language {
            Language::JsonPath => Ok(Self::JsonPath {
                text: text.to_owned(),
                path: JsonPath::parse(text)?,
            }),
            Language::JmesPath => {
                let nesting = jmespath_nesting(text);
                if nesting > MAX_JMESPATH_NESTING {
                    return Err(format!(
                        "{nesting} nested or chained operations (brackets, calls, negations, dots, pipes, and/or); at most {MAX_JMESPATH_NESTING}"
                    ));
                }
                let compiled = RUNTIME.compile(text).map_err(|error| describe(&error))?;
                check_functions(compiled.as_ast())?;
                Ok(Self::JmesPath(Arc::new(compiled)))
            }
        }
    }

    pub fn text(&self) -> &str {
        match self {
            Self::JsonPath { text, .. } => text,
            Self::JmesPath(expression) => expression.as_str(),
        }
    }

    /// Every token the expression selects: a JSONPath's matches; a JMESPath's result,
    /// each element when it is an array, nothing when it is null.
    pub fn select_tokens(&self, data: &Value) -> Result<Vec<Value>, String> {
        self.select_tokens_in(&Scope::new(data))
    }

    /// The one token the expression selects, `None` when it selects nothing or null; more
    /// than one is an error (as Json.NET's `SelectToken`).
    pub fn select_token(&self, data: &Value) -> Result<Option<Value>, String> {
        self.select_token_in(&Scope::new(data))
    }

    /// [`Self::select_tokens`] on a scope that several expressions read.
    pub fn select_tokens_in(&self, scope: &Scope<'_>) -> Result<Vec<Value>, String> {
        match self {
            Self::JsonPath { path, .. } => {
                Ok(path.select(scope.value).into_iter().cloned().collect())
            }
            Self::JmesPath(expression) => match search(expression, scope)? {
                Value::Null => Ok(Vec::new()),
                Value::Array(items) => Ok(items),
                other => Ok(vec![other]),
            },
        }
    }

    /// [`Self::select_token`] on a scope that several expressions read.
    pub fn select_token_in(&self, scope: &Scope<'_>) -> Result<Option<Value>, String> {
        match self {
            Self::JsonPath { path, .. } => {
                let found = path.select(scope.value);
                match found.as_slice() {
                    [] | [Value::Null] => Ok(None),
                    [one] => Ok(Some((*one).clone())),
                    many => Err(format!(
                        "selects {} tokens where one is expected",
                        many.len()
                    )),
                }
            }
            Self::JmesPath(expression) => match search(expression, scope)? {
                Value::Null => Ok(None),
                other => Ok(Some(other)),
            },
        }
    }
}

/// The longest expression: iomt-fhir templates' are a few dozen characters.
const MAX_EXPRESSION_CHARS: usize = 4096;

/// The JMESPath library parses and evaluates by recursion without a bound of its own: in
/// a thread of 1 MiB (half a server worker's stack) a debug build overflows at about 128
/// nested brackets, negations, dots or pipes. Expressions are refused at registration
/// beyond this many, which no real template comes near.
const MAX_JMESPATH_NESTING: usize = 48;

/// How many of a JMESPath expression's operations nest or chain (each a level of the
/// library's recursion), outside string and JSON literals: an upper bound of its depth.
fn jmespath_nesting(text: &str) -> usize {
    let mut count = 0;
    let mut quote: Option<char> = None;
    let mut previous = None;
    for c in text.chars() {
        match quote {
            Some(open) => {
                if c == open && previous != Some('\\') {
                    quote = None;
                }
            }
            None => match c {
                '\'' | '"' | '`' => quote = Some(c),
                '(' | '[' | '{' | '!' | '.' | '|' | '&' => count += 1,
                _ => {}
            },
        }
        previous = Some(c);
    }
    count
}

/// The data expressions read. JMESPath works on its own copy of the data, made once here
/// however many expressions read it (a template's device, time and values).
#[derive(Debug)]
pub struct Scope<'a> {
    value: &'a Value,
    converted: OnceLock<Result<Rcvar, String>>,
}

impl<'a> Scope<'a> {
    pub fn new(value: &'a Value) -> Self {
        Self {
            value,
            converted: OnceLock::new(),
        }
    }

    pub fn value(&self) -> &'a Value {
        self.value
    }

    fn converted(&self) -> Result<Rcvar, String> {
        self.converted
            .get_or_init(|| {
                Variable::try_from(self.value)
                    .map(Rcvar::new)
                    .map_err(|error| error.to_string())
            })
            .clone()
    }
}

fn search(expression: &jmespath::Expression<'static>, scope: &Scope<'_>) -> Result<Value, String> {
    let result = expression
        .search(scope.converted()?)
        .map_err(|error| describe(&error))?;
    serde_json::to_value(&*result).map_err(|error| error.to_string())
}

/// The library's error without its multi-line caret drawing.
fn describe(error: &JmespathError) -> String {
    match &error.reason {
        ErrorReason::Parse(reason) => {
            format!("{reason} (at character {})", error.offset + 1)
        }
        ErrorReason::Runtime(reason) => reason.to_string(),
    }
}

fn check_functions(ast: &jmespath::ast::Ast) -> Result<(), String> {
    use jmespath::ast::Ast;
    match ast {
        Ast::Function { name, args, .. } => {
            if RUNTIME.get_function(name).is_none() {
                return Err(format!(
                    "there is no function {name}(); the custom ones are add, subtract, multiply, divide, pow, insertString, fromUnixTimestamp and fromUnixTimestampMs"
                ));
            }
            args.iter().try_for_each(check_functions)
        }
        Ast::Comparison { lhs, rhs, .. }
        | Ast::Projection { lhs, rhs, .. }
        | Ast::And { lhs, rhs, .. }
        | Ast::Or { lhs, rhs, .. }
        | Ast::Subexpr { lhs, rhs, .. } => {
            check_functions(lhs)?;
            check_functions(rhs)
        }
        Ast::Condition {
            predicate, then, ..
        } => {
            check_functions(predicate)?;
            check_functions(then)
        }
        Ast::Expref { ast, .. } => check_functions(ast),
        Ast::Flatten { node, .. } | Ast::Not { node, .. } | Ast::ObjectValues { node, .. } => {
            check_functions(node)
        }
        Ast::MultiList { elements, .. } => elements.iter().try_for_each(check_functions),
        Ast::MultiHash { elements, .. } => elements
            .iter()
            .try_for_each(|pair| check_functions(&pair.value)),
        Ast::Field { .. }
        | Ast::Identity { .. }
        | Ast::Index { .. }
        | Ast::Literal { .. }
        | Ast::Slice { .. } => Ok(()),
    }
}

/// The JMESPath runtime: the specification's functions and iomt-fhir's.
static RUNTIME: LazyLock<Runtime> = LazyLock::new(|| {
    let mut runtime = Runtime::new();
    runtime.register_builtin_functions();
    for (name, operation) in [
        ("add", Arithmetic::Add),
        ("subtract", Arithmetic::Subtract),
        ("multiply", Arithmetic::Multiply),
        ("divide", Arithmetic::Divide),
        ("pow", Arithmetic::Pow),
    ] {
        runtime.register_function(
            name,
            Box::new(CustomFunction::new(
                Signature::new(vec![ArgumentType::Number, ArgumentType::Number], None),
                Box::new(move |args, context| arithmetic(operation, args, context)),
            )),
        );
    }
    runtime.register_function(
        "insertString",
        Box::new(CustomFunction::new(
            Signature::new(
                vec![
                    ArgumentType::String,
                    ArgumentType::String,
                    ArgumentType::Number,
                ],
                None,
            ),
            Box::new(insert_string),
        )),
    );
    for (name, per_second) in [("fromUnixTimestamp", 1.0), ("fromUnixTimestampMs", 1000.0)] {
        runtime.register_function(
            name,
            Box::new(CustomFunction::new(
                Signature::new(vec![ArgumentType::Number], None),
                Box::new(move |args, context| from_unix(per_second, args, context)),
            )),
        );
    }
    runtime
});

#[derive(Debug, Clone, Copy)]
enum Arithmetic {
    Add,
    Subtract,
    Multiply,
    Divide,
    Pow,
}

fn number_argument(args: &[Rcvar], index: usize) -> f64 {
    args.get(index)
        .and_then(|value| value.as_number())
        .unwrap_or(f64::NAN)
}

fn failure(context: &Context<'_>, reason: String) -> JmespathError {
    // The library has no variant for a function's own failure; a type error carries the
    // reason in its text, which is what the template's author reads.
    JmespathError::from_ctx(
        context,
        ErrorReason::Runtime(RuntimeError::InvalidType {
            expected: reason,
            actual: "that".into(),
            position: 0,
        }),
    )
}

fn arithmetic(
    operation: Arithmetic,
    args: &[Rcvar],
    context: &mut Context<'_>,
) -> Result<Rcvar, JmespathError> {
    let left = number_argument(args, 0);
    let right = number_argument(args, 1);
    let result = match operation {
        Arithmetic::Add => left + right,
        Arithmetic::Subtract => left - right,
        Arithmetic::Multiply => left * right,
        Arithmetic::Divide => {
            if right == 0.0 {
                return Err(failure(context, "mathematic error: divide by zero".into()));
            }
            left / right
        }
        Arithmetic::Pow => left.powf(right),
    };
    // iomt-fhir's results must fit a 64-bit integer's range.
    if !result.is_finite() || result.abs() > i64::MAX as f64 {
        return Err(failure(context, "mathematic error: overflow".into()));
    }
    Ok(Rcvar::new(number(result)))
}

/// An integral result as an integer (`20`, not `20.0`), as the functions' examples show.
fn number(value: f64) -> Variable {
    if value.fract() == 0.0 && value.abs() < 9.0e15 {
        Variable::Number(serde_json::Number::from(value as i64))
    } else {
        serde_json::Number::from_f64(value)
            .map(Variable::Number)
            .unwrap_or(Variable::Null)
    }
}

fn insert_string(args: &[Rcvar], context: &mut Context<'_>) -> Result<Rcvar, JmespathError> {
    let original = args
        .first()
        .and_then(|v| v.as_string())
        .cloned()
        .unwrap_or_default();
    let insert = args
        .get(1)
        .and_then(|v| v.as_string())
        .cloned()
        .unwrap_or_default();
    let position = number_argument(args, 2);
    let length = original.chars().count();
    if position.fract() != 0.0 || position < 0.0 || position > length as f64 {
        return Err(failure(
            context,
            format!("a position from 0 to {length} (out of range)"),
        ));
    }
    let split = original
        .char_indices()
        .nth(position as usize)
        .map_or(original.len(), |(byte, _)| byte);
    let mut result = String::with_capacity(original.len() + insert.len());
    result.push_str(&original[..split]);
    result.push_str(&insert);
    result.push_str(&original[split..]);
    Ok(Rcvar::new(Variable::String(result)))
}

fn from_unix(
    per_second: f64,
    args: &[Rcvar],
    context: &mut Context<'_>,
) -> Result<Rcvar, JmespathError> {
    let value = number_argument(args, 0);
    let millis = value * 1000.0 / per_second;
    let time = (millis.is_finite() && millis.abs() < 1.0e16)
        .then(|| DateTime::from_timestamp_millis(millis.round() as i64))
        .flatten()
        .ok_or_else(|| failure(context, "a time Unix can count (out of range)".into()))?;
    Ok(Rcvar::new(Variable::String(
        time.to_rfc3339_opts(SecondsFormat::AutoSi, true),
    )))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use serde_json::json;

    fn jmes(text: &str, data: Value) -> Result<Option<Value>, String> {
        Expression::compile(text, Language::JmesPath)?.select_token(&data)
    }

    // The examples of iomt-fhir's docs/CustomFunctions.md, each with its stated result.
    #[test]
    fn custom_functions_give_the_documented_results() {
        let pair = |l: Value, r: Value| json!({"left": l, "right": r});
        assert_eq!(jmes("add(`10`, `10`)", json!({})).unwrap(), Some(json!(20)));
        assert_eq!(
            jmes("add(left, right)", pair(json!(40), json!(50))).unwrap(),
            Some(json!(90))
        );
        assert_eq!(
            jmes("add(left, right)", pair(json!(0), json!(50))).unwrap(),
            Some(json!(50))
        );
        assert_eq!(
            jmes("divide(`10`, `10`)", json!({})).unwrap(),
            Some(json!(1))
        );
        assert_eq!(
            jmes("divide(left, right)", pair(json!(40), json!(50))).unwrap(),
            Some(json!(0.8))
        );
        assert_eq!(
            jmes("divide(left, right)", pair(json!(0), json!(50))).unwrap(),
            Some(json!(0))
        );
        assert!(
            jmes("divide(left, right)", pair(json!(50), json!(0)))
                .unwrap_err()
                .contains("divide by zero")
        );
        assert_eq!(
            jmes("multiply(`10`, `10`)", json!({})).unwrap(),
            Some(json!(100))
        );
        assert_eq!(
            jmes("multiply(left, right)", pair(json!(40), json!(50))).unwrap(),
            Some(json!(2000))
        );
        assert_eq!(
            jmes("multiply(left, right)", pair(json!(0), json!(50))).unwrap(),
            Some(json!(0))
        );
        assert_eq!(
            jmes("pow(`10`, `10`)", json!({})).unwrap(),
            Some(json!(10_000_000_000_i64))
        );
        assert!(
            jmes("pow(left, right)", pair(json!(40), json!(50)))
                .unwrap_err()
                .contains("overflow")
        );
        assert_eq!(
            jmes("pow(left, right)", pair(json!(0), json!(50))).unwrap(),
            Some(json!(0))
        );
        assert_eq!(
            jmes("pow(left, right)", pair(json!(100), json!(0.5))).unwrap(),
            Some(json!(10))
        );
        assert_eq!(
            jmes("subtract(`10`, `10`)", json!({})).unwrap(),
            Some(json!(0))
        );
        assert_eq!(
            jmes("subtract(left, right)", pair(json!(40), json!(50))).unwrap(),
            Some(json!(-10))
        );
        assert_eq!(
            jmes("subtract(left, right)", pair(json!(0), json!(50))).unwrap(),
            Some(json!(-50))
        );

        let strings = |o: &str, i: &str, p: i64| json!({"original": o, "toInsert": i, "pos": p});
        assert_eq!(
            jmes("insertString('mple', 'sa', `0`)", json!({})).unwrap(),
            Some(json!("sample"))
        );
        assert_eq!(
            jmes(
                "insertString(original, toInsert, pos)",
                strings("mple", "sa", 0)
            )
            .unwrap(),
            Some(json!("sample"))
        );
        assert_eq!(
            jmes(
                "insertString(original, toInsert, pos)",
                strings("suess", "cc", 2)
            )
            .unwrap(),
            Some(json!("success"))
        );
        assert_eq!(
            jmes(
                "insertString(original, toInsert, pos)",
                strings("myString", "!!", 8)
            )
            .unwrap(),
            Some(json!("myString!!"))
        );
        assert_eq!(
            jmes(
                "insertString(original, toInsert, length(original))",
                json!({"original": "myString", "toInsert": "!!"})
            )
            .unwrap(),
            Some(json!("myString!!"))
        );
        for position in [100, -1] {
            assert!(
                jmes(
                    "insertString(original, toInsert, pos)",
                    strings("myString", "!!", position)
                )
                .unwrap_err()
                .contains("out of range")
            );
        }
        assert_eq!(
            jmes("insertString('123', 'patient', `0`) ", json!({})).unwrap(),
            Some(json!("patient123"))
        );
    }

    // The documented results are written "2021-07-07T17:00:00+0"; the same instant is
    // written here in RFC 3339, which every timestamp expression accepts.
    #[test]
    fn unix_times_become_the_documented_instants() {
        for (expression, unix, expected) in [
            (
                "fromUnixTimestamp(unix)",
                json!(1_625_677_200),
                "2021-07-07T17:00:00Z",
            ),
            ("fromUnixTimestamp(unix)", json!(0), "1970-01-01T00:00:00Z"),
            (
                "fromUnixTimestampMs(unix)",
                json!(1_626_799_080_000_i64),
                "2021-07-20T16:38:00Z",
            ),
            (
                "fromUnixTimestampMs(unix)",
                json!(0),
                "1970-01-01T00:00:00Z",
            ),
        ] {
            assert_eq!(
                jmes(expression, json!({"unix": unix})).unwrap(),
                Some(json!(expected))
            );
        }
    }

    #[test]
    fn wrong_argument_types_and_unknown_functions_are_errors() {
        assert!(
            jmes("add('a', `1`)", json!({}))
                .unwrap_err()
                .contains("number")
        );
        let error = Expression::compile("addd(`1`, `2`)", Language::JmesPath).unwrap_err();
        assert!(error.contains("no function addd()"), "{error}");
        let error = Expression::compile("foo[?", Language::JmesPath).unwrap_err();
        assert!(error.contains("at character"), "{error}");
    }

    #[test]
    fn deep_or_long_expressions_are_refused_before_the_library_recurses() {
        for text in [
            format!("{}a", "!".repeat(10_000)),
            format!("{}a{}", "(".repeat(100), ")".repeat(100)),
            format!("{}a", "a.".repeat(60)),
        ] {
            let error = Expression::compile(&text, Language::JmesPath).unwrap_err();
            assert!(error.contains("at most"), "{error}");
        }
        let long = "a".repeat(5000);
        assert!(
            Expression::compile(&long, Language::JsonPath)
                .unwrap_err()
                .contains("at most 4096")
        );
        // Brackets inside literals do not count.
        Expression::compile(
            "matchedToken.note == '((((((((((((((((((((((((((((((((((((((((((((((((((('",
            Language::JmesPath,
        )
        .unwrap();
        Expression::compile(
            "multiply(to_number(matchedToken.height), `0.0254`)",
            Language::JmesPath,
        )
        .unwrap();
    }

    #[test]
    fn a_json_path_selecting_many_tokens_is_not_one_value() {
        let path = Expression::compile("$..hr", Language::JsonPath).unwrap();
        let error = path
            .select_token(&json!({"a": {"hr": 1}, "b": {"hr": 2}}))
            .unwrap_err();
        assert!(error.contains("2 tokens"), "{error}");
    }
}
