//! Typed tasks: a component that does not export `osiiso:task/tasks` offers each function it
//! exports as a task, with JSON converted to and from the function's own WIT types.
//!
//! - Names: a function at the world's top level by its WIT name (`add`); a function of an
//!   exported interface as `INTERFACE#FUNC` (`stats#summarize`), also accepted in full
//!   (`acme:calc/stats@0.1.0#summarize`) and bare (`summarize`) when no other function has that
//!   name. Two interfaces with the same short name keep their full names.
//! - A `wasi:cli/run` export is a WASI program: one task, `run` (see
//!   [`command`](super::command)).
//! - Functions that take or return resources (or futures, streams, maps), and
//!   component-model async functions, are listed as not runnable, with the reason.
//!
//! [`from_json`] builds the parameters, [`to_json`] writes the results, [`describe`] gives
//! `list` a WIT signature and a JSON Schema.

pub(crate) mod describe;
pub(crate) mod from_json;
pub(crate) mod to_json;

use std::sync::Arc;

use wasmtime::Engine;
use wasmtime::component::types::{ComponentFunc, ComponentItem};
use wasmtime::component::{Component, ComponentExportIndex, Type, Val};

use super::command;
use super::task::{Entry, TaskInfo, TaskKind};
use describe::TypeNames;

/// Separates an interface from a function in a task name.
const SEPARATOR: char = '#';
/// The most type nodes looked at to decide whether a function can run; larger signatures are
/// not runnable.
const MAX_SCAN_NODES: usize = 100_000;

/// An exported function, called with values converted from JSON.
#[derive(Debug)]
pub(crate) struct TypedFunc {
    /// Its type: parameter names and types, result type.
    pub(crate) ty: ComponentFunc,
}

impl TypedFunc {
    /// A slot for each result the function returns.
    pub(crate) fn result_slots(&self) -> Vec<Val> {
        self.ty.results().map(|_| Val::Bool(false)).collect()
    }

    /// Whether the function returns `result<T, E>`, whose `err` fails the task.
    pub(crate) fn returns_result(&self) -> bool {
        matches!(self.ty.results().next(), Some(Type::Result(_)))
    }
}

/// A task found among a component's exports.
pub(crate) struct Found {
    pub(crate) info: TaskInfo,
    pub(crate) entry: Entry,
    /// Where the component exports it (in this component only; see `engine/code.rs`).
    pub(crate) export: Option<ComponentExportIndex>,
}

/// One exported function before it is named.
struct Export {
    /// The exporting interface's full name, `None` at the world's top level.
    interface: Option<String>,
    func: String,
    index: ComponentExportIndex,
    ty: ComponentFunc,
    names: Arc<TypeNames>,
    program: bool,
}

/// Every function `component` exports, as tasks (runnable or not), in export order.
pub(crate) fn discover(component: &Component, engine: &Engine) -> Vec<Found> {
    let component_type = component.component_type();
    let mut exports = Vec::new();
    let mut top_names = TypeNames::default();
    let mut top_funcs = Vec::new();
    for (name, item) in component_type.exports(engine) {
        match item.ty {
            ComponentItem::ComponentFunc(ty) => top_funcs.push((name.to_string(), ty)),
            ComponentItem::Type(ty) => top_names.add_type(name, ty),
            ComponentItem::Resource(ty) => top_names.add_resource(name, ty),
            ComponentItem::ComponentInstance(instance) => {
                let Some(instance_index) = component.get_export_index(None, name) else {
                    continue;
                };
                let mut names = TypeNames::default();
                let mut funcs = Vec::new();
                for (item_name, item) in instance.exports(engine) {
                    match item.ty {
                        ComponentItem::ComponentFunc(ty) => funcs.push((item_name, ty)),
                        ComponentItem::Type(ty) => names.add_type(item_name, ty),
                        ComponentItem::Resource(ty) => names.add_resource(item_name, ty),
                        _ => {}
                    }
                }
                let names = Arc::new(names);
                for (func, ty) in funcs {
                    let Some(index) = component.get_export_index(Some(&instance_index), func)
                    else {
                        continue;
                    };
                    let program = command::is_run_export(name, func, &ty);
                    exports.push(Export {
                        interface: Some(name.to_string()),
                        func: func.to_string(),
                        index,
                        ty,
                        names: names.clone(),
                        program,
                    });
                }
            }
            _ => {}
        }
    }
    let top_names = Arc::new(top_names);
    let mut top = Vec::new();
    for (func, ty) in top_funcs {
        if let Some(index) = component.get_export_index(None, func.as_str()) {
            top.push(Export {
                interface: None,
                func,
                index,
                ty,
                names: top_names.clone(),
                program: false,
            });
        }
    }
    top.extend(exports);
    name_all(top)
}

/// `acme:calc/stats@0.1.0` → `stats`; a plain name stays as it is.
fn short_name(interface: &str) -> &str {
    let name = interface.rsplit_once('/').map_or(interface, |(_, n)| n);
    name.split_once('@').map_or(name, |(n, _)| n)
}

fn name_all(exports: Vec<Export>) -> Vec<Found> {
    let top_level = |name: &str| {
        exports
            .iter()
            .any(|e| e.interface.is_none() && e.func == name)
    };
    // An interface goes by its short name unless another exported interface shares it.
    let label = |interface: &'_ str| -> String {
        let short = short_name(interface);
        let clash = exports.iter().any(|e| {
            e.interface
                .as_deref()
                .is_some_and(|other| other != interface && short_name(other) == short)
        });
        if clash { interface } else { short }.to_string()
    };
    let named = |func: &str| exports.iter().filter(|e| e.func == func).count();
    exports
        .iter()
        .map(|export| {
            let (name, mut aliases) = match &export.interface {
                None => (export.func.clone(), Vec::new()),
                Some(interface) => {
                    let labelled = format!("{}{SEPARATOR}{}", label(interface), export.func);
                    let full = format!("{interface}{SEPARATOR}{}", export.func);
                    let mut aliases = vec![full];
                    let bare_free = named(&export.func) == 1 && !top_level(&export.func);
                    let name = if export.program && !top_level(command::TASK) {
                        aliases.push(labelled);
                        command::TASK.to_string()
                    } else {
                        if bare_free {
                            aliases.push(export.func.clone());
                        }
                        labelled
                    };
                    (name, aliases)
                }
            };
            aliases.retain(|alias| *alias != name);
            aliases.dedup();
            found(export, name, aliases)
        })
        .collect()
}

fn found(export: &Export, name: String, aliases: Vec<String>) -> Found {
    if export.program {
        return Found {
            info: command::task_info(name, aliases),
            entry: Entry::Program,
            export: Some(export.index),
        };
    }
    let not_runnable = not_runnable(&export.ty, &export.names);
    let info = TaskInfo {
        name,
        description: String::new(),
        input_schema: not_runnable
            .is_none()
            .then(|| describe::input_schema(&export.ty, &export.names)),
        retries: None,
        timeout: None,
        kind: TaskKind::Function,
        signature: Some(describe::signature(&export.ty, &export.names)),
        not_runnable: not_runnable.clone(),
        aliases,
    };
    let (entry, index) = match not_runnable {
        Some(_) => (Entry::NotRunnable, None),
        None => (
            Entry::Func(Arc::new(TypedFunc {
                ty: export.ty.clone(),
            })),
            Some(export.index),
        ),
    };
    Found {
        info,
        entry,
        export: index,
    }
}

/// Why a function cannot be called with JSON, if it cannot.
fn not_runnable(func: &ComponentFunc, names: &TypeNames) -> Option<String> {
    if func.async_() {
        return Some(
            "it is an async function (component-model async), which osiiso-host does not call"
                .into(),
        );
    }
    let mut budget = MAX_SCAN_NODES;
    for (param, ty) in func.params() {
        if let Some(found) = unsupported(&ty, &mut budget) {
            return Some(reason(&format!("parameter `{param}`"), found, names));
        }
    }
    for ty in func.results() {
        if let Some(found) = unsupported(&ty, &mut budget) {
            return Some(reason("its result", found, names));
        }
    }
    None
}

/// What a scan found that JSON cannot carry.
enum Unsupported {
    Type(Type),
    TooLarge,
}

fn reason(place: &str, found: Unsupported, names: &TypeNames) -> String {
    match found {
        Unsupported::TooLarge => {
            format!("its types are too large to convert (more than {MAX_SCAN_NODES} type nodes)")
        }
        Unsupported::Type(ty @ (Type::Own(_) | Type::Borrow(_))) => format!(
            "{place} uses a resource handle ({}); a task takes and returns plain values",
            describe::wit_type(&ty, names)
        ),
        Unsupported::Type(ty) => format!(
            "{place} uses {}, which a task cannot take or return as JSON",
            describe::wit_type(&ty, names)
        ),
    }
}

/// The first type inside `ty` that has no JSON form.
fn unsupported(ty: &Type, budget: &mut usize) -> Option<Unsupported> {
    let Some(left) = budget.checked_sub(1) else {
        return Some(Unsupported::TooLarge);
    };
    *budget = left;
    match ty {
        Type::Own(_)
        | Type::Borrow(_)
        | Type::Future(_)
        | Type::Stream(_)
        | Type::ErrorContext
        | Type::Map(_) => Some(Unsupported::Type(ty.clone())),
        Type::List(list) => unsupported(&list.ty(), budget),
        Type::FixedLengthList(list) => unsupported(&list.ty(), budget),
        Type::Option(option) => unsupported(&option.ty(), budget),
        Type::Tuple(tuple) => tuple.types().find_map(|t| unsupported(&t, budget)),
        Type::Record(record) => record.fields().find_map(|f| unsupported(&f.ty, budget)),
        Type::Variant(variant) => variant
            .cases()
            .find_map(|c| c.ty.as_ref().and_then(|t| unsupported(t, budget))),
        Type::Result(result) => [result.ok(), result.err()]
            .into_iter()
            .flatten()
            .find_map(|t| unsupported(&t, budget)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use wasmtime::{Config, Engine};

    use super::*;

    #[test]
    fn short_names_drop_package_and_version() {
        assert_eq!(short_name("acme:calc/stats@0.1.0"), "stats");
        assert_eq!(short_name("acme:calc/stats"), "stats");
        assert_eq!(short_name("local"), "local");
        assert_eq!(short_name("wasi:cli/run@0.2.6"), "run");
    }

    fn discover_wat(wat: &str) -> Vec<Found> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        let engine = Engine::new(&config).unwrap();
        let component = Component::new(&engine, wat::parse_str(wat).unwrap()).unwrap();
        discover(&component, &engine)
    }

    fn summary(found: &[Found]) -> Vec<(String, Vec<String>, bool)> {
        found
            .iter()
            .map(|f| {
                (
                    f.info.name.clone(),
                    f.info.aliases.clone(),
                    f.info.not_runnable.is_none(),
                )
            })
            .collect()
    }

    #[test]
    fn tasks_are_named_after_their_exports() {
        let found = discover_wat(
            r#"(component
                (core module $m (func (export "f")) (func (export "g") (param i32)))
                (core instance $i (instantiate $m))
                (func $f (canon lift (core func $i "f")))
                (func $g (param "n" u32) (canon lift (core func $i "g")))
                (instance $one (export "go" (func $f)) (export "only" (func $f)))
                (instance $two (export "go" (func $f)))
                (instance $three (export "count" (func $g)))
                (export "a:b/stats@1.0.0" (instance $one))
                (export "c:d/stats@1.0.0" (instance $two))
                (export "tools" (instance $three))
                (export "top" (func $f))
                (export "count" (func $g))
            )"#,
        );
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            summary(&found),
            vec![
                ("top".into(), vec![], true),
                ("count".into(), vec![], true),
                // `stats` is ambiguous: both interfaces keep their full names.
                ("a:b/stats@1.0.0#go".into(), vec![], true),
                ("a:b/stats@1.0.0#only".into(), s(&["only"]), true),
                ("c:d/stats@1.0.0#go".into(), vec![], true),
                // `count` is taken by the top-level function: no bare alias.
                ("tools#count".into(), vec![], true),
            ]
        );
        assert_eq!(found[1].info.signature.as_deref(), Some("func(n: u32)"));
    }

    /// What keeps discovery cheap on a hostile component: the component model bounds the
    /// types of all its exports together (a million nodes; wasmtime refuses a component over
    /// it), and each function's scan and schema have their own bounds here.
    #[test]
    fn many_functions_of_a_huge_type_are_refused_before_discovery() {
        // t(k+1) = tuple<tk, tk>: t14 has 2^15 leaves; 300 functions of it are ~20M nodes.
        let mut types = String::from("(type $t0 (tuple u8 u8))\n");
        for k in 1..=14 {
            types += &format!("(type $t{k} (tuple $t{0} $t{0}))\n", k - 1);
        }
        // `n` functions taking a `t{depth}`.
        let funcs = |n: usize, depth: usize| {
            (0..n)
                .map(|i| {
                    format!(
                        "(func (export \"f{i}\") (param \"x\" $t{depth}) (canon lift \
                         (core func $i \"f\") (memory $mem) (realloc (core func $i \"realloc\"))))\n"
                    )
                })
                .collect::<String>()
        };
        let component = |n: usize, depth: usize| {
            format!(
                r#"(component
                    (core module $m
                        (memory (export "memory") 1)
                        (func (export "f") (param i32))
                        (func (export "realloc") (param i32 i32 i32 i32) (result i32) i32.const 0))
                    (core instance $i (instantiate $m))
                    (alias core export $i "memory" (core memory $mem))
                    {types}
                    {}
                )"#,
                funcs(n, depth)
            )
        };
        let mut config = Config::new();
        config.wasm_component_model(true);
        let engine = Engine::new(&config).unwrap();
        let error =
            Component::new(&engine, wat::parse_str(component(300, 14)).unwrap()).unwrap_err();
        assert!(
            format!("{error:#}").contains("effective type size"),
            "{error:#}"
        );
        // Under the bound, a function is described within its own limits.
        let found = discover_wat(&component(1, 13));
        assert!(found[0].info.not_runnable.is_none());
        let signature = found[0].info.signature.as_ref().unwrap();
        assert!(
            signature.len() <= 2051 && signature.ends_with('…'),
            "{signature}"
        );
        let schema = found[0].info.input_schema.as_ref().unwrap();
        assert_eq!(
            schema["description"],
            "the input type is too large to describe"
        );
    }

    #[test]
    fn a_function_with_a_resource_is_listed_as_not_runnable() {
        let found = discover_wat(
            r#"(component
                (type $r (resource (rep i32)))
                (core func $new (canon resource.new $r))
                (core module $m (func (export "f") (param i32) (result i32) local.get 0))
                (core instance $i (instantiate $m))
                (func $make (param "n" u32) (result (own $r)) (canon lift (core func $i "f")))
                (instance $counters (export "counter" (type $r)) (export "make" (func $make)))
                (export "acme:x/counters@1.0.0" (instance $counters))
            )"#,
        );
        let info = &found[0].info;
        assert_eq!(info.name, "counters#make");
        assert!(matches!(found[0].entry, Entry::NotRunnable));
        let reason = info.not_runnable.as_deref().unwrap();
        assert!(
            reason.contains("resource handle (own<counter>)"),
            "{reason}"
        );
        assert_eq!(info.input_schema, None);
    }
}
