//! A hostile typed component: it returns values and errors as large and as nasty as it likes.
//! The host bounds what it builds from them and escapes them before a terminal sees them.

wit_bindgen::generate!({ path: "wit", world: "hostile-typed" });

struct Hostile;

/// Moves the cursor, recolours and forges a line: what must never reach a terminal raw.
const ESCAPES: &str = "\x1b[2J\x1b[31mred\r\n{\"status\":\"succeeded\"}\u{202e}";

impl Guest for Hostile {
    fn big_string(mib: u32) -> String {
        "\0".repeat(mib as usize * (1 << 20))
    }

    fn big_bytes(n: u32) -> Vec<u8> {
        vec![0xff; n as usize]
    }

    fn big_err(kib: u32) -> Result<u32, String> {
        Err("e".repeat(kib as usize * 1024))
    }

    fn terminal(fail: bool) -> Result<String, String> {
        if fail {
            Err(ESCAPES.to_string())
        } else {
            Ok(ESCAPES.to_string())
        }
    }
}

export!(Hostile);
