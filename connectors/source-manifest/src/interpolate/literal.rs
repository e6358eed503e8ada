//! Python's `ast.literal_eval` and `str()`/`repr()`, as far as interpolation results need them.
//!
//! The CDK renders a template to text and then, if the text is a Python literal, uses its
//! value: `"{{ 5 }}"` is the integer 5, `"['a', 'b']"` a list, `"True"` a boolean, `"'x'"` the
//! string `x`. Complex numbers stay text. Values going back into text (a query parameter, a
//! header) are written as Python's `str()` writes them (`True`, `None`, `['a']`).

use serde_json::{Map, Number, Value};

/// The value of `text` as a Python literal, or `None` when it is not one.
pub fn literal_eval(text: &str) -> Option<Value> {
    // Python 3.10+ strips leading spaces and tabs before parsing.
    let text = text.trim_start_matches([' ', '\t']);
    let mut p = Parser {
        s: text.as_bytes(),
        i: 0,
    };
    let v = p.value()?;
    p.ws();
    (p.i == p.s.len()).then_some(v)
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && matches!(self.s[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> bool {
        self.ws();
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn value(&mut self) -> Option<Value> {
        self.ws();
        match self.peek()? {
            b'[' => {
                self.i += 1;
                self.items(b']').map(Value::Array)
            }
            b'(' => {
                self.i += 1;
                // `(x)` is x; `(x,)` and `(x, y)` are tuples.
                let start = self.i;
                if let Some(v) = self.value() {
                    if self.eat(b')') {
                        return Some(v);
                    }
                }
                self.i = start;
                self.items(b')').map(Value::Array)
            }
            b'{' => {
                self.i += 1;
                self.mapping()
            }
            b'\'' | b'"' => self.string().map(Value::String),
            b'-' | b'+' => {
                let neg = self.peek() == Some(b'-');
                self.i += 1;
                match self.value()? {
                    Value::Number(n) if neg => negate(&n),
                    v @ Value::Number(_) => Some(v),
                    _ => None,
                }
            }
            c if c.is_ascii_digit() || c == b'.' => self.number(),
            _ => self.word(),
        }
    }

    fn items(&mut self, close: u8) -> Option<Vec<Value>> {
        let mut out = Vec::new();
        loop {
            if self.eat(close) {
                return Some(out);
            }
            out.push(self.value()?);
            if !self.eat(b',') {
                return self.eat(close).then_some(out);
            }
        }
    }

    fn mapping(&mut self) -> Option<Value> {
        let mut out = Map::new();
        let mut set = Vec::new();
        loop {
            if self.eat(b'}') {
                return Some(if set.is_empty() {
                    Value::Object(out)
                } else {
                    Value::Array(set)
                });
            }
            let key = self.value()?;
            if self.eat(b':') {
                if !set.is_empty() {
                    return None;
                }
                let value = self.value()?;
                let key = match key {
                    Value::String(s) => s,
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => py_str(&Value::Bool(b)),
                    Value::Null => "None".into(),
                    _ => return None,
                };
                out.insert(key, value);
            } else {
                if !out.is_empty() {
                    return None;
                }
                set.push(key);
            }
            if !self.eat(b',') {
                if !self.eat(b'}') {
                    return None;
                }
                return Some(if set.is_empty() {
                    Value::Object(out)
                } else {
                    Value::Array(set)
                });
            }
        }
    }

    fn string(&mut self) -> Option<String> {
        let mut out = String::new();
        // Adjacent literals concatenate: `'a' 'b'` is `'ab'`.
        loop {
            out.push_str(&self.one_string()?);
            let save = self.i;
            self.ws();
            if !matches!(self.peek(), Some(b'\'' | b'"')) {
                self.i = save;
                return Some(out);
            }
        }
    }

    fn one_string(&mut self) -> Option<String> {
        let q = self.peek()?;
        let triple = self.s[self.i..].starts_with(&[q, q, q]);
        self.i += if triple { 3 } else { 1 };
        let mut out = Vec::new();
        loop {
            let c = self.peek()?;
            if triple && self.s[self.i..].starts_with(&[q, q, q]) {
                self.i += 3;
                break;
            }
            if !triple && c == q {
                self.i += 1;
                break;
            }
            if !triple && c == b'\n' {
                return None;
            }
            self.i += 1;
            if c == b'\\' {
                let e = self.peek()?;
                self.i += 1;
                match e {
                    b'n' => out.push(b'\n'),
                    b't' => out.push(b'\t'),
                    b'r' => out.push(b'\r'),
                    b'0' => out.push(0),
                    b'\\' | b'\'' | b'"' => out.push(e),
                    b'\n' => {}
                    b'x' | b'u' => {
                        let n = if e == b'x' { 2 } else { 4 };
                        let hex = std::str::from_utf8(self.s.get(self.i..self.i + n)?).ok()?;
                        let ch = char::from_u32(u32::from_str_radix(hex, 16).ok()?)?;
                        self.i += n;
                        out.extend_from_slice(ch.to_string().as_bytes());
                    }
                    other => {
                        out.push(b'\\');
                        out.push(other);
                    }
                }
            } else {
                out.push(c);
            }
        }
        String::from_utf8(out).ok()
    }

    fn number(&mut self) -> Option<Value> {
        let start = self.i;
        while self.i < self.s.len()
            && (self.s[self.i].is_ascii_alphanumeric() || matches!(self.s[self.i], b'.' | b'_'))
        {
            // An exponent's sign belongs to the number.
            if matches!(self.s[self.i], b'e' | b'E')
                && matches!(self.s.get(self.i + 1), Some(b'+' | b'-'))
            {
                self.i += 1;
            }
            self.i += 1;
        }
        let raw = std::str::from_utf8(&self.s[start..self.i]).ok()?;
        if raw.starts_with('_') || raw.ends_with('_') || raw.contains("__") {
            return None;
        }
        let text = raw.replace('_', "");
        let lower = text.to_ascii_lowercase();
        if lower.ends_with('j') {
            return None; // complex: the CDK keeps the text
        }
        for (prefix, radix) in [("0x", 16), ("0o", 8), ("0b", 2)] {
            if let Some(digits) = lower.strip_prefix(prefix) {
                return i64::from_str_radix(digits, radix)
                    .ok()
                    .map(|n| Value::Number(n.into()));
            }
        }
        if text.bytes().all(|b| b.is_ascii_digit()) {
            // Python rejects leading zeros in decimal integers (`007`), except for zero itself.
            if text.len() > 1 && text.starts_with('0') && text.bytes().any(|b| b != b'0') {
                return None;
            }
            return match text.parse::<i64>() {
                Ok(n) => Some(Value::Number(n.into())),
                // Beyond i64: keep the digits as text rather than lose precision.
                Err(_) => None,
            };
        }
        let f: f64 = text.parse().ok()?;
        Number::from_f64(f).map(Value::Number)
    }

    fn word(&mut self) -> Option<Value> {
        let start = self.i;
        while self.i < self.s.len()
            && (self.s[self.i].is_ascii_alphanumeric() || self.s[self.i] == b'_')
        {
            self.i += 1;
        }
        match &self.s[start..self.i] {
            b"True" => Some(Value::Bool(true)),
            b"False" => Some(Value::Bool(false)),
            b"None" => Some(Value::Null),
            _ => None,
        }
    }
}

fn negate(n: &Number) -> Option<Value> {
    if let Some(i) = n.as_i64() {
        return Some(Value::Number((-i).into()));
    }
    Number::from_f64(-n.as_f64()?).map(Value::Number)
}

/// Python's `str()` of a value.
pub fn py_str(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => py_repr(other),
    }
}

/// Python's `repr()` of a value.
pub fn py_repr(v: &Value) -> String {
    match v {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Number(n) => py_number(n),
        Value::String(s) => {
            let q = if s.contains('\'') && !s.contains('"') {
                '"'
            } else {
                '\''
            };
            let mut out = String::from(q);
            for c in s.chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    '\t' => out.push_str("\\t"),
                    '\r' => out.push_str("\\r"),
                    c if c == q => {
                        out.push('\\');
                        out.push(c);
                    }
                    c => out.push(c),
                }
            }
            out.push(q);
            out
        }
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(py_repr).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(map) => format!(
            "{{{}}}",
            map.iter()
                .map(|(k, v)| format!("{}: {}", py_repr(&Value::String(k.clone())), py_repr(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn py_number(n: &Number) -> String {
    if n.is_f64() {
        let f = n.as_f64().unwrap_or_default();
        if f.fract() == 0.0 && f.abs() < 1e16 {
            format!("{f:.1}")
        } else {
            format!("{f}")
        }
    } else {
        n.to_string()
    }
}

/// Python's `json.dumps` (default separators `", "` and `": "`, non-ASCII escaped).
pub fn json_dumps(v: &Value) -> String {
    match v {
        Value::String(s) => {
            let mut out = String::from('"');
            for c in s.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    '\t' => out.push_str("\\t"),
                    c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                        let mut buf = [0u16; 2];
                        for unit in c.encode_utf16(&mut buf) {
                            out.push_str(&format!("\\u{unit:04x}"));
                        }
                    }
                    c => out.push(c),
                }
            }
            out.push('"');
            out
        }
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => py_number(n),
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(json_dumps).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(map) => format!(
            "{{{}}}",
            map.iter()
                .map(|(k, v)| format!(
                    "{}: {}",
                    json_dumps(&Value::String(k.clone())),
                    json_dumps(v)
                ))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn python_literals() {
        let cases = [
            ("5", Some(json!(5))),
            (" -5", Some(json!(-5))),
            ("1_000", Some(json!(1000))),
            ("1.5e3", Some(json!(1500.0))),
            ("0x10", Some(json!(16))),
            ("True", Some(json!(true))),
            ("None", Some(json!(null))),
            ("'a'", Some(json!("a"))),
            ("\"\"\"{\"a\": 1}\"\"\"", Some(json!("{\"a\": 1}"))),
            ("['a', 1, [True]]", Some(json!(["a", 1, [true]]))),
            ("('a',)", Some(json!(["a"]))),
            ("(5)", Some(json!(5))),
            ("{'a': 1, 2: None}", Some(json!({"a": 1, "2": null}))),
            ("{}", Some(json!({}))),
            ("2024-01-01", None),
            ("007", None),
            ("1j", None),
            ("abc", None),
            ("true", None),
            ("5 5", None),
            ("99999999999999999999", None),
        ];
        for (text, want) in cases {
            assert_eq!(literal_eval(text), want, "{text}");
        }
    }

    #[test]
    fn python_str_and_json_dumps() {
        assert_eq!(
            py_str(&json!(["a", true, null, 1.0])),
            "['a', True, None, 1.0]"
        );
        assert_eq!(py_str(&json!({"k": "it's"})), "{'k': \"it's\"}");
        assert_eq!(
            json_dumps(&json!({"a": [1, "é"]})),
            "{\"a\": [1, \"\\u00e9\"]}"
        );
    }
}
