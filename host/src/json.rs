//! [`Json`]: a task's value kept as the JSON text it arrived as, parsed only on demand.
//!
//! A value a guest returns is text. Parsing it into a `serde_json::Value` costs about sixteen
//! times its size in host memory and forgets the guest's key order; keeping the validated,
//! compact text costs its size once, keeps the order, and is written to a result row as it is.

use std::fmt;
use std::sync::Arc;

use parking_lot::Mutex;
use serde::de::{self, Deserialize, Deserializer, IgnoredAny, Visitor};
use serde::{Serialize, Serializer};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::engine::budget::{Charge, MemoryBudget};

/// A JSON value kept as validated, compact text: what a task returned, in the guest's own key
/// order, parsed only when asked ([`get`](Self::get), [`to_value`](Self::to_value)).
///
/// A `Json` made from text (what a guest returned, a report from a worker process or a node)
/// or from a serializable value is well-formed JSON that `serde_json` parses with its default
/// limits — at most 127 nested arrays and objects, numbers in range — written without
/// insignificant whitespace, so that it fits on one line of a JSON-lines file. (One made from
/// a `serde_json::Value` is that value as it is.) Cloning is cheap: clones share the text.
///
/// Two values are equal when they are the same JSON value, whatever their key order; compare
/// [`as_str`](Self::as_str) for the exact text. A `Json` also compares with a
/// `serde_json::Value`.
///
/// ```
/// use osiiso_host::Json;
/// use serde_json::{Value, json};
///
/// let value = Json::parse(r#"{ "zebra": 1, "apple": [true, null] }"#)?;
/// assert_eq!(value.as_str(), r#"{"zebra":1,"apple":[true,null]}"#, "compact, in its own key order");
/// assert_eq!(value, json!({"apple": [true, null], "zebra": 1}));
/// assert_eq!(value.get::<std::collections::BTreeMap<String, Value>>()?.len(), 2);
/// assert!(Json::parse("[1,").is_err());
/// assert!(Json::parse(&"[".repeat(200)).is_err(), "nested too deep");
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone)]
pub struct Json {
    inner: Arc<Inner>,
}

struct Inner {
    raw: Box<RawValue>,
    /// The host's memory budget, charged for this text while it is on its way to being
    /// recorded (see [`Json::charge`]).
    charge: Mutex<Option<Charge>>,
}

impl Json {
    /// Validates and keeps `text`: it must be one JSON value (surrounding whitespace
    /// allowed) that `serde_json` parses with its default limits. Text with insignificant
    /// whitespace is kept compact; otherwise its allocation is reused.
    pub fn from_string(text: String) -> Result<Self, serde_json::Error> {
        validate(&text)?;
        let text = compact(text);
        let raw = RawValue::from_string(text)?;
        Ok(Self::from_raw(raw))
    }

    /// Like [`from_string`](Self::from_string), from borrowed text.
    pub fn parse(text: &str) -> Result<Self, serde_json::Error> {
        Self::from_string(text.to_string())
    }

    /// The JSON form of `value`.
    pub fn from_value(value: &Value) -> Self {
        // A `Value` always has a JSON form: its keys are strings.
        let text = serde_json::to_string(value).unwrap_or_else(|_| "null".into());
        Self::from_checked(text)
    }

    /// The JSON form of any serializable value, or the error that says it has none (a map
    /// with non-string keys, a failing `Serialize`) or one `serde_json` would not parse back
    /// (nested too deep).
    pub fn serialize<T: Serialize + ?Sized>(value: &T) -> Result<Self, serde_json::Error> {
        let text = serde_json::to_string(value)?;
        validate(&text)?;
        Ok(Self::from_checked(text))
    }

    /// `null`.
    pub fn null() -> Self {
        Self::from_checked("null".into())
    }

    /// Text that `serde_json` itself wrote: compact and well-formed already.
    fn from_checked(text: String) -> Self {
        match RawValue::from_string(text) {
            Ok(raw) => Self::from_raw(raw),
            Err(_) => Self::null(),
        }
    }

    fn from_raw(raw: Box<RawValue>) -> Self {
        Self {
            inner: Arc::new(Inner {
                raw,
                charge: Mutex::new(None),
            }),
        }
    }

    /// The compact JSON text.
    pub fn as_str(&self) -> &str {
        self.inner.raw.get()
    }

    /// Its size in bytes.
    pub fn len(&self) -> usize {
        self.as_str().len()
    }

    /// Whether it is empty (never: the shortest JSON text is one digit).
    pub fn is_empty(&self) -> bool {
        self.as_str().is_empty()
    }

    /// Whether it is `null`.
    pub fn is_null(&self) -> bool {
        self.as_str() == "null"
    }

    /// Parses it as a `T`.
    pub fn get<'a, T: Deserialize<'a>>(&'a self) -> Result<T, serde_json::Error> {
        serde_json::from_str(self.as_str())
    }

    /// Parses it into a `serde_json::Value` (whose maps sort their keys).
    pub fn to_value(&self) -> Value {
        // Every `Json` parses with serde_json's default limits.
        self.get().unwrap_or(Value::Null)
    }

    /// Counts this text against `budget` until it is [released](Self::release) (the queue
    /// charges a value when an attempt returns it, and releases it once the task's result is
    /// recorded and `on_complete` has returned), or until the last clone is dropped. A value
    /// charged already stays with its first budget.
    pub(crate) fn charge(&self, budget: &Arc<MemoryBudget>) {
        let mut charge = self.inner.charge.lock();
        if charge.is_none() {
            *charge = Some(budget.charge(self.len()));
        }
    }

    /// Gives back what [`charge`](Self::charge) took.
    pub(crate) fn release(&self) {
        let charge = self.inner.charge.lock().take();
        drop(charge);
    }
}

/// `null`.
impl Default for Json {
    fn default() -> Self {
        Self::null()
    }
}

impl From<Value> for Json {
    fn from(value: Value) -> Self {
        Self::from_value(&value)
    }
}

impl From<&Value> for Json {
    fn from(value: &Value) -> Self {
        Self::from_value(value)
    }
}

impl From<Json> for Value {
    fn from(json: Json) -> Self {
        json.to_value()
    }
}

impl std::str::FromStr for Json {
    type Err = serde_json::Error;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

impl fmt::Display for Json {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Json {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Json({})", self.as_str())
    }
}

impl PartialEq for Json {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str() || self.to_value() == other.to_value()
    }
}

impl PartialEq<Value> for Json {
    fn eq(&self, other: &Value) -> bool {
        self.to_value() == *other
    }
}

impl PartialEq<Json> for Value {
    fn eq(&self, other: &Json) -> bool {
        other == self
    }
}

/// Written as the JSON text itself (with `serde_json`).
impl Serialize for Json {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.inner.raw.serialize(serializer)
    }
}

/// Read from JSON without building a tree, and validated like [`Json::from_string`].
impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = Box::<RawValue>::deserialize(deserializer)?;
        let text: Box<str> = raw.into();
        Self::from_string(text.into()).map_err(de::Error::custom)
    }
}

/// Parses `text` without keeping anything: the checks of `serde_json`'s own parser (syntax,
/// UTF-8, escapes, numbers in range, its nesting limit), at the cost of one pass.
fn validate(text: &str) -> Result<(), serde_json::Error> {
    serde_json::from_str::<Checked>(text).map(drop)
}

/// Visits a value as `serde_json` parses it, keeping nothing.
struct Checked;

impl<'de> Deserialize<'de> for Checked {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(Checked)
    }
}

impl<'de> Visitor<'de> for Checked {
    type Value = Checked;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_none<E: de::Error>(self) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Checked, A::Error> {
        while seq.next_element::<Checked>()?.is_some() {}
        Ok(Checked)
    }

    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Checked, A::Error> {
        while map.next_key::<IgnoredAny>()?.is_some() {
            map.next_value::<Checked>()?;
        }
        Ok(Checked)
    }
}

/// `text` (valid JSON) without whitespace between tokens; the same allocation when there is
/// none.
fn compact(text: String) -> String {
    let bytes = text.trim().as_bytes();
    if bytes.len() == text.len() && !has_whitespace_between_tokens(bytes) {
        return text;
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut in_string = false;
    let mut escaped = false;
    for &byte in bytes {
        if in_string {
            out.push(byte);
            match (escaped, byte) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
        } else if !matches!(byte, b' ' | b'\t' | b'\n' | b'\r') {
            in_string = byte == b'"';
            out.push(byte);
        }
    }
    // Only whole ASCII whitespace bytes were left out of valid UTF-8.
    String::from_utf8(out).unwrap_or_default()
}

/// Whether valid JSON has whitespace outside its strings.
fn has_whitespace_between_tokens(bytes: &[u8]) -> bool {
    let mut in_string = false;
    let mut escaped = false;
    for &byte in bytes {
        if in_string {
            match (escaped, byte) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
        } else if matches!(byte, b' ' | b'\t' | b'\n' | b'\r') {
            return true;
        } else if byte == b'"' {
            in_string = true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keeps_the_key_order_and_drops_whitespace_outside_strings() {
        let value = Json::parse("\n { \"b\" : 1 ,\t\"a\":\"x y\\\" z\" }\r\n").unwrap();
        assert_eq!(value.as_str(), r#"{"b":1,"a":"x y\" z"}"#);
        assert_eq!(value, json!({"a": "x y\" z", "b": 1}));
        let compact = r#"{"z":[1,2],"y":"\\"}"#.to_string();
        assert_eq!(
            Json::from_string(compact.clone()).unwrap().as_str(),
            compact
        );
    }

    #[test]
    fn refuses_what_serde_json_would_not_parse() {
        for bad in [
            "",
            "[1,",
            "{\"a\" 1}",
            "1e400",
            "\"\\ud800x",
            "[] []",
            "nul",
        ] {
            assert!(Json::parse(bad).is_err(), "{bad:?} was accepted");
        }
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert!(Json::parse(&deep(127)).is_ok());
        let error = Json::parse(&deep(128)).unwrap_err();
        assert!(error.to_string().contains("recursion limit"), "{error}");
        // What is accepted always parses back.
        assert!(Json::parse(&deep(127)).unwrap().get::<Value>().is_ok());
        // So does what a native task returns, or it is refused.
        let nested = (0..200).fold(Value::Null, |inner, _| Value::Array(vec![inner]));
        assert!(Json::serialize(&nested).is_err());
        assert!(Json::serialize(&json!({"ok": [1, 2]})).is_ok());
    }

    #[test]
    fn deserializing_validates_too() {
        let ok: Json = serde_json::from_str(r#"{"x": [1, 2]}"#).unwrap();
        assert_eq!(ok.as_str(), r#"{"x":[1,2]}"#);
        let deep = format!("{}{}", "[".repeat(300), "]".repeat(300));
        assert!(serde_json::from_str::<Json>(&deep).is_err());
        assert_eq!(serde_json::to_string(&ok).unwrap(), r#"{"x":[1,2]}"#);
        assert_eq!(ok.get::<Value>().unwrap(), json!({"x": [1, 2]}));
    }

    #[test]
    fn a_charge_lasts_until_released_or_dropped() {
        let budget = MemoryBudget::new(1 << 20);
        let value = Json::parse(&format!("\"{}\"", "x".repeat(1000))).unwrap();
        value.charge(&budget);
        value.charge(&budget);
        assert_eq!(budget.used(), 1002);
        let clone = value.clone();
        drop(value);
        assert_eq!(budget.used(), 1002, "a clone keeps the charge");
        clone.release();
        assert_eq!(budget.used(), 0);
        let dropped = Json::parse("[1,2,3]").unwrap();
        dropped.charge(&budget);
        assert_eq!(budget.used(), 7);
        drop(dropped);
        assert_eq!(budget.used(), 0);
    }
}
