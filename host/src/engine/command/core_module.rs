//! WASI preview-1 core modules (`wasm32-wasip1`, clang with wasi-libc) as programs: a module
//! that exports `_start` and imports only `wasi_snapshot_preview1` is turned into a
//! `wasi:cli/run` component with the preview-1 *command* adapter of the wasmtime release the
//! host embeds (what `wasm-tools component new --adapt` does). The program then runs on the
//! same WASI implementation, sandbox and limits as every component: no second, preview-1 host
//! with rules of its own.
//!
//! One thing is added: the adapter's `proc_exit` reports only success or failure (WASI 0.2's
//! `exit`), so the module's own `proc_exit` import is routed to the host's
//! `osiiso:program/exit` instead, which carries the exact status.
//!
//! The host checks that a module is a program ([`check`]: one pass over its imports and
//! exports); the adaptation itself ([`adapt`]), which validates and copies the whole module,
//! runs in the compile step, under the compile time and memory limits like compiling. It is
//! deterministic, so the compile cache keeps the compiled program under the hash of the module
//! and the adapter ([`cache_key`]), with the usual authentication.

use std::ops::Range;

use wasi_preview1_component_adapter_provider::{
    WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME as PREVIEW1,
    WASI_SNAPSHOT_PREVIEW1_COMMAND_ADAPTER as COMMAND_ADAPTER,
};
use wasmtime::component::Linker;

use crate::engine::error::LoadError;
use crate::engine::store::AttemptState;

/// The entry point a preview-1 program exports.
const START: &str = "_start";
/// The host interface a program's `proc_exit` is routed to.
pub(crate) const EXIT_IMPORT: &str = "osiiso:program/exit@0.1.0";
/// Its WIT, embedded into the module before it is adapted.
const EXIT_WIT: &str = "package osiiso:program@0.1.0;

/// The exit of a WASI preview-1 program with its exact status (`proc_exit`).
interface exit {
    exit: func(status: u32);
}

world program {
    import exit;
}
";

/// Adds [`EXIT_IMPORT`] to a linker: it ends the program with its status.
pub(crate) fn add_exit_to_linker(linker: &mut Linker<AttemptState>) -> wasmtime::Result<()> {
    linker.instance(EXIT_IMPORT)?.func_wrap(
        "exit",
        |_, (status,): (u32,)| -> wasmtime::Result<()> {
            Err(wasmtime::Error::new(wasmtime_wasi::I32Exit(status as i32)))
        },
    )
}

/// The most sections [`check`] reads (a program has a dozen, and a few custom ones).
const MAX_SECTIONS: usize = 1_000;
/// The most imports a program may declare: preview-1 has 46 functions.
const MAX_IMPORTS: u32 = 10_000;
/// The most exports a module may declare (wasmparser's validation limit).
const MAX_EXPORTS: u32 = 1_000_000;
/// The longest import name an error message shows.
const SHOWN_NAME: usize = 64;

/// Why `module` (a core module) is not a preview-1 program, if it is not: it must export
/// `_start` and import only from `wasi_snapshot_preview1`. `plugin` names it in errors.
///
/// The host runs this on untrusted bytes itself, so it is bounded: it reads section headers
/// up to the export section and no further, at most [`MAX_SECTIONS`] of them, at most
/// [`MAX_IMPORTS`] imports and [`MAX_EXPORTS`] exports; its time is linear in the import and
/// export sections (about 20 ms for a 256 MiB export section, less than hashing the file).
/// The adaptation ([`adapt`]), which validates and copies the whole module, runs where
/// compiling does, under the compile limits.
pub(crate) fn check(plugin: &str, module: &[u8]) -> Result<(), LoadError> {
    let refuse = |message: String| LoadError::Compile {
        plugin: plugin.to_string(),
        message: format!("invalid core module: {message}"),
    };
    let invalid = |error: wasmparser::BinaryReaderError| refuse(error.to_string());
    let mut has_start = false;
    let mut seen_exports = false;
    let mut foreign: Vec<(&str, &str)> = Vec::new();
    for (read, payload) in wasmparser::Parser::new(0).parse_all(module).enumerate() {
        if read > MAX_SECTIONS {
            return Err(refuse(format!(
                "more than {} sections before its exports end",
                grouped(MAX_SECTIONS as u64)
            )));
        }
        match payload.map_err(invalid)? {
            wasmparser::Payload::ImportSection(imports) => {
                if imports.count() > MAX_IMPORTS {
                    return Err(refuse(format!(
                        "more than {} imports",
                        grouped(MAX_IMPORTS.into())
                    )));
                }
                for import in imports.into_imports() {
                    let import = import.map_err(invalid)?;
                    let name = (import.module, import.name);
                    if import.module != PREVIEW1 && foreign.len() < 10 && !foreign.contains(&name) {
                        foreign.push(name);
                    }
                }
            }
            wasmparser::Payload::ExportSection(exports) => {
                seen_exports = true;
                if exports.count() > MAX_EXPORTS {
                    return Err(refuse(format!(
                        "more than {} exports",
                        grouped(MAX_EXPORTS.into())
                    )));
                }
                for export in exports {
                    let export = export.map_err(invalid)?;
                    has_start |=
                        export.name == START && export.kind == wasmparser::ExternalKind::Func;
                }
                // Imports and exports come before every other section that follows: the
                // rest (code and data) is for the adaptation to validate.
                break;
            }
            wasmparser::Payload::StartSection { .. }
            | wasmparser::Payload::ElementSection(_)
            | wasmparser::Payload::DataCountSection { .. }
            | wasmparser::Payload::CodeSectionStart { .. }
            | wasmparser::Payload::DataSection(_) => break,
            _ => {}
        }
    }
    if !seen_exports {
        // No export section before the code: none at all (so no `_start`), or one out of
        // order, which only the adaptation's validation can name; let it.
        return if has_export_section(module) {
            Ok(())
        } else {
            Err(LoadError::CoreModule {
                plugin: plugin.to_string(),
            })
        };
    }
    if !has_start {
        return Err(LoadError::CoreModule {
            plugin: plugin.to_string(),
        });
    }
    if !foreign.is_empty() {
        let shown = |name: &str| crate::text::truncate(name, SHOWN_NAME).into_owned();
        return Err(LoadError::UnsatisfiedImport {
            plugin: plugin.to_string(),
            imports: foreign
                .iter()
                .map(|(module, name)| format!("`{}.{}`", shown(module), shown(name)))
                .collect(),
        });
    }
    Ok(())
}

/// `n` with its thousands grouped, as the docs write it (`10,000`).
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// Whether `module` has an export section anywhere: a walk over its section headers (at most
/// [`MAX_SECTIONS`]), skipping their contents.
fn has_export_section(module: &[u8]) -> bool {
    let mut at = 8;
    for _ in 0..MAX_SECTIONS {
        let Some(&id) = module.get(at) else {
            return false;
        };
        if id == 7 {
            return true;
        }
        let Ok((size, contents)) = read_u32(module, at + 1) else {
            return false;
        };
        at = contents + size as usize;
    }
    false
}

/// The component of the preview-1 program `module` (one that [`check`] accepts): its
/// `proc_exit` routed to [`EXIT_IMPORT`], then adapted and validated.
///
/// Adapting validates the whole module and copies it several times, so its time and memory
/// grow with the module (about 4 bytes of memory per byte of module): the compile step runs
/// it, in the compile process, under the compile limits (`engine/compile`).
pub(crate) fn adapt(module: &[u8]) -> anyhow::Result<Vec<u8>> {
    // Validated first, so that an error's offset is one in the user's file, not in the
    // component it would become. Every feature: wasmtime (the same wasmparser) decides at
    // compile time which ones it takes.
    wasmparser::Validator::new_with_features(wasmparser::WasmFeatures::all())
        .validate_all(module)
        .map_err(|e| anyhow::anyhow!("invalid core module: {e}"))?;
    let mut proc_exit = None;
    let mut types = Vec::new();
    // The type of every function, imported ones first.
    let mut functions = Vec::new();
    let mut start = None;
    for payload in wasmparser::Parser::new(0).parse_all(module) {
        match payload? {
            wasmparser::Payload::TypeSection(reader) => {
                for group in reader {
                    types.extend(group?.into_types());
                }
            }
            wasmparser::Payload::ImportSection(imports) => {
                check_proc_exit_type(&imports, &types)?;
                proc_exit = find_proc_exit(&imports);
                for import in imports.clone().into_imports() {
                    if let wasmparser::TypeRef::Func(ty) = import?.ty {
                        functions.push(ty);
                    }
                }
            }
            wasmparser::Payload::FunctionSection(reader) => {
                for ty in reader {
                    functions.push(ty?);
                }
            }
            wasmparser::Payload::ExportSection(exports) => {
                for export in exports {
                    let export = export?;
                    if export.name == START && export.kind == wasmparser::ExternalKind::Func {
                        start = Some(export.index);
                    }
                }
            }
            wasmparser::Payload::CodeSectionStart { .. } => break,
            _ => {}
        }
    }
    // Checked here so the message is in the program's terms (the encoder's names the
    // component's internal instances).
    let start_type = start
        .and_then(|index| functions.get(index as usize))
        .and_then(|&ty| func_type(&types, ty));
    if !start_type.is_some_and(|f| f.params().is_empty() && f.results().is_empty()) {
        anyhow::bail!(
            "cannot adapt the WASI preview-1 program into a component: its `{START}` must be a \
             function taking and returning nothing"
        );
    }
    let routed;
    let module = match proc_exit {
        Some(entry) => {
            routed = route_proc_exit(module, &entry).map_err(|e| {
                anyhow::anyhow!("cannot adapt the WASI preview-1 program into a component: {e:#}")
            })?;
            &routed
        }
        None => module,
    };
    wit_component::ComponentEncoder::default()
        .validate(true)
        .module(module)
        .and_then(|encoder| encoder.adapter(PREVIEW1, COMMAND_ADAPTER))
        .and_then(|encoder| encoder.encode())
        .map_err(|e| {
            anyhow::anyhow!("cannot adapt the WASI preview-1 program into a component: {e:#}")
        })
}

/// Refuses a `proc_exit` import of another type than preview-1's `(i32) -> ()`, naming it
/// as the program does (routed, it would be named after the host's exit interface).
fn check_proc_exit_type(
    imports: &wasmparser::ImportSectionReader<'_>,
    types: &[wasmparser::SubType],
) -> anyhow::Result<()> {
    let mut seen = false;
    for import in imports.clone().into_imports() {
        let import = import?;
        if import.module != PREVIEW1 || import.name != "proc_exit" {
            continue;
        }
        if seen {
            // Only one entry is routed to the host's exit: one import, one exit status.
            anyhow::bail!(
                "cannot adapt the WASI preview-1 program into a component: it imports \
                 `{PREVIEW1}.proc_exit` more than once"
            );
        }
        seen = true;
        let expected = match import.ty {
            wasmparser::TypeRef::Func(ty) => func_type(types, ty).is_some_and(|f| {
                f.params() == [wasmparser::ValType::I32] && f.results().is_empty()
            }),
            _ => false,
        };
        if !expected {
            anyhow::bail!(
                "cannot adapt the WASI preview-1 program into a component: its import \
                 `{PREVIEW1}.proc_exit` must be a function taking one i32 and returning nothing"
            );
        }
    }
    Ok(())
}

/// The function type at `index` of the type section, if it is one.
fn func_type(types: &[wasmparser::SubType], index: u32) -> Option<&wasmparser::FuncType> {
    match &types.get(index as usize)?.composite_type.inner {
        wasmparser::CompositeInnerType::Func(f) => Some(f),
        _ => None,
    }
}

/// What the adaptation is, besides the adapter's bytes: the proc_exit routing above and the
/// component encoder (`wit-component`). Change the number when either changes what a module
/// becomes; every entry of an adapted program is then compiled again.
const ADAPTATION: &str = "osiiso-host preview-1 program, adaptation 1, wit-component 0.258.3";

/// The compile-cache key of the preview-1 program `module`: the hash of the module, of the
/// adapter and of [`ADAPTATION`]. The adaptation is deterministic, so the compiled component
/// is the same whenever all three are (and the cache entry's engine fingerprint names the
/// osiiso-host version).
pub(crate) fn cache_key(module: &[u8]) -> String {
    let mut hasher = blake3::Hasher::new_derive_key(ADAPTATION);
    hasher.update(blake3::hash(COMMAND_ADAPTER).as_bytes());
    hasher.update(module);
    hasher.finalize().to_hex().to_string()
}

/// Where the `wasi_snapshot_preview1.proc_exit` import sits in the import section.
struct ProcExit {
    /// The import section's contents.
    section: Range<usize>,
    /// The import entry.
    entry: Range<usize>,
}

/// The `proc_exit` import entry, when the section is in the plain encoding (one entry per
/// import); otherwise the program keeps the adapter's exit (status 0 or 1).
fn find_proc_exit(imports: &wasmparser::ImportSectionReader<'_>) -> Option<ProcExit> {
    let section = imports.range();
    let mut starts = Vec::new();
    let mut found = None;
    for item in imports.clone().into_iter_with_offsets() {
        let (offset, group) = item.ok()?;
        let wasmparser::Imports::Single(_, import) = group else {
            return None;
        };
        if import.module == PREVIEW1 && import.name == "proc_exit" {
            found = Some(starts.len());
        }
        starts.push(offset);
    }
    let index = found?;
    let end = starts.get(index + 1).copied().unwrap_or(section.end);
    Some(ProcExit {
        entry: starts[index]..end,
        section,
    })
}

/// `module` with its `proc_exit` import taken from [`EXIT_IMPORT`] and the WIT of that
/// interface embedded, for the component encoder.
fn route_proc_exit(module: &[u8], proc_exit: &ProcExit) -> anyhow::Result<Vec<u8>> {
    let (module_name, name) = (EXIT_IMPORT, "exit");
    // The entry: module name, field name, then its type, which stays.
    let entry = &module[proc_exit.entry.clone()];
    let (len, at) = read_u32(entry, 0)?;
    let (len, at) = read_u32(entry, at + len as usize)?;
    let ty = entry
        .get(at + len as usize..)
        .ok_or_else(|| anyhow::anyhow!("truncated import entry"))?;
    let mut renamed = Vec::new();
    for text in [module_name, name] {
        write_u32(&mut renamed, text.len() as u32);
        renamed.extend_from_slice(text.as_bytes());
    }
    renamed.extend_from_slice(ty);

    let section = proc_exit.section.clone();
    let mut contents = module[section.start..proc_exit.entry.start].to_vec();
    contents.extend_from_slice(&renamed);
    contents.extend_from_slice(&module[proc_exit.entry.end..section.end]);

    let header = section_header_start(module, section.start)?;
    let mut out = module[..header].to_vec();
    out.push(2); // the import section's id
    write_u32(&mut out, contents.len() as u32);
    out.extend_from_slice(&contents);
    out.extend_from_slice(&module[section.end..]);

    let mut resolve = wit_parser::Resolve::default();
    let package = resolve.push_str("osiiso-program-exit.wit", EXIT_WIT)?;
    let world = resolve.select_world(&[package], Some("program"))?;
    wit_component::embed_component_metadata(
        &mut out,
        &resolve,
        world,
        wit_component::StringEncoding::UTF8,
    )?;
    Ok(out)
}

/// Where the header (id and size) of the section whose contents start at `contents` begins.
fn section_header_start(module: &[u8], contents: usize) -> anyhow::Result<usize> {
    let mut at = 8; // magic and version
    while at < contents {
        let header = at;
        let (size, after) = read_u32(module, at + 1)?;
        if after == contents {
            return Ok(header);
        }
        at = after + size as usize;
    }
    Err(anyhow::anyhow!("import section not found"))
}

/// An unsigned LEB128 u32 at `at`: its value and the offset after it.
fn read_u32(bytes: &[u8], mut at: usize) -> anyhow::Result<(u32, usize)> {
    let mut value = 0u32;
    for shift in (0..35).step_by(7) {
        let byte = *bytes
            .get(at)
            .ok_or_else(|| anyhow::anyhow!("truncated LEB128"))?;
        at += 1;
        value |= u32::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok((value, at));
        }
    }
    Err(anyhow::anyhow!("LEB128 too long"))
}

fn write_u32(out: &mut Vec<u8>, mut value: u32) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leb128_round_trips() {
        for value in [0, 1, 127, 128, 300, 16_384, u32::MAX] {
            let mut bytes = Vec::new();
            write_u32(&mut bytes, value);
            assert_eq!(read_u32(&bytes, 0).unwrap(), (value, bytes.len()));
        }
        assert!(read_u32(&[0x80, 0x80], 0).is_err());
    }

    #[test]
    fn modules_that_are_not_programs_are_refused() {
        let no_start = wat::parse_str("(module (func (export \"f\")))").unwrap();
        assert!(matches!(
            check("lib.wasm", &no_start),
            Err(LoadError::CoreModule { .. })
        ));
        let foreign = wat::parse_str(
            r#"(module (import "env" "f" (func)) (func (export "_start")) (memory (export "memory") 1))"#,
        )
        .unwrap();
        let error = check("env.wasm", &foreign).unwrap_err();
        assert!(error.to_string().contains("`env.f`"), "{error}");
    }

    #[test]
    fn check_reads_no_further_than_the_exports() {
        let program = wat::parse_str(
            r#"(module (import "wasi_snapshot_preview1" "sched_yield" (func (result i32)))
                (memory (export "memory") 1) (func (export "_start")))"#,
        )
        .unwrap();
        check("program.wasm", &program).unwrap();
        // Anything after the export section is the compile process's to validate.
        let mut trailing = program.clone();
        trailing.extend_from_slice(&[10, 0xff, 0xff, 0xff, 0xff, 0x0f, 0xde, 0xad]);
        check("program.wasm", &trailing).unwrap();
        let error = adapt(&trailing).unwrap_err().to_string();
        // Found by validating the module itself: its offset is one in the module (just
        // past its end), not in the component the module would have become.
        assert!(
            error.starts_with("invalid core module: section out of order")
                && error.contains(&format!("(at offset 0x{:x})", program.len() + 6)),
            "{error}"
        );
        // A flood of sections before the exports is refused, not read to its end.
        let mut flood = b"\0asm\x01\0\0\0".to_vec();
        for _ in 0..=MAX_SECTIONS {
            flood.extend_from_slice(&[0, 1, 0]);
        }
        flood.extend_from_slice(&program[8..]);
        let error = check("flood.wasm", &flood).unwrap_err().to_string();
        assert!(error.contains("sections before its exports"), "{error}");
    }

    #[test]
    fn a_proc_exit_of_another_type_is_named_as_the_program_names_it() {
        let module = wat::parse_str(
            r#"(module
                (import "wasi_snapshot_preview1" "proc_exit" (func (param i64)))
                (memory (export "memory") 1)
                (func (export "_start")))"#,
        )
        .unwrap();
        check("exit.wasm", &module).unwrap();
        let error = adapt(&module).unwrap_err().to_string();
        assert!(
            error.contains("`wasi_snapshot_preview1.proc_exit` must be a function taking one i32")
                && !error.contains(EXIT_IMPORT),
            "{error}"
        );
    }

    #[test]
    fn start_and_proc_exit_are_checked_in_the_programs_terms() {
        let adapted = |wat: &str| adapt(&wat::parse_str(wat).unwrap()).map(|_| ());
        let error = adapted(
            r#"(module (memory (export "memory") 1) (func (export "_start") (param i32)))"#,
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("its `_start` must be a function taking and returning nothing"),
            "{error}"
        );
        let error = adapted(
            r#"(module
                (import "wasi_snapshot_preview1" "proc_exit" (func (param i32)))
                (import "wasi_snapshot_preview1" "proc_exit" (func (param i32)))
                (memory (export "memory") 1)
                (func (export "_start")))"#,
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("more than once"), "{error}");
        // Function indices count the imported functions first.
        adapted(
            r#"(module
                (import "wasi_snapshot_preview1" "sched_yield" (func (result i32)))
                (memory (export "memory") 1)
                (func (export "_start")))"#,
        )
        .unwrap();
    }

    #[test]
    fn foreign_import_names_are_shown_bounded_and_out_of_order_exports_left_to_validation() {
        let long = "x".repeat(10_000);
        let module = wat::parse_str(format!(
            r#"(module (import "env" "{long}" (func)) (memory (export "memory") 1)
                (func (export "_start")))"#
        ))
        .unwrap();
        let error = check("env.wasm", &module).unwrap_err().to_string();
        assert!(error.len() < 400, "{error}");
        // A start section before the exports: the module is invalid, not one without `_start`.
        let mut order = b"\0asm\x01\0\0\0".to_vec();
        order.extend_from_slice(&[1, 4, 1, 0x60, 0, 0]); // type () -> ()
        order.extend_from_slice(&[3, 2, 1, 0]); // one function
        order.extend_from_slice(&[8, 1, 0]); // start: function 0
        order.extend_from_slice(&[7, 10, 1, 6]);
        order.extend_from_slice(b"_start");
        order.extend_from_slice(&[0, 0]); // export _start
        order.extend_from_slice(&[10, 4, 1, 2, 0, 0x0b]); // code
        check("order.wasm", &order).unwrap();
        let error = adapt(&order).unwrap_err().to_string();
        assert!(error.contains("out of order"), "{error}");
    }

    #[test]
    fn the_adaptation_tag_names_the_locked_component_encoder() {
        let lock =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.lock")).unwrap();
        // The newest wit-component in the lock is this crate's (wasmtime's own is older).
        let version = lock
            .split("[[package]]")
            .filter(|entry| entry.contains("name = \"wit-component\""))
            .filter_map(|entry| entry.split("version = \"").nth(1)?.split('"').next())
            .max_by_key(|version| {
                version
                    .split('.')
                    .map(|part| part.parse::<u32>().unwrap_or(0))
                    .collect::<Vec<_>>()
            })
            .unwrap();
        assert!(
            ADAPTATION.ends_with(&format!("wit-component {version}")),
            "ADAPTATION ({ADAPTATION}) must name wit-component {version}: bump it with the \
             encoder, so that programs adapted by the old one are compiled again"
        );
    }

    #[test]
    fn counts_are_grouped_as_the_docs_write_them() {
        assert_eq!(grouped(1_000), "1,000");
        assert_eq!(grouped(10_000), "10,000");
        assert_eq!(grouped(1_000_000), "1,000,000");
        assert_eq!(grouped(999), "999");
    }

    #[test]
    fn proc_exit_is_routed_to_the_host() {
        let module = wat::parse_str(
            r#"(module
                (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
                (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
                (memory (export "memory") 1)
                (func (export "_start") (call $exit (i32.const 7))))"#,
        )
        .unwrap();
        check("exit.wasm", &module).unwrap();
        let component = adapt(&module).unwrap();
        assert!(wasmparser::Parser::is_component(&component));
        let text = String::from_utf8_lossy(&component);
        assert!(
            text.contains(EXIT_IMPORT),
            "the component imports the host's exit"
        );
    }
}
