//! Parsing and formatting of the durations and sizes users type: `250ms`, `5s`, `2m`, `64MiB`.

use std::time::Duration;

/// Parses a duration: a number with a unit (`ms`, `s`, `m`, `h`; `us` too), or a bare number
/// of seconds. Negative, NaN and overflowing values are errors, never panics.
///
/// ```
/// use osiiso_host::units::parse_duration;
/// assert_eq!(parse_duration("250ms").unwrap(), std::time::Duration::from_millis(250));
/// assert_eq!(parse_duration("1.5").unwrap(), std::time::Duration::from_millis(1500));
/// assert!(parse_duration("-1s").is_err());
/// ```
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| c.is_ascii_alphabetic())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("invalid duration '{text}' (expected e.g. 250ms, 5s, 2m)"))?;
    let seconds = match unit.trim() {
        "" | "s" | "sec" => number,
        "ms" => number / 1e3,
        "us" | "µs" => number / 1e6,
        "ns" => number / 1e9,
        "m" | "min" => number * 60.0,
        "h" => number * 3600.0,
        other => return Err(format!("invalid duration unit '{other}' in '{text}'")),
    };
    seconds_to_duration(seconds).map_err(|e| format!("invalid duration '{text}': {e}"))
}

/// Converts seconds to a duration with checked arithmetic (NaN counts as negative).
pub fn seconds_to_duration(seconds: f64) -> Result<Duration, String> {
    if seconds.is_nan() || seconds < 0.0 {
        return Err("must be >= 0".into());
    }
    Duration::try_from_secs_f64(seconds).map_err(|_| "too large".into())
}

/// Parses a size: a number with an optional unit (`B`, `KiB`, `MiB`, `GiB`, `KB`, `MB`, `GB`).
///
/// ```
/// use osiiso_host::units::parse_size;
/// assert_eq!(parse_size("64MiB").unwrap(), 64 << 20);
/// assert_eq!(parse_size("4096").unwrap(), 4096);
/// ```
pub fn parse_size(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| c.is_ascii_alphabetic())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .trim()
        .parse()
        .map_err(|_| format!("invalid size '{text}' (expected e.g. 64MiB)"))?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        other => return Err(format!("invalid size unit '{other}' in '{text}'")),
    };
    number
        .checked_mul(factor)
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| format!("size '{text}' is too large"))
}

/// Formats a byte count with a binary unit: `32 MiB`, `1.5 GiB`, `512 B`.
pub fn format_size(bytes: usize) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if value.fract() == 0.0 {
        format!("{value} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
