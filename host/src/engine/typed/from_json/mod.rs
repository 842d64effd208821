//! JSON input → component values, guided by the function's own WIT types. Whatever does not
//! fit is an [`InputError`] that names the path to the offending value
//! (`values[2]: expected f64, got "x"`), found before the guest runs.
//!
//! Recursion follows the WIT type, whose nesting the component model bounds (100 levels), not
//! the JSON value.

use std::fmt;

mod scalar;

use serde_json::{Map, Value};
use wasmtime::component::types::{ComponentFunc, Record, Variant};
use wasmtime::component::{Type, Val};

use scalar::{base64_decode, float, int};

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
mod tests;
