//! The broker's frames, and the keys that sign them.
//!
//! Attempts and reports are *frames*: `OSIISO2\0`, a 32-byte MAC, the length of a JSON
//! header (u32, big-endian), the header, then the body: raw sections whose lengths the header
//! gives (an attempt's input; a report's value, stdout and stderr), so no content is escaped
//! twice on the wire. A body too large for one broker message travels as an object of the
//! payload store instead, named and hashed in the header ([`Body::Stored`]). What the headers
//! and the other messages hold is in [`message`](super::message).
//!
//! Every attempt carries a fresh random [`AttemptKey`]. Whatever a node sends about the
//! attempt (its report, its "still running" announcements) is signed with it, and so is the
//! submitter's cancellation: only those who read the attempt can speak for it. Who can read
//! attempts is the broker's permissions' business (docs/distributed.md, "Threat model").

use serde::{Deserialize, Serialize};

/// Every frame starts with this (the protocol's version is in it).
const MAGIC: &[u8; 8] = b"OSIISO2\0";
const MAC_LEN: usize = 32;
const PREFIX: usize = MAGIC.len() + MAC_LEN + 4;
/// The largest header a frame may have: bounded text fields, a sandbox and limits.
pub(crate) const MAX_HEADER: usize = 1 << 20;

/// The per-attempt secret: 32 random bytes, hex in JSON.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct AttemptKey([u8; 32]);

impl std::fmt::Debug for AttemptKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AttemptKey(..)")
    }
}

/// What a MAC says about its message.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Purpose {
    /// A report (the whole frame after the MAC).
    Report,
    /// "Node N still runs attempt T" (node, beat, token).
    Running,
    /// "Stop attempt T" (token).
    Cancel,
}

impl Purpose {
    fn domain(self) -> &'static [u8] {
        match self {
            Self::Report => b"osiiso2 report",
            Self::Running => b"osiiso2 running",
            Self::Cancel => b"osiiso2 cancel",
        }
    }
}

impl AttemptKey {
    /// A fresh key from the operating system's random source.
    pub(crate) fn random() -> Self {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).expect("the operating system's random source works");
        Self(key)
    }

    /// The MAC of `parts` (each length-prefixed, so parts cannot be shifted into each other).
    pub(crate) fn mac(&self, purpose: Purpose, parts: &[&[u8]]) -> Mac {
        let mut hasher = blake3::Hasher::new_keyed(&self.0);
        hasher.update(purpose.domain());
        for part in parts {
            hasher.update(&(part.len() as u64).to_be_bytes());
            hasher.update(part);
        }
        Mac(*hasher.finalize().as_bytes())
    }

    /// Whether `mac` is the MAC of `parts` (compared in constant time).
    pub(crate) fn verify(&self, purpose: Purpose, parts: &[&[u8]], mac: &Mac) -> bool {
        blake3::Hash::from(self.mac(purpose, parts).0) == blake3::Hash::from(mac.0)
    }
}

/// A MAC: 32 bytes, hex in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Mac(pub [u8; 32]);

fn to_hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

fn from_hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != N * 2 || !text.is_ascii() {
        return None;
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[i * 2..i * 2 + 2], 16).ok()?;
    }
    Some(out)
}

macro_rules! hex_serde {
    ($type:ident) => {
        impl Serialize for $type {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&to_hex(&self.0))
            }
        }

        impl<'de> Deserialize<'de> for $type {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                from_hex(&text)
                    .map($type)
                    .ok_or_else(|| serde::de::Error::custom("expected 64 hex digits"))
            }
        }
    };
}
hex_serde!(AttemptKey);
hex_serde!(Mac);

/// Where a frame's body is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Body {
    /// In the frame, after the header: sections of these lengths.
    Inline { sections: Vec<u64> },
    /// In the payload store: the object `object` of `size` bytes with BLAKE3 `blake3` (hex),
    /// the sections one after the other.
    Stored {
        object: String,
        blake3: String,
        sections: Vec<u64>,
    },
}

impl Body {
    /// The sections' lengths.
    pub(crate) fn sections(&self) -> &[u64] {
        match self {
            Self::Inline { sections } | Self::Stored { sections, .. } => sections,
        }
    }

    /// The body's whole size.
    pub(crate) fn size(&self) -> u64 {
        self.sections()
            .iter()
            .fold(0u64, |a, b| a.saturating_add(*b))
    }
}

/// Splits `body` into sections of `lengths`; `None` unless they add up exactly.
pub(crate) fn split<'a>(body: &'a [u8], lengths: &[u64]) -> Option<Vec<&'a [u8]>> {
    let mut rest = body;
    let mut sections = Vec::with_capacity(lengths.len());
    for &len in lengths {
        let len = usize::try_from(len).ok()?;
        if len > rest.len() {
            return None;
        }
        let (section, tail) = rest.split_at(len);
        sections.push(section);
        rest = tail;
    }
    rest.is_empty().then_some(sections)
}

/// A frame as read: its parts borrow the message.
#[derive(Debug)]
pub(crate) struct Frame<'a> {
    pub mac: Mac,
    pub header: &'a [u8],
    /// The inline body (empty for a stored one).
    pub body: &'a [u8],
    /// What the MAC covers: everything after it.
    pub signed: &'a [u8],
}

impl<'a> Frame<'a> {
    /// Reads a frame; an error says what is wrong with it.
    pub(crate) fn read(bytes: &'a [u8]) -> Result<Self, &'static str> {
        if bytes.len() < PREFIX || &bytes[..MAGIC.len()] != MAGIC {
            return Err("not an OSIISO2 frame");
        }
        let mut mac = [0u8; MAC_LEN];
        mac.copy_from_slice(&bytes[MAGIC.len()..MAGIC.len() + MAC_LEN]);
        let signed = &bytes[MAGIC.len() + MAC_LEN..];
        let len = u32::from_be_bytes(signed[..4].try_into().expect("four bytes")) as usize;
        if len > MAX_HEADER || len > bytes.len() - PREFIX {
            return Err("a header longer than the frame");
        }
        Ok(Self {
            mac: Mac(mac),
            header: &bytes[PREFIX..PREFIX + len],
            body: &bytes[PREFIX + len..],
            signed,
        })
    }

    /// The header, parsed.
    pub(crate) fn header<H: serde::de::DeserializeOwned>(&self) -> Result<H, serde_json::Error> {
        serde_json::from_slice(self.header)
    }
}

/// Writes a frame of `header` and the inline `body` sections, signed with `key` for
/// `purpose` (all zeros without one).
pub(crate) fn write_frame(
    header: &impl Serialize,
    body: &[&[u8]],
    key: Option<(&AttemptKey, Purpose)>,
) -> Result<Vec<u8>, serde_json::Error> {
    let header = serde_json::to_vec(header)?;
    let body_len: usize = body.iter().map(|s| s.len()).sum();
    let mut frame = Vec::with_capacity(PREFIX + header.len() + body_len);
    frame.extend_from_slice(MAGIC);
    frame.extend_from_slice(&[0u8; MAC_LEN]);
    frame.extend_from_slice(&(header.len() as u32).to_be_bytes());
    frame.extend_from_slice(&header);
    for section in body {
        frame.extend_from_slice(section);
    }
    if let Some((key, purpose)) = key {
        let mac = key.mac(purpose, &[&frame[MAGIC.len() + MAC_LEN..]]);
        frame[MAGIC.len()..MAGIC.len() + MAC_LEN].copy_from_slice(&mac.0);
    }
    Ok(frame)
}

/// The size of a frame of a header of `header` bytes and a body of `body` bytes.
pub(crate) fn frame_size(header: usize, body: usize) -> usize {
    PREFIX.saturating_add(header).saturating_add(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_reads_back_and_its_mac_covers_every_byte_after_it() {
        let key = AttemptKey::random();
        let header = serde_json::json!({"a": 1});
        let frame =
            write_frame(&header, &[b"\"x\"", b"out"], Some((&key, Purpose::Report))).unwrap();
        let read = Frame::read(&frame).unwrap();
        assert_eq!(read.header, br#"{"a":1}"#);
        assert_eq!(read.body, b"\"x\"out");
        assert!(key.verify(Purpose::Report, &[read.signed], &read.mac));
        assert!(!AttemptKey::random().verify(Purpose::Report, &[read.signed], &read.mac));
        assert!(!key.verify(Purpose::Cancel, &[read.signed], &read.mac));
        for i in 8..frame.len() {
            let mut bent = frame.clone();
            bent[i] ^= 1;
            let Ok(read) = Frame::read(&bent) else {
                continue;
            };
            assert!(
                !key.verify(Purpose::Report, &[read.signed], &read.mac),
                "byte {i} is not covered"
            );
        }
    }

    #[test]
    fn hostile_frames_are_refused_without_panicking() {
        assert!(Frame::read(b"").is_err());
        assert!(Frame::read(b"OSIISO1\0").is_err());
        let mut huge = MAGIC.to_vec();
        huge.extend_from_slice(&[0; 32]);
        huge.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(Frame::read(&huge).is_err());
        assert_eq!(split(b"abc", &[1, 1]), None);
        assert_eq!(split(b"abc", &[1, 5]), None);
        assert_eq!(split(b"abc", &[u64::MAX]), None);
        assert_eq!(split(b"abc", &[1, 2]), Some(vec![&b"a"[..], b"bc"]));
    }

    #[test]
    fn keys_and_macs_are_hex_in_json_and_nothing_else() {
        let key = AttemptKey::random();
        let json = serde_json::to_string(&key).unwrap();
        assert_eq!(json.len(), 66);
        assert_eq!(serde_json::from_str::<AttemptKey>(&json).unwrap(), key);
        assert!(serde_json::from_str::<AttemptKey>("\"00\"").is_err());
        assert!(serde_json::from_str::<Mac>(&format!("\"{}\"", "é".repeat(32))).is_err());
    }
}
