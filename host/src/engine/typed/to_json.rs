//! Component values → JSON text, written straight from the [`Val`]s with serde_json's
//! serializer (no intermediate `serde_json::Value`), into a buffer that refuses to grow past a
//! bound. The mapping is the inverse of [`from_json`](super::from_json): records are objects
//! keyed by WIT field names, variants `"case"` or `{"case": payload}`, results `{"ok": v}` or
//! `{"err": e}`, `some(x)` of a nested option `{"some": x}`, floats that JSON cannot hold
//! `"NaN"`, `"Infinity"`, `"-Infinity"`, and 64-bit integers exact.

use std::io;

use serde::Serialize;
use serde::ser::{Error as _, SerializeMap, SerializeSeq, Serializer};
use wasmtime::component::Val;

/// The most JSON text one typed call may produce (the process protocol's frame bound).
pub(crate) const MAX_VALUE_BYTES: usize = 64 << 20;

/// Why a value could not be written.
#[derive(Debug)]
pub(crate) enum WriteError {
    /// Its JSON is longer than the bound.
    TooLarge(usize),
    /// A value JSON cannot hold (a map or a resource; discovery keeps those out).
    Unsupported(String),
}

impl std::fmt::Display for WriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::TooLarge(limit) => write!(
                f,
                "its JSON is larger than the {} limit for values",
                crate::units::format_size(*limit)
            ),
            Self::Unsupported(what) => write!(f, "{what} cannot be written as JSON"),
        }
    }
}

/// The JSON text of `val`, or `null` for no value.
pub(crate) fn to_json(val: Option<&Val>, limit: usize) -> Result<String, WriteError> {
    let mut out = Bounded {
        buf: Vec::new(),
        limit,
    };
    let written = match val {
        Some(val) => serde_json::to_writer(&mut out, &Json(val)),
        None => serde_json::to_writer(&mut out, &()),
    };
    match written {
        Ok(()) => Ok(String::from_utf8(out.buf).expect("serde_json writes UTF-8")),
        Err(e) if e.is_io() => Err(WriteError::TooLarge(limit)),
        Err(e) => Err(WriteError::Unsupported(e.to_string())),
    }
}

/// A byte buffer that fails a write past `limit`.
struct Bounded {
    buf: Vec<u8>,
    limit: usize,
}

impl io::Write for Bounded {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.buf.len() + data.len() > self.limit {
            return Err(io::Error::other("value too large"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A value, serialized as the mapping says.
struct Json<'a>(&'a Val);

impl Serialize for Json<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Val::Bool(b) => s.serialize_bool(*b),
            Val::S8(n) => s.serialize_i8(*n),
            Val::U8(n) => s.serialize_u8(*n),
            Val::S16(n) => s.serialize_i16(*n),
            Val::U16(n) => s.serialize_u16(*n),
            Val::S32(n) => s.serialize_i32(*n),
            Val::U32(n) => s.serialize_u32(*n),
            Val::S64(n) => s.serialize_i64(*n),
            Val::U64(n) => s.serialize_u64(*n),
            Val::Float32(x) => match special(f64::from(*x)) {
                Some(text) => s.serialize_str(text),
                None => s.serialize_f32(*x),
            },
            Val::Float64(x) => match special(*x) {
                Some(text) => s.serialize_str(text),
                None => s.serialize_f64(*x),
            },
            Val::Char(c) => s.serialize_char(*c),
            Val::String(text) => s.serialize_str(text),
            Val::List(items) | Val::Tuple(items) | Val::FixedLengthList(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(&Json(item))?;
                }
                seq.end()
            }
            Val::Record(fields) => {
                let mut map = s.serialize_map(Some(fields.len()))?;
                for (name, value) in fields {
                    map.serialize_entry(name, &Json(value))?;
                }
                map.end()
            }
            Val::Variant(case, None) | Val::Enum(case) => s.serialize_str(case),
            Val::Variant(case, Some(payload)) => one_entry(s, case, Some(payload)),
            Val::Option(None) => s.serialize_unit(),
            Val::Option(Some(inner)) => match &**inner {
                // `some(x)` of an option of an option keeps its level: `{"some": x}`.
                Val::Option(_) => one_entry(s, "some", Some(inner)),
                _ => Json(inner).serialize(s),
            },
            Val::Result(Ok(payload)) => one_entry(s, "ok", payload.as_deref()),
            Val::Result(Err(payload)) => one_entry(s, "err", payload.as_deref()),
            Val::Flags(names) => {
                let mut seq = s.serialize_seq(Some(names.len()))?;
                for name in names {
                    seq.serialize_element(name)?;
                }
                seq.end()
            }
            Val::Map(_)
            | Val::Resource(_)
            | Val::Future(_)
            | Val::Stream(_)
            | Val::ErrorContext(_) => Err(S::Error::custom(
                "a map, resource, future, stream or error-context",
            )),
        }
    }
}

/// `{"key": payload}` (`null` for no payload).
fn one_entry<S: Serializer>(s: S, key: &str, payload: Option<&Val>) -> Result<S::Ok, S::Error> {
    let mut map = s.serialize_map(Some(1))?;
    match payload {
        Some(payload) => map.serialize_entry(key, &Json(payload))?,
        None => map.serialize_entry(key, &())?,
    }
    map.end()
}

/// The string a float that JSON numbers cannot hold is written as.
fn special(x: f64) -> Option<&'static str> {
    if x.is_nan() {
        Some("NaN")
    } else if x == f64::INFINITY {
        Some("Infinity")
    } else if x == f64::NEG_INFINITY {
        Some("-Infinity")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(val: &Val) -> String {
        to_json(Some(val), MAX_VALUE_BYTES).unwrap()
    }

    #[test]
    fn scalars_are_exact() {
        assert_eq!(json(&Val::U64(u64::MAX)), "18446744073709551615");
        assert_eq!(json(&Val::S64(i64::MIN)), "-9223372036854775808");
        assert_eq!(json(&Val::Float64(f64::NAN)), "\"NaN\"");
        assert_eq!(json(&Val::Float32(f32::NEG_INFINITY)), "\"-Infinity\"");
        assert_eq!(json(&Val::Float32(0.1)), "0.1");
        assert_eq!(json(&Val::Char('é')), "\"é\"");
        assert_eq!(to_json(None, 10).unwrap(), "null");
    }

    #[test]
    fn options_results_and_variants() {
        let some = |v: Val| Val::Option(Some(Box::new(v)));
        assert_eq!(json(&some(Val::U32(3))), "3");
        assert_eq!(json(&some(Val::Option(None))), "{\"some\":null}");
        assert_eq!(json(&some(some(Val::U32(3)))), "{\"some\":3}");
        assert_eq!(json(&Val::Result(Ok(None))), "{\"ok\":null}");
        assert_eq!(
            json(&Val::Result(Err(Some(Box::new(Val::String("no".into())))))),
            "{\"err\":\"no\"}"
        );
        assert_eq!(json(&Val::Variant("dot".into(), None)), "\"dot\"");
        assert_eq!(
            json(&Val::Variant(
                "circle".into(),
                Some(Box::new(Val::Float64(1.5)))
            )),
            "{\"circle\":1.5}"
        );
        assert_eq!(
            json(&Val::Flags(vec!["bold".into(), "italic".into()])),
            "[\"bold\",\"italic\"]"
        );
    }

    #[test]
    fn text_past_the_limit_is_refused() {
        let big = Val::List(vec![Val::U8(255); 1000]);
        assert!(matches!(
            to_json(Some(&big), 100),
            Err(WriteError::TooLarge(100))
        ));
        assert!(to_json(Some(&big), 4001).is_ok());
    }
}
