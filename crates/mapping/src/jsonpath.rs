//! JSONPath as Json.NET evaluates it, the dialect iomt-fhir templates are written in.
//!
//! RFC 9535 differs from it in ways the templates depend on: a filter may name a member
//! without a dot (`$..[?(@heartRate)]`), and a descendant filter tests the node it starts
//! from as well as every node below it (`$..[?(@Body.heartrate)]` matches the whole
//! message), so no RFC 9535 library evaluates these templates unmodified.
//!
//! Supported: `$` and `@` roots, `.name`, `['name']` and `["name"]`, `.*` and `[*]`,
//! indices and index lists (negative from the end), slices `[start:end:step]`, `..` before
//! any of them, and filters `[?(…)]` with existence tests, `== != < <= > >=` against
//! paths or literals (numbers, strings in single or double quotes, `true`, `false`,
//! `null`), `&&`, `||`, `!` and parentheses. Anything else is refused when the template
//! is registered, with the character where it stopped making sense.

use serde_json::Value;

/// A parsed JSONPath expression.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonPath {
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq)]
enum Segment {
    Child(Selector),
    Descendant(Selector),
}

#[derive(Debug, Clone, PartialEq)]
enum Selector {
    Names(Vec<String>),
    Wildcard,
    Indices(Vec<i64>),
    Slice {
        start: Option<i64>,
        end: Option<i64>,
        step: i64,
    },
    Filter(Box<Filter>),
}

#[derive(Debug, Clone, PartialEq)]
enum Filter {
    Or(Box<Filter>, Box<Filter>),
    And(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
    Exists(Query),
    Compare(Operand, Comparison, Operand),
}

#[derive(Debug, Clone, PartialEq)]
struct Query {
    /// `$` rather than `@`.
    from_root: bool,
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq)]
enum Operand {
    Query(Query),
    Literal(Value),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Comparison {
    Equal,
    NotEqual,
    Less,
    LessOrEqual,
    Greater,
    GreaterOrEqual,
}

/// Paths nest filters in filters; deeper than this is no template anyone writes and
/// would only exhaust the stack.
const MAX_NESTING: usize = 32;

/// The most tests and operators in one path's filters: each is a step of recursion when
/// the filter is evaluated (and dropped), so the count is bounded like the nesting.
const MAX_FILTER_NODES: usize = 128;

impl JsonPath {
    /// Parses `text`; the error says at which character and why.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut parser = Parser {
            chars: text.chars().collect(),
            at: 0,
            depth: 0,
            nodes: 0,
        };
        parser.skip_space();
        if parser.at == parser.chars.len() {
            return Err("the expression is empty".into());
        }
        if parser.peek() == Some('$') {
            parser.at += 1;
        }
        let segments = parser.segments(false)?;
        parser.skip_space();
        if parser.at != parser.chars.len() {
            return Err(parser.error("unexpected text"));
        }
        Ok(Self { segments })
    }

    /// Every token the path selects from `root`, in document order.
    pub fn select<'a>(&self, root: &'a Value) -> Vec<&'a Value> {
        apply(&self.segments, root, root)
    }
}

fn apply<'a>(segments: &[Segment], root: &'a Value, start: &'a Value) -> Vec<&'a Value> {
    let mut nodes = vec![start];
    for segment in segments {
        let mut next = Vec::new();
        for node in nodes {
            match segment {
                Segment::Child(selector) => select_children(selector, node, root, &mut next),
                Segment::Descendant(selector) => match selector {
                    // Json.NET's scan filter tests the node itself and everything below.
                    Selector::Filter(filter) => {
                        for candidate in self_and_descendants(node) {
                            if test(filter, candidate, root) {
                                next.push(candidate);
                            }
                        }
                    }
                    Selector::Wildcard => next.extend(self_and_descendants(node).skip(1)),
                    other => {
                        for candidate in self_and_descendants(node) {
                            select_children(other, candidate, root, &mut next);
                        }
                    }
                },
            }
        }
        nodes = next;
    }
    nodes
}

fn children(node: &Value) -> Box<dyn Iterator<Item = &Value> + '_> {
    match node {
        Value::Object(members) => Box::new(members.values()),
        Value::Array(items) => Box::new(items.iter()),
        _ => Box::new(std::iter::empty()),
    }
}

/// The node, then every node below it, depth first in document order.
fn self_and_descendants(node: &Value) -> impl Iterator<Item = &Value> {
    let mut stack = vec![node];
    std::iter::from_fn(move || {
        let next = stack.pop()?;
        let before = stack.len();
        stack.extend(children(next));
        stack[before..].reverse();
        Some(next)
    })
}

fn select_children<'a>(
    selector: &Selector,
    node: &'a Value,
    root: &'a Value,
    out: &mut Vec<&'a Value>,
) {
    match selector {
        Selector::Names(names) => {
            if let Value::Object(members) = node {
                out.extend(names.iter().filter_map(|name| members.get(name)));
            }
        }
        Selector::Wildcard => out.extend(children(node)),
        Selector::Indices(indices) => {
            if let Value::Array(items) = node {
                for index in indices {
                    if let Some(item) =
                        resolve_index(*index, items.len()).and_then(|i| items.get(i))
                    {
                        out.push(item);
                    }
                }
            }
        }
        Selector::Slice { start, end, step } => {
            if let Value::Array(items) = node {
                out.extend(slice(items, *start, *end, *step));
            }
        }
        Selector::Filter(filter) => {
            out.extend(children(node).filter(|child| test(filter, child, root)));
        }
    }
}

fn resolve_index(index: i64, len: usize) -> Option<usize> {
    let len = i64::try_from(len).ok()?;
    let index = if index < 0 { len + index } else { index };
    usize::try_from(index).ok()
}

fn slice(items: &[Value], start: Option<i64>, end: Option<i64>, step: i64) -> Vec<&Value> {
    let len = i64::try_from(items.len()).unwrap_or(i64::MAX);
    let clamp = |bound: i64| -> i64 {
        let bound = if bound < 0 { len + bound } else { bound };
        bound.clamp(0, len)
    };
    let mut out = Vec::new();
    if step > 0 {
        let mut i = start.map_or(0, clamp);
        let end = end.map_or(len, clamp);
        while i < end {
            if let Some(item) = usize::try_from(i).ok().and_then(|i| items.get(i)) {
                out.push(item);
            }
            i += step;
        }
    } else if step < 0 {
        let mut i = start.map_or(len - 1, |s| clamp(s).min(len - 1));
        let end = end.map_or(-1, clamp);
        while i > end {
            if let Some(item) = usize::try_from(i).ok().and_then(|i| items.get(i)) {
                out.push(item);
            }
            i += step;
        }
    }
    out
}

fn test(filter: &Filter, current: &Value, root: &Value) -> bool {
    match filter {
        Filter::Or(left, right) => test(left, current, root) || test(right, current, root),
        Filter::And(left, right) => test(left, current, root) && test(right, current, root),
        Filter::Not(inner) => !test(inner, current, root),
        Filter::Exists(query) => !evaluate(query, current, root).is_empty(),
        Filter::Compare(left, comparison, right) => {
            let left = operand(left, current, root);
            let right = operand(right, current, root);
            // As Json.NET: true when any pair of the two sides' tokens compares true.
            left.iter()
                .any(|l| right.iter().any(|r| compare(l, *comparison, r)))
        }
    }
}

fn evaluate<'a>(query: &Query, current: &'a Value, root: &'a Value) -> Vec<&'a Value> {
    let start = if query.from_root { root } else { current };
    apply(&query.segments, root, start)
}

fn operand<'a>(operand: &'a Operand, current: &'a Value, root: &'a Value) -> Vec<&'a Value> {
    match operand {
        Operand::Query(query) => evaluate(query, current, root),
        Operand::Literal(value) => vec![value],
    }
}

fn compare(left: &Value, comparison: Comparison, right: &Value) -> bool {
    use std::cmp::Ordering;
    let ordering = match (left, right) {
        (Value::Number(l), Value::Number(r)) => match (l.as_f64(), r.as_f64()) {
            (Some(l), Some(r)) => l.partial_cmp(&r),
            _ => None,
        },
        (Value::String(l), Value::String(r)) => Some(l.cmp(r)),
        (Value::Bool(l), Value::Bool(r)) if l == r => Some(Ordering::Equal),
        (Value::Null, Value::Null) => Some(Ordering::Equal),
        _ => None,
    };
    match comparison {
        Comparison::Equal => ordering == Some(Ordering::Equal),
        Comparison::NotEqual => ordering != Some(Ordering::Equal),
        Comparison::Less => ordering == Some(Ordering::Less),
        Comparison::LessOrEqual => matches!(ordering, Some(Ordering::Less | Ordering::Equal)),
        Comparison::Greater => ordering == Some(Ordering::Greater),
        Comparison::GreaterOrEqual => {
            matches!(ordering, Some(Ordering::Greater | Ordering::Equal))
        }
    }
}

struct Parser {
    chars: Vec<char>,
    at: usize,
    depth: usize,
    /// Filter nodes made so far.
    nodes: usize,
}

impl Parser {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }

    fn peek_at(&self, offset: usize) -> Option<char> {
        self.chars.get(self.at + offset).copied()
    }

    fn error(&self, what: &str) -> String {
        match self.peek() {
            Some(c) => format!("{what} at character {} ('{c}')", self.at + 1),
            None => format!("{what} at the end"),
        }
    }

    fn skip_space(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.at += 1;
        }
    }

    fn eat(&mut self, expected: char) -> Result<(), String> {
        if self.peek() == Some(expected) {
            self.at += 1;
            Ok(())
        } else {
            Err(self.error(&format!("expected '{expected}'")))
        }
    }

    /// Segments until the path ends; inside a filter a path also ends at an operator,
    /// a space or a closing parenthesis.
    fn segments(&mut self, in_filter: bool) -> Result<Vec<Segment>, String> {
        let mut segments = Vec::new();
        // `@name` and a bare leading `name` start with a member name.
        if self.peek().is_some_and(|c| starts_name(c, in_filter)) {
            segments.push(Segment::Child(Selector::Names(vec![self.name(in_filter)?])));
        }
        loop {
            match self.peek() {
                Some('.') if self.peek_at(1) == Some('.') => {
                    self.at += 2;
                    let selector = match self.peek() {
                        Some('[') => self.bracket()?,
                        Some('*') => {
                            self.at += 1;
                            Selector::Wildcard
                        }
                        Some(c) if starts_name(c, in_filter) => {
                            Selector::Names(vec![self.name(in_filter)?])
                        }
                        _ => return Err(self.error("expected a name, '*' or '[' after '..'")),
                    };
                    segments.push(Segment::Descendant(selector));
                }
                Some('.') => {
                    self.at += 1;
                    let selector = match self.peek() {
                        Some('*') => {
                            self.at += 1;
                            Selector::Wildcard
                        }
                        Some(c) if starts_name(c, in_filter) => {
                            Selector::Names(vec![self.name(in_filter)?])
                        }
                        _ => return Err(self.error("expected a name or '*' after '.'")),
                    };
                    segments.push(Segment::Child(selector));
                }
                Some('[') => segments.push(Segment::Child(self.bracket()?)),
                _ => return Ok(segments),
            }
        }
    }

    fn name(&mut self, in_filter: bool) -> Result<String, String> {
        let start = self.at;
        while self.peek().is_some_and(|c| continues_name(c, in_filter)) {
            self.at += 1;
        }
        let name: String = self.chars[start..self.at].iter().collect();
        let name = name.trim_end().to_owned();
        if name.is_empty() {
            return Err(self.error("expected a member name"));
        }
        Ok(name)
    }

    fn bracket(&mut self) -> Result<Selector, String> {
        self.eat('[')?;
        self.skip_space();
        let selector = match self.peek() {
            Some('*') => {
                self.at += 1;
                Selector::Wildcard
            }
            Some('?') => {
                self.at += 1;
                self.skip_space();
                self.eat('(')?;
                self.depth += 1;
                if self.depth > MAX_NESTING {
                    return Err(self.error("filters nested too deeply"));
                }
                let filter = self.or()?;
                self.depth -= 1;
                self.skip_space();
                self.eat(')')?;
                Selector::Filter(Box::new(filter))
            }
            Some('\'' | '"') => {
                let mut names = vec![self.quoted()?];
                self.skip_space();
                while self.peek() == Some(',') {
                    self.at += 1;
                    self.skip_space();
                    names.push(self.quoted()?);
                    self.skip_space();
                }
                Selector::Names(names)
            }
            Some(c) if c == '-' || c == ':' || c.is_ascii_digit() => self.indices()?,
            _ => return Err(self.error("expected '*', '?(', a quoted name or an index")),
        };
        self.skip_space();
        self.eat(']')?;
        Ok(selector)
    }

    fn indices(&mut self) -> Result<Selector, String> {
        let first = self.optional_integer()?;
        self.skip_space();
        if self.peek() == Some(':') {
            self.at += 1;
            self.skip_space();
            let end = self.optional_integer()?;
            self.skip_space();
            let mut step = 1;
            if self.peek() == Some(':') {
                self.at += 1;
                self.skip_space();
                step = self.optional_integer()?.unwrap_or(1);
                if step == 0 {
                    return Err(self.error("a slice's step cannot be 0"));
                }
            }
            return Ok(Selector::Slice {
                start: first,
                end,
                step,
            });
        }
        let mut indices = vec![first.ok_or_else(|| self.error("expected an index"))?];
        while self.peek() == Some(',') {
            self.at += 1;
            self.skip_space();
            indices.push(
                self.optional_integer()?
                    .ok_or_else(|| self.error("expected an index"))?,
            );
            self.skip_space();
        }
        Ok(Selector::Indices(indices))
    }

    fn optional_integer(&mut self) -> Result<Option<i64>, String> {
        let start = self.at;
        if self.peek() == Some('-') {
            self.at += 1;
        }
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.at += 1;
        }
        if self.at == start {
            return Ok(None);
        }
        let text: String = self.chars[start..self.at].iter().collect();
        text.parse()
            .map(Some)
            .map_err(|_| format!("'{text}' at character {} is not an index", start + 1))
    }

    fn quoted(&mut self) -> Result<String, String> {
        let quote = match self.peek() {
            Some(q @ ('\'' | '"')) => q,
            _ => return Err(self.error("expected a quoted string")),
        };
        self.at += 1;
        let mut text = String::new();
        loop {
            match self.peek() {
                None => return Err(self.error("unterminated string")),
                Some('\\') => {
                    self.at += 1;
                    let escaped = self
                        .peek()
                        .ok_or_else(|| self.error("unterminated string"))?;
                    text.push(match escaped {
                        'n' => '\n',
                        't' => '\t',
                        'r' => '\r',
                        other => other,
                    });
                    self.at += 1;
                }
                Some(c) if c == quote => {
                    self.at += 1;
                    return Ok(text);
                }
                Some(c) => {
                    text.push(c);
                    self.at += 1;
                }
            }
        }
    }

    /// Counts one more filter node, refusing a filter with too many.
    fn node(&mut self) -> Result<(), String> {
        self.nodes += 1;
        if self.nodes > MAX_FILTER_NODES {
            return Err(self.error(&format!(
                "more than {MAX_FILTER_NODES} tests and operators in the filters"
            )));
        }
        Ok(())
    }

    fn or(&mut self) -> Result<Filter, String> {
        let mut left = self.and()?;
        loop {
            self.skip_space();
            if self.peek() == Some('|') && self.peek_at(1) == Some('|') {
                self.at += 2;
                self.node()?;
                let right = self.and()?;
                left = Filter::Or(Box::new(left), Box::new(right));
            } else {
                return Ok(left);
            }
        }
    }

    fn and(&mut self) -> Result<Filter, String> {
        let mut left = self.unary()?;
        loop {
            self.skip_space();
            if self.peek() == Some('&') && self.peek_at(1) == Some('&') {
                self.at += 2;
                self.node()?;
                let right = self.unary()?;
                left = Filter::And(Box::new(left), Box::new(right));
            } else {
                return Ok(left);
            }
        }
    }

    fn unary(&mut self) -> Result<Filter, String> {
        self.skip_space();
        match self.peek() {
            Some('!') if self.peek_at(1) != Some('=') => {
                self.at += 1;
                self.node()?;
                self.depth += 1;
                if self.depth > MAX_NESTING {
                    return Err(self.error("negations nested too deeply"));
                }
                let inner = self.unary()?;
                self.depth -= 1;
                Ok(Filter::Not(Box::new(inner)))
            }
            Some('(') => {
                self.at += 1;
                self.depth += 1;
                if self.depth > MAX_NESTING {
                    return Err(self.error("parentheses nested too deeply"));
                }
                let inner = self.or()?;
                self.depth -= 1;
                self.skip_space();
                self.eat(')')?;
                Ok(inner)
            }
            _ => self.comparison(),
        }
    }

    fn comparison(&mut self) -> Result<Filter, String> {
        self.node()?;
        let left = self.operand()?;
        self.skip_space();
        let comparison = match (self.peek(), self.peek_at(1)) {
            (Some('='), Some('=')) => Some((Comparison::Equal, 2)),
            (Some('!'), Some('=')) => Some((Comparison::NotEqual, 2)),
            (Some('<'), Some('=')) => Some((Comparison::LessOrEqual, 2)),
            (Some('>'), Some('=')) => Some((Comparison::GreaterOrEqual, 2)),
            (Some('<'), _) => Some((Comparison::Less, 1)),
            (Some('>'), _) => Some((Comparison::Greater, 1)),
            (Some('='), Some('~')) => {
                return Err(self.error("the regular-expression operator =~ is not supported"));
            }
            _ => None,
        };
        let Some((comparison, width)) = comparison else {
            return match left {
                Operand::Query(query) => Ok(Filter::Exists(query)),
                Operand::Literal(_) => Err(self.error("a literal alone is not a test")),
            };
        };
        self.at += width;
        self.skip_space();
        let right = self.operand()?;
        Ok(Filter::Compare(left, comparison, right))
    }

    fn operand(&mut self) -> Result<Operand, String> {
        self.skip_space();
        match self.peek() {
            Some(root @ ('@' | '$')) => {
                self.at += 1;
                let segments = self.segments(true)?;
                Ok(Operand::Query(Query {
                    from_root: root == '$',
                    segments,
                }))
            }
            Some('\'' | '"') => Ok(Operand::Literal(Value::String(self.quoted()?))),
            Some(c) if c == '-' || c.is_ascii_digit() => {
                let start = self.at;
                while self
                    .peek()
                    .is_some_and(|c| c.is_ascii_digit() || matches!(c, '-' | '+' | '.' | 'e' | 'E'))
                {
                    self.at += 1;
                }
                let text: String = self.chars[start..self.at].iter().collect();
                serde_json::from_str::<serde_json::Number>(&text)
                    .map(|number| Operand::Literal(Value::Number(number)))
                    .map_err(|_| format!("'{text}' at character {} is not a number", start + 1))
            }
            _ => {
                for (word, value) in [
                    ("true", Value::Bool(true)),
                    ("false", Value::Bool(false)),
                    ("null", Value::Null),
                ] {
                    let end = self.at + word.len();
                    if self.chars.len() >= end
                        && self.chars[self.at..end].iter().copied().eq(word.chars())
                    {
                        self.at = end;
                        return Ok(Operand::Literal(value));
                    }
                }
                Err(self.error("expected '@', '$', a number, a quoted string, true, false or null"))
            }
        }
    }
}

fn starts_name(c: char, in_filter: bool) -> bool {
    continues_name(c, in_filter) && c != '*' && !c.is_whitespace()
}

fn continues_name(c: char, in_filter: bool) -> bool {
    let ends_anywhere = matches!(c, '.' | '[' | ']' | '(' | ')' | '\'' | '"');
    let ends_in_filter = c.is_whitespace() || matches!(c, '=' | '!' | '<' | '>' | '&' | '|' | ',');
    !(ends_anywhere || (in_filter && ends_in_filter))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use serde_json::json;

    fn select(path: &str, value: &Value) -> Vec<Value> {
        JsonPath::parse(path)
            .unwrap()
            .select(value)
            .into_iter()
            .cloned()
            .collect()
    }

    #[test]
    fn a_descendant_filter_tests_the_start_node_too() {
        let message = json!({"Body": {"heartrate": "78"}, "Properties": {}});
        assert_eq!(
            select("$..[?(@Body.heartrate)]", &message),
            vec![message.clone()]
        );
        assert_eq!(
            select("$..[?(@heartrate)]", &message),
            vec![json!({"heartrate": "78"})]
        );
    }

    #[test]
    fn descendants_come_in_document_order() {
        let message = json!({"Body": [{"hr": 1, "inner": {"hr": 2}}, {"hr": 3}]});
        let found: Vec<Value> = select("$..[?(@hr)]", &message)
            .into_iter()
            .map(|token| token["hr"].clone())
            .collect();
        assert_eq!(found, vec![json!(1), json!(2), json!(3)]);
        assert_eq!(
            select("$..hr", &message),
            vec![json!(1), json!(2), json!(3)]
        );
    }

    #[test]
    fn filters_compare_strings_numbers_and_combine() {
        let message = json!({"Body": [
            {"height": "78", "unit": "inches"},
            {"height": "1.93", "unit": "meters", "n": 5}
        ]});
        assert_eq!(
            select("$..[?(@unit == 'inches')].height", &message),
            vec![json!("78")]
        );
        assert_eq!(
            select("$..[?(@n >= 5 && @unit != \"x\")].unit", &message),
            vec![json!("meters")]
        );
        assert_eq!(
            select("$.Body[?(@n < 5 || !@n)].unit", &message),
            vec![json!("inches")]
        );
        // A missing member compares false, even with !=.
        assert!(select("$.Body[?(@missing != 1)]", &message).is_empty());
    }

    #[test]
    fn names_with_dashes_brackets_indices_and_slices() {
        let message = json!({"SystemProperties": {"iothub-connection-device-id": "d1"},
                             "a": [0, 1, 2, 3, 4], "b c": true});
        assert_eq!(
            select("$.SystemProperties.iothub-connection-device-id", &message),
            vec![json!("d1")]
        );
        assert_eq!(select("$['b c']", &message), vec![json!(true)]);
        assert_eq!(select("$.a[-1]", &message), vec![json!(4)]);
        assert_eq!(select("$.a[1,3]", &message), vec![json!(1), json!(3)]);
        assert_eq!(select("$.a[1:4:2]", &message), vec![json!(1), json!(3)]);
        assert_eq!(
            select("$.a[::-2]", &message),
            vec![json!(4), json!(2), json!(0)]
        );
        assert_eq!(select("a[0]", &message), vec![json!(0)]);
    }

    #[test]
    fn malformed_paths_say_where() {
        for (path, expected) in [
            ("", "empty"),
            ("$..[?(@heartrate]", "expected ')'"),
            ("$..[?(@heartrate)", "expected ']' at the end"),
            ("$.a[?(@x =~ /y/)]", "=~ is not supported"),
            (
                "$.a[",
                "expected '*', '?(', a quoted name or an index at the end",
            ),
            ("$.a['x", "unterminated string"),
            ("$.a[0:1:0]", "step cannot be 0"),
            ("$.a]", "unexpected text at character 4"),
        ] {
            let error = JsonPath::parse(path).unwrap_err();
            assert!(error.contains(expected), "{path}: {error}");
        }
        let deep = format!("$[?({}@a{})]", "(".repeat(40), ")".repeat(40));
        assert!(JsonPath::parse(&deep).unwrap_err().contains("too deeply"));
        let negated = format!("$[?({}@a)]", "!".repeat(40));
        assert!(
            JsonPath::parse(&negated)
                .unwrap_err()
                .contains("too deeply")
        );
        let long = format!("$[?(@a{})]", " || @b".repeat(200));
        assert!(
            JsonPath::parse(&long)
                .unwrap_err()
                .contains("more than 128 tests")
        );
    }
}
