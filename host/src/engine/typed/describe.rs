//! What `list` shows of a typed task: its WIT signature and a JSON Schema of its input, both
//! derived from the component's own types. Both are bounded: a component's types can be large
//! (the component model allows a million type nodes), and so are a signature's text and a
//! schema's nodes.

use serde_json::{Map, Value, json};
use wasmtime::component::types::ComponentFunc;
use wasmtime::component::{ResourceType, Type};

/// The longest signature shown; longer ones end with `…`.
const MAX_SIGNATURE_CHARS: usize = 2048;
/// The most nodes of one input schema; a larger one is replaced by a short note.
const MAX_SCHEMA_NODES: usize = 20_000;

/// The names an interface (or the world) gives its types and resources, to write `point`
/// instead of its structure.
#[derive(Default, Clone)]
pub(crate) struct TypeNames {
    types: Vec<(String, Type)>,
    resources: Vec<(String, ResourceType)>,
}

impl TypeNames {
    pub(crate) fn add_type(&mut self, name: &str, ty: Type) {
        self.types.push((name.to_string(), ty));
    }

    pub(crate) fn add_resource(&mut self, name: &str, ty: ResourceType) {
        self.resources.push((name.to_string(), ty));
    }

    fn type_name(&self, ty: &Type) -> Option<&str> {
        // Only aggregate types have names; comparing scalars would match `type x = u32`.
        if !matches!(
            ty,
            Type::Record(_) | Type::Variant(_) | Type::Enum(_) | Type::Flags(_)
        ) {
            return None;
        }
        self.types
            .iter()
            .find(|(_, named)| named == ty)
            .map(|(name, _)| name.as_str())
    }

    pub(crate) fn resource_name(&self, ty: &ResourceType) -> Option<&str> {
        self.resources
            .iter()
            .find(|(_, named)| named == ty)
            .map(|(name, _)| name.as_str())
    }
}

/// The WIT spelling of a type's kind (`f64`, `list`, `record`, ...), for messages.
pub(crate) fn type_name(ty: &Type) -> &'static str {
    match ty {
        Type::Bool => "bool",
        Type::S8 => "s8",
        Type::U8 => "u8",
        Type::S16 => "s16",
        Type::U16 => "u16",
        Type::S32 => "s32",
        Type::U32 => "u32",
        Type::S64 => "s64",
        Type::U64 => "u64",
        Type::Float32 => "f32",
        Type::Float64 => "f64",
        Type::Char => "char",
        Type::String => "string",
        Type::List(_) | Type::FixedLengthList(_) => "list",
        Type::Map(_) => "map",
        Type::Record(_) => "record",
        Type::Tuple(_) => "tuple",
        Type::Variant(_) => "variant",
        Type::Enum(_) => "enum",
        Type::Option(_) => "option",
        Type::Result(_) => "result",
        Type::Flags(_) => "flags",
        Type::Own(_) => "own",
        Type::Borrow(_) => "borrow",
        Type::Future(_) => "future",
        Type::Stream(_) => "stream",
        Type::ErrorContext => "error-context",
    }
}

/// `func(a: s64, b: s64) -> s64`.
pub(crate) fn signature(func: &ComponentFunc, names: &TypeNames) -> String {
    let mut out = Text::default();
    out.push(if func.async_() {
        "async func("
    } else {
        "func("
    });
    for (i, (name, ty)) in func.params().enumerate() {
        if i > 0 {
            out.push(", ");
        }
        out.push(name);
        out.push(": ");
        write_type(&mut out, &ty, names);
    }
    out.push(")");
    for ty in func.results() {
        out.push(" -> ");
        write_type(&mut out, &ty, names);
    }
    out.finish()
}

/// The WIT text of a type, named where the component names it.
pub(crate) fn wit_type(ty: &Type, names: &TypeNames) -> String {
    let mut out = Text::default();
    write_type(&mut out, ty, names);
    out.finish()
}

/// Text that stops growing at [`MAX_SIGNATURE_CHARS`].
#[derive(Default)]
struct Text {
    text: String,
    cut: bool,
}

impl Text {
    fn push(&mut self, part: &str) {
        if self.cut {
            return;
        }
        if self.text.len() + part.len() > MAX_SIGNATURE_CHARS {
            self.cut = true;
            return;
        }
        self.text.push_str(part);
    }

    fn full(&self) -> bool {
        self.cut
    }

    fn finish(mut self) -> String {
        if self.cut {
            self.text.push('…');
        }
        self.text
    }
}

fn write_type(out: &mut Text, ty: &Type, names: &TypeNames) {
    if out.full() {
        return;
    }
    if let Some(name) = names.type_name(ty) {
        out.push(name);
        return;
    }
    match ty {
        Type::List(list) => {
            out.push("list<");
            write_type(out, &list.ty(), names);
            out.push(">");
        }
        Type::FixedLengthList(list) => {
            out.push("list<");
            write_type(out, &list.ty(), names);
            out.push(&format!(", {}>", list.len()));
        }
        Type::Map(map) => {
            out.push("map<");
            write_type(out, &map.key(), names);
            out.push(", ");
            write_type(out, &map.value(), names);
            out.push(">");
        }
        Type::Tuple(tuple) => {
            out.push("tuple<");
            for (i, ty) in tuple.types().enumerate() {
                if i > 0 {
                    out.push(", ");
                }
                write_type(out, &ty, names);
            }
            out.push(">");
        }
        Type::Option(option) => {
            out.push("option<");
            write_type(out, &option.ty(), names);
            out.push(">");
        }
        Type::Result(result) => {
            out.push("result");
            match (result.ok(), result.err()) {
                (None, None) => {}
                (Some(ok), None) => {
                    out.push("<");
                    write_type(out, &ok, names);
                    out.push(">");
                }
                (ok, Some(err)) => {
                    out.push("<");
                    match ok {
                        Some(ok) => write_type(out, &ok, names),
                        None => out.push("_"),
                    }
                    out.push(", ");
                    write_type(out, &err, names);
                    out.push(">");
                }
            }
        }
        Type::Record(record) => {
            out.push("record { ");
            for (i, field) in record.fields().enumerate() {
                if i > 0 {
                    out.push(", ");
                }
                out.push(field.name);
                out.push(": ");
                write_type(out, &field.ty, names);
            }
            out.push(" }");
        }
        Type::Variant(variant) => {
            out.push("variant { ");
            for (i, case) in variant.cases().enumerate() {
                if i > 0 {
                    out.push(", ");
                }
                out.push(case.name);
                if let Some(ty) = &case.ty {
                    out.push("(");
                    write_type(out, ty, names);
                    out.push(")");
                }
            }
            out.push(" }");
        }
        Type::Enum(cases) => {
            out.push("enum { ");
            out.push(&cases.names().collect::<Vec<_>>().join(", "));
            out.push(" }");
        }
        Type::Flags(flags) => {
            out.push("flags { ");
            out.push(&flags.names().collect::<Vec<_>>().join(", "));
            out.push(" }");
        }
        Type::Own(resource) | Type::Borrow(resource) => {
            out.push(type_name(ty));
            out.push("<");
            out.push(names.resource_name(resource).unwrap_or("resource"));
            out.push(">");
        }
        Type::Future(future) => {
            out.push("future");
            if let Some(ty) = future.ty() {
                out.push("<");
                write_type(out, &ty, names);
                out.push(">");
            }
        }
        Type::Stream(stream) => {
            out.push("stream");
            if let Some(ty) = stream.ty() {
                out.push("<");
                write_type(out, &ty, names);
                out.push(">");
            }
        }
        scalar => out.push(type_name(scalar)),
    }
}

/// The JSON Schema of a task's input: its one parameter's type; an array of the parameters in
/// order or an object keyed by their names for several; anything for none.
pub(crate) fn input_schema(func: &ComponentFunc, names: &TypeNames) -> Value {
    let mut budget = MAX_SCHEMA_NODES;
    let params: Vec<(&str, Type)> = func.params().collect();
    let schema = match params.as_slice() {
        [] => Some(json!({"description": "takes no parameters: any input (null) will do"})),
        [(_, ty)] => schema(ty, names, &mut budget),
        _ => (|| {
            let items = params
                .iter()
                .map(|(_, ty)| schema(ty, names, &mut budget))
                .collect::<Option<Vec<_>>>()?;
            let properties = params
                .iter()
                .map(|(name, ty)| Some((name.to_string(), schema(ty, names, &mut budget)?)))
                .collect::<Option<Map<_, _>>>()?;
            let required: Vec<&str> = params
                .iter()
                .filter(|(_, ty)| !matches!(ty, Type::Option(_)))
                .map(|(name, _)| *name)
                .collect();
            Some(json!({"oneOf": [
                {
                    "type": "array",
                    "description": "the parameters in order",
                    "prefixItems": items,
                    "items": false,
                    "minItems": params.len(),
                },
                {
                    "type": "object",
                    "description": "the parameters by name",
                    "properties": properties,
                    "required": required,
                    "additionalProperties": false,
                },
            ]}))
        })(),
    };
    schema.unwrap_or_else(|| json!({"description": "the input type is too large to describe"}))
}

/// The schema of one type, or `None` once the node budget is spent.
fn schema(ty: &Type, names: &TypeNames, budget: &mut usize) -> Option<Value> {
    *budget = budget.checked_sub(1)?;
    let int = |min: i128, max: i128| json!({"type": "integer", "minimum": min, "maximum": max});
    let mut value = match ty {
        Type::Bool => json!({"type": "boolean"}),
        Type::S8 => int(i8::MIN.into(), i8::MAX.into()),
        Type::U8 => int(0, u8::MAX.into()),
        Type::S16 => int(i16::MIN.into(), i16::MAX.into()),
        Type::U16 => int(0, u16::MAX.into()),
        Type::S32 => int(i32::MIN.into(), i32::MAX.into()),
        Type::U32 => int(0, u32::MAX.into()),
        Type::S64 => json!({"type": "integer", "minimum": i64::MIN, "maximum": i64::MAX}),
        Type::U64 => json!({"type": "integer", "minimum": 0, "maximum": u64::MAX}),
        Type::Float32 | Type::Float64 => json!({"oneOf": [
            {"type": "number"},
            {"enum": ["NaN", "Infinity", "-Infinity"]},
        ]}),
        Type::Char => json!({"type": "string", "minLength": 1, "maxLength": 1}),
        Type::String => json!({"type": "string"}),
        Type::List(list) => {
            let element = list.ty();
            let items = schema(&element, names, budget)?;
            if element == Type::U8 {
                json!({"oneOf": [
                    {"type": "array", "items": items},
                    {"type": "string", "contentEncoding": "base64"},
                ]})
            } else {
                json!({"type": "array", "items": items})
            }
        }
        Type::FixedLengthList(list) => {
            let items = schema(&list.ty(), names, budget)?;
            json!({"type": "array", "items": items, "minItems": list.len(), "maxItems": list.len()})
        }
        Type::Tuple(tuple) => {
            let items = tuple
                .types()
                .map(|ty| schema(&ty, names, budget))
                .collect::<Option<Vec<_>>>()?;
            let n = items.len();
            json!({"type": "array", "prefixItems": items, "items": false, "minItems": n})
        }
        Type::Record(record) => {
            let mut properties = Map::new();
            let mut required = Vec::new();
            for field in record.fields() {
                properties.insert(field.name.to_string(), schema(&field.ty, names, budget)?);
                if !matches!(field.ty, Type::Option(_)) {
                    required.push(field.name.to_string());
                }
            }
            json!({
                "type": "object",
                "properties": properties,
                "required": required,
                "additionalProperties": false,
            })
        }
        Type::Variant(variant) => {
            let cases = variant
                .cases()
                .map(|case| match &case.ty {
                    None => Some(json!({"const": case.name})),
                    Some(ty) => Some(single(case.name, schema(ty, names, budget)?)),
                })
                .collect::<Option<Vec<_>>>()?;
            json!({"oneOf": cases})
        }
        Type::Enum(cases) => json!({"enum": cases.names().collect::<Vec<_>>()}),
        Type::Option(option) => {
            let inner = option.ty();
            let some = schema(&inner, names, budget)?;
            let some = if matches!(inner, Type::Option(_)) {
                single("some", some)
            } else {
                some
            };
            json!({"oneOf": [{"type": "null"}, some]})
        }
        Type::Result(result) => {
            let case = |ty: Option<Type>, budget: &mut usize| match ty {
                Some(ty) => schema(&ty, names, budget),
                None => Some(json!({"type": "null"})),
            };
            let ok = case(result.ok(), budget)?;
            let err = case(result.err(), budget)?;
            json!({"oneOf": [single("ok", ok), single("err", err)]})
        }
        Type::Flags(flags) => json!({
            "type": "array",
            "items": {"enum": flags.names().collect::<Vec<_>>()},
            "uniqueItems": true,
        }),
        other => {
            json!({"description": format!("{} values cannot be written in JSON", type_name(other))})
        }
    };
    if let (Some(name), Value::Object(object)) = (names.type_name(ty), &mut value) {
        object.insert("title".into(), Value::String(name.to_string()));
    }
    Some(value)
}

/// `{"type": "object", "properties": {key: schema}, "required": [key], ...}`.
fn single(key: &str, schema: Value) -> Value {
    json!({
        "type": "object",
        "properties": {key: schema},
        "required": [key],
        "additionalProperties": false,
    })
}
