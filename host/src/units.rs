//! The duration and size syntax of the whole crate: `250ms`, `5s`, `2m`, `64MiB`.
//!
//! The CLI's flags, a jobs file's options and [`TaskOptions::with_json_overrides`]
//! (`"timeout": "250ms"`) all read durations with [`parse_duration`], and the engine's
//! messages show sizes with [`format_size`]. An embedder that takes the same settings from
//! its own configuration (a `timeout = "5s"` in a file, an `--memory 64MiB` flag) uses these
//! functions to accept exactly what the CLI accepts and to refuse the rest with the same
//! typed [`UnitError`].
//!
//! [`TaskOptions::with_json_overrides`]: crate::queue::TaskOptions::with_json_overrides

use std::time::Duration;

/// The most bytes of the text an error quotes (the rest is cut).
const QUOTED_BYTES: usize = 64;

/// What a [`UnitError`] was reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Quantity {
    /// A duration (`250ms`).
    Duration,
    /// A size in bytes (`64MiB`).
    Size,
}

impl std::fmt::Display for Quantity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Duration => "duration",
            Self::Size => "size",
        })
    }
}

impl Quantity {
    fn examples(self) -> &'static str {
        match self {
            Self::Duration => "250ms, 5s, 2m",
            Self::Size => "64MiB",
        }
    }
}

/// Why a duration or a size was refused. The text it quotes is cut at 64 bytes.
///
/// ```
/// use osiiso_host::units::{Quantity, UnitError, parse_duration};
///
/// assert!(matches!(
///     parse_duration("5 fortnights"),
///     Err(UnitError::UnknownUnit { quantity: Quantity::Duration, .. })
/// ));
/// assert_eq!(
///     parse_duration("-1s").unwrap_err().to_string(),
///     "invalid duration '-1s': must be >= 0"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UnitError {
    /// The text does not start with a number.
    #[error("invalid {quantity} '{text}' (expected e.g. {})", quantity.examples())]
    NotANumber {
        /// What was being read.
        quantity: Quantity,
        /// The text.
        text: String,
    },
    /// The number is followed by a unit this quantity does not know.
    #[error("invalid {quantity} unit '{unit}' in '{text}'")]
    UnknownUnit {
        /// What was being read.
        quantity: Quantity,
        /// The unit.
        unit: String,
        /// The text.
        text: String,
    },
    /// A negative (or NaN) duration.
    #[error("invalid {quantity} '{text}': must be >= 0")]
    Negative {
        /// What was being read.
        quantity: Quantity,
        /// The text.
        text: String,
    },
    /// A value past what a `Duration` or a `usize` holds.
    #[error("invalid {quantity} '{text}': too large")]
    TooLarge {
        /// What was being read.
        quantity: Quantity,
        /// The text.
        text: String,
    },
}

fn quoted(text: &str) -> String {
    crate::text::for_display(text, QUOTED_BYTES)
}

/// Parses a duration: a number with a unit (`ms`, `s`, `m`, `h`; `us` and `ns` too), or a
/// bare number of seconds. Negative, NaN and overflowing values are errors, never panics.
///
/// ```
/// use std::time::Duration;
/// use osiiso_host::units::parse_duration;
///
/// assert_eq!(parse_duration("250ms")?, Duration::from_millis(250));
/// assert_eq!(parse_duration("1.5")?, Duration::from_millis(1500));
/// assert_eq!(parse_duration("2m")?, Duration::from_secs(120));
/// assert!(parse_duration("-1s").is_err());
/// # Ok::<(), osiiso_host::units::UnitError>(())
/// ```
pub fn parse_duration(text: &str) -> Result<Duration, UnitError> {
    let text = text.trim();
    let split = text
        .find(|c: char| c.is_ascii_alphabetic())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let quantity = Quantity::Duration;
    let number: f64 = number.trim().parse().map_err(|_| UnitError::NotANumber {
        quantity,
        text: quoted(text),
    })?;
    let seconds = match unit.trim() {
        "" | "s" | "sec" => number,
        "ms" => number / 1e3,
        "us" | "µs" => number / 1e6,
        "ns" => number / 1e9,
        "m" | "min" => number * 60.0,
        "h" => number * 3600.0,
        other => {
            return Err(UnitError::UnknownUnit {
                quantity,
                unit: quoted(other),
                text: quoted(text),
            });
        }
    };
    seconds_to_duration(seconds).map_err(|error| match error {
        UnitError::Negative { .. } => UnitError::Negative {
            quantity,
            text: quoted(text),
        },
        _ => UnitError::TooLarge {
            quantity,
            text: quoted(text),
        },
    })
}

/// Converts seconds to a duration with checked arithmetic (NaN counts as negative), as the
/// jobs files' numeric durations are read.
///
/// ```
/// use std::time::Duration;
/// use osiiso_host::units::{UnitError, seconds_to_duration};
///
/// assert_eq!(seconds_to_duration(0.25)?, Duration::from_millis(250));
/// assert!(matches!(seconds_to_duration(f64::NAN), Err(UnitError::Negative { .. })));
/// assert!(matches!(seconds_to_duration(1e300), Err(UnitError::TooLarge { .. })));
/// # Ok::<(), UnitError>(())
/// ```
pub fn seconds_to_duration(seconds: f64) -> Result<Duration, UnitError> {
    let text = || seconds.to_string();
    if seconds.is_nan() || seconds < 0.0 {
        return Err(UnitError::Negative {
            quantity: Quantity::Duration,
            text: text(),
        });
    }
    Duration::try_from_secs_f64(seconds).map_err(|_| UnitError::TooLarge {
        quantity: Quantity::Duration,
        text: text(),
    })
}

/// Parses a size: a whole number with an optional unit (`B`, `KiB`, `MiB`, `GiB`, binary;
/// `KB`, `MB`, `GB`, decimal; `K`, `M`, `G` are binary). Units are case-insensitive.
///
/// ```
/// use osiiso_host::units::parse_size;
///
/// assert_eq!(parse_size("64MiB")?, 64 << 20);
/// assert_eq!(parse_size("4096")?, 4096);
/// assert_eq!(parse_size("2GB")?, 2_000_000_000);
/// assert!(parse_size("1.5MiB").is_err());
/// # Ok::<(), osiiso_host::units::UnitError>(())
/// ```
pub fn parse_size(text: &str) -> Result<usize, UnitError> {
    let text = text.trim();
    let split = text
        .find(|c: char| c.is_ascii_alphabetic())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let quantity = Quantity::Size;
    let number: u64 = number.trim().parse().map_err(|_| UnitError::NotANumber {
        quantity,
        text: quoted(text),
    })?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        _ => {
            return Err(UnitError::UnknownUnit {
                quantity,
                unit: quoted(unit.trim()),
                text: quoted(text),
            });
        }
    };
    number
        .checked_mul(factor)
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| UnitError::TooLarge {
            quantity,
            text: quoted(text),
        })
}

/// Formats a byte count with a binary unit, as the crate's messages show limits: `32 MiB`,
/// `1.5 GiB`, `512 B`.
///
/// ```
/// use osiiso_host::units::format_size;
///
/// assert_eq!(format_size(512), "512 B");
/// assert_eq!(format_size(32 << 20), "32 MiB");
/// assert_eq!(format_size(3 << 29), "1.5 GiB");
/// ```
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_quotes_at_most_a_bounded_escaped_text() {
        let long = format!("{}\x1b[2J", "9".repeat(10_000));
        let message = parse_size(&format!("{long}parsecs"))
            .unwrap_err()
            .to_string();
        assert!(message.len() < 400, "{message}");
        assert!(!message.contains('\x1b'), "{message}");
    }
}
