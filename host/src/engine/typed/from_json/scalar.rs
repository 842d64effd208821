//! Scalars from JSON: integers exact over their whole range, floats with the strings JSON
//! numbers cannot hold, bytes from base64.

use serde_json::Value;

use super::InputError;

/// An integer of type `T` (WIT name `name`): a JSON integer, or a number with no fractional
/// part within ±2^53 (where a double is exact).
pub(super) fn int<T>(json: &Value, name: &str) -> Result<T, InputError>
where
    T: TryFrom<i64> + TryFrom<u64> + Copy + Into<i128>,
    T: Bounded,
{
    const EXACT: f64 = 9_007_199_254_740_992.0;
    let Value::Number(n) = json else {
        return Err(InputError::expected(name, json));
    };
    let fits = if let Some(u) = n.as_u64() {
        T::try_from(u).ok()
    } else if let Some(i) = n.as_i64() {
        T::try_from(i).ok()
    } else {
        match n.as_f64() {
            Some(x) if x.fract() == 0.0 && x.abs() <= EXACT => T::try_from(x as i64).ok(),
            _ => return Err(InputError::expected(name, json)),
        }
    };
    fits.ok_or_else(|| {
        InputError::new(format!(
            "{n} is out of range for {name} ({}..={})",
            T::MIN.into(),
            T::MAX.into()
        ))
    })
}

/// The range of an integer type, for messages.
pub(super) trait Bounded: Sized {
    const MIN: Self;
    const MAX: Self;
}

macro_rules! bounded {
    ($($t:ty),*) => {$(
        impl Bounded for $t {
            const MIN: Self = <$t>::MIN;
            const MAX: Self = <$t>::MAX;
        }
    )*};
}

bounded!(i8, u8, i16, u16, i32, u32, i64, u64);

/// A float: a JSON number, or one of the strings `"NaN"`, `"Infinity"`, `"-Infinity"`.
pub(super) fn float(json: &Value, name: &str) -> Result<f64, InputError> {
    match json {
        Value::Number(n) => n.as_f64().ok_or_else(|| InputError::expected(name, json)),
        Value::String(s) => match s.as_str() {
            "NaN" => Ok(f64::NAN),
            "Infinity" => Ok(f64::INFINITY),
            "-Infinity" => Ok(f64::NEG_INFINITY),
            _ => Err(InputError::expected(name, json)),
        },
        other => Err(InputError::expected(name, other)),
    }
}

/// Standard base64 (RFC 4648, `+/`, padding optional).
pub(super) fn base64_decode(text: &str) -> Result<Vec<u8>, String> {
    let bad = || {
        "expected list<u8> as an array of bytes or a base64 string, got a string that is not base64"
            .to_string()
    };
    let text = text.trim_end_matches('=');
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for byte in text.bytes() {
        let digit = match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return Err(bad()),
        };
        acc = (acc << 6) | u32::from(digit);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    // A single leftover sextet cannot end a base64 text; other leftovers must be zero bits.
    if bits >= 6 || acc != 0 {
        return Err(bad());
    }
    Ok(out)
}
