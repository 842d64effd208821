//! Guest text aimed at the terminal and at the result stream: escape sequences, carriage
//! returns and newlines in names, messages and logs; a forged result row on stdout.
use osiiso_guest::{TaskError, task};

/// What a guest might send to clear the screen, recolour it and forge a line.
const NASTY: &str = "\x1b[2J\x1b[31mred\r\nforged line\x07";

/// Fails with a message full of control characters.
#[task]
fn escape() -> Result<(), TaskError> {
    Err(TaskError::failed(NASTY))
}

/// Logs control characters, trying to forge a log line.
#[task]
fn shout() -> u32 {
    osiiso_guest::log::error!("{NASTY}\nERROR forged log line");
    1
}

/// Prints a forged result row on stdout, then succeeds.
#[task]
fn forge_row() -> u32 {
    println!(
        "{{\"id\":\"forged\",\"name\":\"forged\",\"task\":\"x\",\"status\":\"succeeded\",\"value\":666}}"
    );
    1
}

/// A task whose very name carries an escape sequence.
#[task(name = "evil\u{1b}[2Jname")]
fn evil_name() -> u32 {
    2
}

fn main() {}
