//! Checking a JSON text exactly as `serde_json::Value` would parse it — numbers in range,
//! strings well escaped, nesting within the recursion limit — without building anything. The
//! check of a finite run's inputs costs no memory beyond the line.

use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// A JSON value that parsed, and was dropped as it went.
pub(crate) struct Validated;

/// Checks `text` as `serde_json::from_str::<Value>` would parse it.
pub(crate) fn validate(text: &str) -> serde_json::Result<()> {
    serde_json::from_str::<Validated>(text).map(drop)
}

impl<'de> Deserialize<'de> for Validated {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // `deserialize_any`, as `Value` does: `deserialize_ignored_any` would skip numbers by
        // their syntax alone, and let `1e999` through.
        deserializer.deserialize_any(Validated)
    }
}

impl<'de> Visitor<'de> for Validated {
    type Value = Validated;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self, E> {
        Ok(Validated)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Self, E> {
        Ok(Validated)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Self, E> {
        Ok(Validated)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Self, E> {
        Ok(Validated)
    }

    fn visit_str<E>(self, _: &str) -> Result<Self, E> {
        Ok(Validated)
    }

    fn visit_unit<E>(self) -> Result<Self, E> {
        Ok(Validated)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self, A::Error> {
        while seq.next_element::<Validated>()?.is_some() {}
        Ok(Validated)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self, A::Error> {
        while map.next_entry::<Validated, Validated>()?.is_some() {}
        Ok(Validated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::Value;

    #[test]
    fn what_value_refuses_is_refused() {
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        for bad in [
            "1e999",
            "[1, -1e400]",
            "\"\\ud800\"",
            "\"\\x\"",
            "01",
            "{\"a\" 1}",
            "[1,]",
            &deep,
            "1 2",
            "",
        ] {
            assert!(serde_json::from_str::<Value>(bad).is_err(), "{bad}");
            assert!(validate(bad).is_err(), "{bad}");
        }
        for good in [
            "1e308",
            "{\"a\":{\"a\":[null,true,\"\\u00e9\"]},\"a\":2}",
            " [ ] ",
        ] {
            assert!(validate(good).is_ok(), "{good}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        #[test]
        fn agrees_with_value(text in "[\\[\\]{}\",:0-9.eE+\\-ntrufals\\\\ u]{0,40}") {
            prop_assert_eq!(validate(&text).is_ok(), serde_json::from_str::<Value>(&text).is_ok());
        }
    }
}
