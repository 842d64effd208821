//! JSON → values, against the types of a component of imports.

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
