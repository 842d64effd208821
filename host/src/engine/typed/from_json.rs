//! JSON input → component values, guided by the function's own WIT types. Whatever does not
//! fit is an [`InputError`] that names the path to the offending value
//! (`values[2]: expected f64, got "x"`), found before the guest runs.
//!
//! Recursion follows the WIT type, whose nesting the component model bounds (100 levels), not
//! the JSON value.

use std::fmt;

use serde_json::{Map, Value};
use wasmtime::component::types::{ComponentFunc, Record, Variant};
use wasmtime::component::{Type, Val};

/// An input that does not fit the types: where, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InputError {
    /// Segments from the outside in, already rendered (`values`, `[2]`, `.x`).
    path: Vec<String>,
    message: String,
}

impl InputError {
    fn new(message: impl Into<String>) -> Self {
        Self {
            path: Vec::new(),
            message: message.into(),
        }
    }

    /// The error one level further out: `segment` comes first in the path.
    fn within(mut self, segment: impl Into<String>) -> Self {
        self.path.insert(0, segment.into());
        self
    }

    fn expected(what: impl fmt::Display, got: &Value) -> Self {
        Self::new(format!("expected {what}, got {}", describe(got)))
    }
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut path = String::new();
        for segment in &self.path {
            if !path.is_empty() && !segment.starts_with('[') {
                path.push('.');
            }
            path.push_str(segment);
        }
        if path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{path}: {}", self.message)
        }
    }
}

/// The parameters of `func` from a task's input: one parameter takes the input itself; several
/// take a JSON array in order or an object keyed by parameter name (an `option` parameter may
/// be left out of the object); none take any input.
pub(crate) fn params(func: &ComponentFunc, input: &Value) -> Result<Vec<Val>, InputError> {
    let params: Vec<(&str, Type)> = func.params().collect();
    match params.as_slice() {
        [] => Ok(Vec::new()),
        [(name, ty)] => Ok(vec![value(ty, input).map_err(|e| e.within(*name))?]),
        _ => match input {
            Value::Array(items) => {
                if items.len() != params.len() {
                    return Err(InputError::new(format!(
                        "expected {} parameters ({}) in the array, got {}",
                        params.len(),
                        names(params.iter().map(|(n, _)| *n)),
                        items.len()
                    )));
                }
                params
                    .iter()
                    .zip(items)
                    .map(|((name, ty), item)| value(ty, item).map_err(|e| e.within(*name)))
                    .collect()
            }
            Value::Object(object) => {
                let fields = params.iter().map(|(name, ty)| (*name, ty.clone()));
                Ok(fields_of(fields, object, "parameter")?
                    .into_iter()
                    .map(|(_, val)| val)
                    .collect())
            }
            other => Err(InputError::expected(
                format_args!(
                    "an array or an object of the parameters {}",
                    names(params.iter().map(|(n, _)| *n))
                ),
                other,
            )),
        },
    }
}

/// One value of type `ty`.
pub(crate) fn value(ty: &Type, json: &Value) -> Result<Val, InputError> {
    Ok(match ty {
        Type::Bool => match json {
            Value::Bool(b) => Val::Bool(*b),
            other => return Err(InputError::expected("bool", other)),
        },
        Type::S8 => Val::S8(int(json, "s8")?),
        Type::U8 => Val::U8(int(json, "u8")?),
        Type::S16 => Val::S16(int(json, "s16")?),
        Type::U16 => Val::U16(int(json, "u16")?),
        Type::S32 => Val::S32(int(json, "s32")?),
        Type::U32 => Val::U32(int(json, "u32")?),
        Type::S64 => Val::S64(int(json, "s64")?),
        Type::U64 => Val::U64(int(json, "u64")?),
        Type::Float32 => {
            let x = float(json, "f32")?;
            let narrow = x as f32;
            if x.is_finite() && !narrow.is_finite() {
                return Err(InputError::new(format!(
                    "{} is out of range for f32",
                    describe(json)
                )));
            }
            Val::Float32(narrow)
        }
        Type::Float64 => Val::Float64(float(json, "f64")?),
        Type::Char => match json {
            Value::String(s) => {
                let mut chars = s.chars();
                match (chars.next(), chars.next()) {
                    (Some(c), None) => Val::Char(c),
                    _ => {
                        return Err(InputError::expected(
                            "char (a string of one character)",
                            json,
                        ));
                    }
                }
            }
            other => {
                return Err(InputError::expected(
                    "char (a string of one character)",
                    other,
                ));
            }
        },
        Type::String => match json {
            Value::String(s) => Val::String(s.clone()),
            other => return Err(InputError::expected("string", other)),
        },
        Type::List(list) => {
            let element = list.ty();
            match json {
                Value::String(text) if element == Type::U8 => Val::List(
                    base64_decode(text)
                        .map_err(InputError::new)?
                        .into_iter()
                        .map(Val::U8)
                        .collect(),
                ),
                Value::Array(items) => Val::List(elements(&element, items)?),
                other if element == Type::U8 => {
                    return Err(InputError::expected(
                        "list<u8> (an array of bytes or a base64 string)",
                        other,
                    ));
                }
                other => return Err(InputError::expected("list (an array)", other)),
            }
        }
        Type::FixedLengthList(list) => {
            let len = list.len() as usize;
            match json {
                Value::Array(items) if items.len() == len => {
                    Val::FixedLengthList(elements(&list.ty(), items)?)
                }
                other => {
                    return Err(InputError::expected(
                        format_args!("an array of exactly {len} elements"),
                        other,
                    ));
                }
            }
        }
        Type::Tuple(tuple) => {
            let types: Vec<Type> = tuple.types().collect();
            match json {
                Value::Array(items) if items.len() == types.len() => Val::Tuple(
                    types
                        .iter()
                        .zip(items)
                        .enumerate()
                        .map(|(i, (ty, item))| {
                            value(ty, item).map_err(|e| e.within(format!("[{i}]")))
                        })
                        .collect::<Result<_, _>>()?,
                ),
                other => {
                    return Err(InputError::expected(
                        format_args!("a tuple (an array of {} elements)", types.len()),
                        other,
                    ));
                }
            }
        }
        Type::Record(record) => match json {
            Value::Object(object) => Val::Record(record_fields(record, object)?),
            other => return Err(InputError::expected("a record (an object)", other)),
        },
        Type::Variant(variant) => variant_value(variant, json)?,
        Type::Enum(cases) => match json {
            Value::String(name) if cases.names().any(|c| c == name) => Val::Enum(name.clone()),
            Value::String(name) => {
                return Err(InputError::new(format!(
                    "unknown case {}; the cases are {}",
                    quote(name),
                    names(cases.names())
                )));
            }
            other => {
                return Err(InputError::expected(
                    format_args!("one of the cases {}", names(cases.names())),
                    other,
                ));
            }
        },
        Type::Option(option) => {
            let inner = option.ty();
            match json {
                Value::Null => Val::Option(None),
                // `some(x)` of a nested option is written `{"some": x}`, so that `some(none)`
                // differs from `none`.
                _ if matches!(inner, Type::Option(_)) => match single_key(json) {
                    Some(("some", payload)) => Val::Option(Some(Box::new(
                        value(&inner, payload).map_err(|e| e.within("some"))?,
                    ))),
                    _ => {
                        return Err(InputError::expected(
                            "null or {\"some\": value} (an option of an option)",
                            json,
                        ));
                    }
                },
                other => Val::Option(Some(Box::new(value(&inner, other)?))),
            }
        }
        Type::Result(result) => match single_key(json) {
            Some(("ok", payload)) => Val::Result(Ok(payload_of(result.ok(), payload, "ok")?)),
            Some(("err", payload)) => Val::Result(Err(payload_of(result.err(), payload, "err")?)),
            _ => {
                return Err(InputError::expected(
                    "a result ({\"ok\": value} or {\"err\": value})",
                    json,
                ));
            }
        },
        Type::Flags(flags) => match json {
            Value::Array(items) => {
                let mut set: Vec<String> = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    let at = |e: InputError| e.within(format!("[{i}]"));
                    let Value::String(name) = item else {
                        return Err(at(InputError::expected(
                            format_args!("a flag name ({})", names(flags.names())),
                            item,
                        )));
                    };
                    if !flags.names().any(|f| f == name) {
                        return Err(at(InputError::new(format!(
                            "unknown flag {}; the flags are {}",
                            quote(name),
                            names(flags.names())
                        ))));
                    }
                    if set.contains(name) {
                        return Err(at(InputError::new(format!(
                            "flag {} given twice",
                            quote(name)
                        ))));
                    }
                    set.push(name.clone());
                }
                Val::Flags(set)
            }
            other => {
                return Err(InputError::expected(
                    format_args!("flags (an array of names among {})", names(flags.names())),
                    other,
                ));
            }
        },
        other => {
            // Discovery marks functions with these types as not runnable.
            return Err(InputError::new(format!(
                "values of type {} cannot be written in JSON",
                super::describe::type_name(other)
            )));
        }
    })
}

fn elements(element: &Type, items: &[Value]) -> Result<Vec<Val>, InputError> {
    items
        .iter()
        .enumerate()
        .map(|(i, item)| value(element, item).map_err(|e| e.within(format!("[{i}]"))))
        .collect()
}

fn record_fields(
    record: &Record,
    object: &Map<String, Value>,
) -> Result<Vec<(String, Val)>, InputError> {
    fields_of(
        record.fields().map(|field| (field.name, field.ty)),
        object,
        "field",
    )
}

/// Named values from an object: each name once, `option` ones may be missing (`none`), no
/// other key.
fn fields_of<'a>(
    fields: impl Iterator<Item = (&'a str, Type)>,
    object: &Map<String, Value>,
    what: &str,
) -> Result<Vec<(String, Val)>, InputError> {
    let fields: Vec<(&str, Type)> = fields.collect();
    if let Some(unknown) = object
        .keys()
        .find(|key| !fields.iter().any(|(name, _)| name == key))
    {
        return Err(InputError::new(format!(
            "unknown {what} {}; the {what}s are {}",
            quote(unknown),
            names(fields.iter().map(|(n, _)| *n))
        )));
    }
    fields
        .iter()
        .map(|(name, ty)| {
            let val = match object.get(*name) {
                Some(json) => value(ty, json).map_err(|e| e.within(*name))?,
                None if matches!(ty, Type::Option(_)) => Val::Option(None),
                None => {
                    return Err(InputError::new(format!("missing {what} {}", quote(name))));
                }
            };
            Ok((name.to_string(), val))
        })
        .collect()
}

fn variant_value(variant: &Variant, json: &Value) -> Result<Val, InputError> {
    let (name, payload) = match json {
        Value::String(name) => (name.as_str(), None),
        _ => match single_key(json) {
            Some((name, payload)) => (name, Some(payload)),
            None => {
                return Err(InputError::expected(
                    format_args!(
                        "a variant (\"case\" or {{\"case\": payload}}) of the cases {}",
                        names(variant.cases().map(|c| c.name))
                    ),
                    json,
                ));
            }
        },
    };
    let Some(case) = variant.cases().find(|c| c.name == name) else {
        return Err(InputError::new(format!(
            "unknown case {}; the cases are {}",
            quote(name),
            names(variant.cases().map(|c| c.name))
        )));
    };
    let payload = match (case.ty, payload) {
        (None, None | Some(Value::Null)) => None,
        (None, Some(other)) => {
            return Err(InputError::new(format!(
                "case {} has no payload, got {}",
                quote(name),
                describe(other)
            ))
            .within(name));
        }
        (Some(_), None) => {
            return Err(InputError::new(format!(
                "case {} needs a payload: write {{{}: ...}}",
                quote(name),
                quote(name)
            )));
        }
        (Some(ty), Some(json)) => Some(Box::new(value(&ty, json).map_err(|e| e.within(name))?)),
    };
    Ok(Val::Variant(name.to_string(), payload))
}

/// The payload of a `result` case: `null` when the case has none.
fn payload_of(ty: Option<Type>, json: &Value, case: &str) -> Result<Option<Box<Val>>, InputError> {
    match (ty, json) {
        (None, Value::Null) => Ok(None),
        (None, other) => Err(InputError::new(format!(
            "case {} has no payload (write null), got {}",
            quote(case),
            describe(other)
        ))
        .within(case)),
        (Some(ty), json) => Ok(Some(Box::new(
            value(&ty, json).map_err(|e| e.within(case))?,
        ))),
    }
}

/// The one key and its value of an object with exactly one key.
fn single_key(json: &Value) -> Option<(&str, &Value)> {
    match json {
        Value::Object(object) if object.len() == 1 => {
            object.iter().next().map(|(k, v)| (k.as_str(), v))
        }
        _ => None,
    }
}

/// An integer of type `T` (WIT name `name`): a JSON integer, or a number with no fractional
/// part within ±2^53 (where a double is exact).
fn int<T>(json: &Value, name: &str) -> Result<T, InputError>
where
    T: TryFrom<i64> + TryFrom<u64> + Copy + Into<i128>,
    T: Bounded,
{
    const EXACT: f64 = 9_007_199_254_740_992.0;
    let Value::Number(n) = json else {
        return Err(InputError::expected(name, json));
    };
    let fits = if let Some(u) = n.as_u64() {
        T::try_from(u).ok()
    } else if let Some(i) = n.as_i64() {
        T::try_from(i).ok()
    } else {
        match n.as_f64() {
            Some(x) if x.fract() == 0.0 && x.abs() <= EXACT => T::try_from(x as i64).ok(),
            _ => return Err(InputError::expected(name, json)),
        }
    };
    fits.ok_or_else(|| {
        InputError::new(format!(
            "{n} is out of range for {name} ({}..={})",
            T::MIN.into(),
            T::MAX.into()
        ))
    })
}

/// The range of an integer type, for messages.
trait Bounded: Sized {
    const MIN: Self;
    const MAX: Self;
}

macro_rules! bounded {
    ($($t:ty),*) => {$(
        impl Bounded for $t {
            const MIN: Self = <$t>::MIN;
            const MAX: Self = <$t>::MAX;
        }
    )*};
}

bounded!(i8, u8, i16, u16, i32, u32, i64, u64);

/// A float: a JSON number, or one of the strings `"NaN"`, `"Infinity"`, `"-Infinity"`.
fn float(json: &Value, name: &str) -> Result<f64, InputError> {
    match json {
        Value::Number(n) => n.as_f64().ok_or_else(|| InputError::expected(name, json)),
        Value::String(s) => match s.as_str() {
            "NaN" => Ok(f64::NAN),
            "Infinity" => Ok(f64::INFINITY),
            "-Infinity" => Ok(f64::NEG_INFINITY),
            _ => Err(InputError::expected(name, json)),
        },
        other => Err(InputError::expected(name, other)),
    }
}

/// Standard base64 (RFC 4648, `+/`, padding optional).
fn base64_decode(text: &str) -> Result<Vec<u8>, String> {
    let bad = || {
        "expected list<u8> as an array of bytes or a base64 string, got a string that is not base64"
            .to_string()
    };
    let text = text.trim_end_matches('=');
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for byte in text.bytes() {
        let digit = match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return Err(bad()),
        };
        acc = (acc << 6) | u32::from(digit);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    // A single leftover sextet cannot end a base64 text; other leftovers must be zero bits.
    if bits >= 6 || acc != 0 {
        return Err(bad());
    }
    Ok(out)
}

/// A short rendering of a JSON value for messages.
fn describe(json: &Value) -> String {
    match json {
        Value::Array(items) => format!("an array of {}", items.len()),
        Value::Object(object) if object.is_empty() => "an empty object".into(),
        Value::Object(object) => format!(
            "an object with {}",
            names(object.keys().take(5).map(String::as_str))
        ),
        scalar => crate::text::truncate(&scalar.to_string(), 60).into_owned(),
    }
}

fn quote(name: &str) -> String {
    format!("`{}`", crate::text::truncate(name, 60))
}

/// `a, b, c` (at most 20 shown).
fn names<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let names: Vec<&str> = names.collect();
    let shown: Vec<&str> = names.iter().take(20).copied().collect();
    let mut text = shown.join(", ");
    if names.len() > shown.len() {
        text.push_str(&format!(", … ({} in all)", names.len()));
    }
    text
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use wasmtime::component::types::ComponentItem;
    use wasmtime::component::{Component, Val};
    use wasmtime::{Config, Engine};

    use super::*;

    /// The types of the functions a component imports: a component of imports alone is the
    /// shortest way to get wasmtime's view of WIT types.
    fn funcs(wat: &str) -> Vec<(String, ComponentFunc)> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        let engine = Engine::new(&config).unwrap();
        let component = Component::new(&engine, wat::parse_str(wat).unwrap()).unwrap();
        component
            .component_type()
            .imports(&engine)
            .filter_map(|(name, item)| match item.ty {
                ComponentItem::ComponentFunc(f) => Some((name.to_string(), f)),
                _ => None,
            })
            .collect()
    }

    const TYPES: &str = r#"(component
        (type $point' (record (field "x" f64) (field "y" f64) (field "label" (option string))))
        (import "point" (type $point (eq $point')))
        (type $shape' (variant (case "circle" f64) (case "poly" (list $point)) (case "dot")))
        (import "shape" (type $shape (eq $shape')))
        (type $unit' (enum "mm" "cm"))
        (import "unit" (type $unit (eq $unit')))
        (type $style' (flags "bold" "italic"))
        (import "style" (type $style (eq $style')))
        (import "values" (func (param "values" (list f64))))
        (import "add" (func (param "a" s64) (param "b" s64) (param "note" (option string))))
        (import "ints" (func (param "n" (tuple u8 s16 u64 s64))))
        (import "f32" (func (param "x" f32)))
        (import "char" (func (param "c" char)))
        (import "bytes" (func (param "data" (list u8))))
        (import "point-fn" (func (param "p" $point)))
        (import "shape-fn" (func (param "s" $shape)))
        (import "unit-fn" (func (param "u" $unit)))
        (import "style-fn" (func (param "s" $style)))
        (import "maybe" (func (param "x" (option (option u32)))))
        (import "res" (func (param "r" (result u32 (error string)))))
        (import "empty-res" (func (param "r" (result))))
        (import "none" (func))
    )"#;

    fn func(name: &str) -> ComponentFunc {
        funcs(TYPES)
            .into_iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no import {name}"))
            .1
    }

    fn ok(name: &str, input: serde_json::Value) -> Vec<Val> {
        params(&func(name), &input).unwrap_or_else(|e| panic!("{name}({input}): {e}"))
    }

    fn err(name: &str, input: serde_json::Value) -> String {
        match params(&func(name), &input) {
            Ok(vals) => panic!("{name}({input}) should fail, got {vals:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_mismatch_names_its_path() {
        assert_eq!(
            err("values", json!([1, 2, "x"])),
            "values[2]: expected f64, got \"x\""
        );
        assert_eq!(
            err(
                "shape-fn",
                json!({"poly": [{"x": 1, "y": 2}, {"x": 1, "y": true}]})
            ),
            "s.poly[1].y: expected f64, got true"
        );
        assert_eq!(
            err("point-fn", json!({"x": 1, "y": 2, "label": 3})),
            "p.label: expected string, got 3"
        );
    }

    #[test]
    fn parameters_by_position_or_by_name() {
        let expected = vec![Val::S64(2), Val::S64(40), Val::Option(None)];
        assert_eq!(ok("add", json!([2, 40, null])), expected);
        assert_eq!(
            ok("add", json!({"a": 2, "b": 40})),
            expected,
            "an option may be left out"
        );
        assert_eq!(ok("none", json!({"anything": 1})), Vec::<Val>::new());
        assert!(err("add", json!([2, 40])).contains("expected 3 parameters (a, b, note)"));
        assert_eq!(err("add", json!({"a": 2})), "missing parameter `b`");
        assert!(err("add", json!({"a": 2, "b": 3, "c": 4})).starts_with("unknown parameter `c`"),);
        assert!(err("add", json!("2 and 40")).contains("an array or an object"));
    }

    #[test]
    fn integers_are_exact_and_checked() {
        assert_eq!(
            ok(
                "ints",
                json!([
                    255,
                    -32768,
                    18446744073709551615u64,
                    -9223372036854775808i64
                ])
            ),
            vec![Val::Tuple(vec![
                Val::U8(255),
                Val::S16(-32768),
                Val::U64(u64::MAX),
                Val::S64(i64::MIN)
            ])]
        );
        assert_eq!(
            ok("ints", json!([3.0, 0, 0, 0])),
            vec![Val::Tuple(vec![
                Val::U8(3),
                Val::S16(0),
                Val::U64(0),
                Val::S64(0)
            ])]
        );
        assert_eq!(
            err("ints", json!([256, 0, 0, 0])),
            "n[0]: 256 is out of range for u8 (0..=255)"
        );
        assert_eq!(
            err("ints", json!([1.5, 0, 0, 0])),
            "n[0]: expected u8, got 1.5"
        );
        assert_eq!(
            err("ints", json!([0, 0, -1, 0])),
            "n[2]: -1 is out of range for u64 (0..=18446744073709551615)"
        );
        assert!(err("ints", json!([0, 0])).contains("a tuple (an array of 4 elements)"));
    }

    #[test]
    fn floats_chars_and_bytes() {
        let Val::Float64(nan) = &ok("values", json!(["NaN"]))[0].clone().list()[0] else {
            panic!()
        };
        assert!(nan.is_nan());
        assert_eq!(
            ok("values", json!(["Infinity", "-Infinity", 1])),
            vec![Val::List(vec![
                Val::Float64(f64::INFINITY),
                Val::Float64(f64::NEG_INFINITY),
                Val::Float64(1.0)
            ])]
        );
        assert_eq!(ok("f32", json!(0.5)), vec![Val::Float32(0.5)]);
        assert_eq!(
            err("f32", json!(1e300)),
            "x: 1e+300 is out of range for f32"
        );
        assert_eq!(ok("char", json!("é")), vec![Val::Char('é')]);
        assert!(err("char", json!("ab")).contains("a string of one character"));
        let bytes = vec![Val::List(vec![Val::U8(1), Val::U8(2), Val::U8(255)])];
        assert_eq!(ok("bytes", json!([1, 2, 255])), bytes);
        assert_eq!(ok("bytes", json!("AQL/")), bytes, "base64");
        assert_eq!(ok("bytes", json!("AQL/")), ok("bytes", json!("AQL/")));
        assert!(err("bytes", json!("not base64!")).contains("not base64"));
        assert!(err("bytes", json!(5)).contains("an array of bytes or a base64 string"));
    }

    #[test]
    fn records_take_their_wit_field_names() {
        assert_eq!(
            ok("point-fn", json!({"x": 1, "y": 2})),
            vec![Val::Record(vec![
                ("x".into(), Val::Float64(1.0)),
                ("y".into(), Val::Float64(2.0)),
                ("label".into(), Val::Option(None)),
            ])]
        );
        assert_eq!(
            err("point-fn", json!({"x": 1, "y": 2, "z": 3})),
            "p: unknown field `z`; the fields are x, y, label"
        );
        assert_eq!(err("point-fn", json!({"x": 1})), "p: missing field `y`");
        assert_eq!(
            err("point-fn", json!([1, 2])),
            "p: expected a record (an object), got an array of 2"
        );
    }

    #[test]
    fn variants_enums_and_flags() {
        assert_eq!(
            ok("shape-fn", json!("dot")),
            vec![Val::Variant("dot".into(), None)]
        );
        assert_eq!(
            ok("shape-fn", json!({"dot": null})),
            vec![Val::Variant("dot".into(), None)]
        );
        assert_eq!(
            ok("shape-fn", json!({"circle": 2})),
            vec![Val::Variant(
                "circle".into(),
                Some(Box::new(Val::Float64(2.0)))
            )]
        );
        assert_eq!(
            err("shape-fn", json!({"triangle": 3})),
            "s: unknown case `triangle`; the cases are circle, poly, dot"
        );
        assert!(err("shape-fn", json!("circle")).contains("needs a payload"));
        assert!(err("shape-fn", json!({"dot": 1})).contains("has no payload"));
        assert_eq!(ok("unit-fn", json!("cm")), vec![Val::Enum("cm".into())]);
        assert_eq!(
            err("unit-fn", json!("km")),
            "u: unknown case `km`; the cases are mm, cm"
        );
        assert_eq!(
            ok("style-fn", json!(["italic", "bold"])),
            vec![Val::Flags(vec!["italic".into(), "bold".into()])]
        );
        assert_eq!(ok("style-fn", json!([])), vec![Val::Flags(vec![])]);
        assert!(err("style-fn", json!(["bold", "bold"])).contains("given twice"));
        assert!(err("style-fn", json!(["wide"])).starts_with("s[0]: unknown flag `wide`"));
    }

    #[test]
    fn options_and_results() {
        let some = |v: Val| Val::Option(Some(Box::new(v)));
        assert_eq!(ok("maybe", json!(null)), vec![Val::Option(None)]);
        assert_eq!(
            ok("maybe", json!({"some": null})),
            vec![some(Val::Option(None))]
        );
        assert_eq!(
            ok("maybe", json!({"some": 4})),
            vec![some(some(Val::U32(4)))]
        );
        assert!(err("maybe", json!(4)).contains("{\"some\": value}"));
        assert_eq!(
            ok("res", json!({"ok": 1})),
            vec![Val::Result(Ok(Some(Box::new(Val::U32(1)))))]
        );
        assert_eq!(
            ok("res", json!({"err": "no"})),
            vec![Val::Result(Err(Some(Box::new(Val::String("no".into())))))]
        );
        assert_eq!(
            ok("empty-res", json!({"err": null})),
            vec![Val::Result(Err(None))]
        );
        assert!(err("res", json!({"ok": 1, "err": 2})).contains("a result"));
        assert_eq!(
            err("res", json!({"err": 2})),
            "r.err: expected string, got 2"
        );
    }

    trait ListVal {
        fn list(self) -> Vec<Val>;
    }

    impl ListVal for Val {
        fn list(self) -> Vec<Val> {
            match self {
                Val::List(items) => items,
                other => panic!("not a list: {other:?}"),
            }
        }
    }
}
