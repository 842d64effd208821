//! `wc` as a plain WASI program, with no osiiso dependency: it counts the lines, words and
//! bytes of stdin. Built for `wasm32-wasip2` it is a `wasi:cli/run` component; built for
//! `wasm32-wasip1` a core module with `_start`. osiiso-host runs either as the task `run`:
//!
//! ```sh
//! osiiso-host run wc-program.wasm run --input '{"args": ["--env", "LANG"], "stdin": "a b\nc\n"}'
//! ```
//!
//! Options (after the counts are printed):
//! `--env NAME` prints the variable, `--stderr TEXT` writes TEXT to stderr, `--exit N` exits
//! with status N, `--spin` loops forever (for timeouts).

use std::io::{Read, Write};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut input = Vec::new();
    if let Err(error) = std::io::stdin().read_to_end(&mut input) {
        eprintln!("wc-program: cannot read stdin: {error}");
        std::process::exit(2);
    }
    let text = String::from_utf8_lossy(&input);
    let lines = input.iter().filter(|b| **b == b'\n').count();
    let words = text.split_ascii_whitespace().count();
    let mut out = std::io::stdout().lock();
    writeln!(out, "args: {}", args.join(" ")).unwrap();
    writeln!(out, "{lines} {words} {}", input.len()).unwrap();

    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = || match args.next() {
            Some(value) => value.clone(),
            None => {
                eprintln!("wc-program: {arg} needs a value");
                std::process::exit(2);
            }
        };
        match arg.as_str() {
            "--env" => {
                let name = value();
                match std::env::var(&name) {
                    Ok(v) => writeln!(out, "{name}={v}").unwrap(),
                    Err(_) => writeln!(out, "{name} is not set").unwrap(),
                }
            }
            "--stderr" => eprintln!("{}", value()),
            "--exit" => {
                let code: i32 = value().parse().unwrap_or(2);
                out.flush().unwrap();
                std::process::exit(code);
            }
            "--spin" => {
                out.flush().unwrap();
                let mut x = 0u64;
                loop {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
            _ => {}
        }
    }
}
