//! What travels through the broker: an attempt, its report, a node's announcements, a
//! cancellation, a node's self-description.
//!
//! Attempts and reports are *frames*: `OSIISO2\0`, a 32-byte MAC, the length of a JSON
//! header (u32, big-endian), the header, then the body: raw sections whose lengths the header
//! gives (an attempt's input; a report's value, stdout and stderr), so no content is escaped
//! twice on the wire. A body too large for one broker message travels as an object of the
//! payload store instead, named and hashed in the header ([`Body::Stored`]).
//!
//! Every attempt carries a fresh random [`AttemptKey`]. Whatever a node sends about the
//! attempt (its report, its "still running" announcements) is signed with it, and so is the
//! submitter's cancellation: only those who read the attempt can speak for it. Who can read
//! attempts is the broker's permissions' business (docs/distributed.md, "Threat model").

use serde::{Deserialize, Serialize};

use crate::backend::remote::{AttemptSpec, WireOutcome, WireReport, WireValue};
use crate::failure::{FailureKind, TaskFailure};
use crate::json::Json;

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

/// One attempt, published by a submitter for any node to run. Its body is the input (the
/// JSON text, as is); `spec.input` is empty on the wire.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct AttemptHeader {
    pub submitter: String,
    /// The attempt's id within its submitter (random: cancels and reports name it).
    pub token: String,
    /// The attempt's secret (see the module docs).
    pub key: AttemptKey,
    /// The plugin's name, for messages and task identities (its component is in the plugin
    /// store as `blake3-<spec.plugin_hash>`).
    pub plugin_name: String,
    /// The component's size in bytes: a node reads no more of the stored object.
    pub plugin_size: u64,
    pub body: Body,
    pub spec: AttemptSpec,
}

/// What a report says.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum ReportKind {
    /// The attempt ran (or could not start): its report. The value and the captured output's
    /// text are the body's three sections, not in here.
    Ran(WireReport),
    /// The node took the attempt but will not run it (it is draining): publish it again; it
    /// does not count as an attempt.
    Returned,
    /// The broker handed the attempt out again (its holder stopped renewing its lease): the
    /// submitter decides whether its node is gone.
    Redelivered { delivered: u64 },
}

/// How an attempt ended, from the node that has it. Signed with the attempt's key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ReportHeader {
    pub submitter: String,
    pub token: String,
    /// The node that sends it.
    pub node: String,
    pub kind: ReportKind,
    /// The stored plugin did not match its name: the submitter checks the store again.
    #[serde(default)]
    pub bad_plugin: bool,
    pub body: Body,
}

/// The body sections of a report: the value's JSON text, stdout's text, stderr's text.
pub(crate) const REPORT_SECTIONS: usize = 3;

/// Moves the value and the captured texts of `report` out into body sections (the value's
/// place in the header keeps `null`).
pub(crate) fn report_sections(report: &mut WireReport) -> [Vec<u8>; REPORT_SECTIONS] {
    let value = match &mut report.outcome {
        WireOutcome::Succeeded(value) => {
            match std::mem::replace(value, WireValue::Sent(Json::null())) {
                WireValue::Sent(json) => json.as_str().as_bytes().to_vec(),
                WireValue::Received(raw) => raw.get().as_bytes().to_vec(),
            }
        }
        _ => Vec::new(),
    };
    let text = |output: &mut Option<crate::failure::CapturedOutput>| {
        output
            .as_mut()
            .map(|o| std::mem::take(&mut o.text).into_bytes())
            .unwrap_or_default()
    };
    let stdout = text(&mut report.stdout);
    let stderr = text(&mut report.stderr);
    [value, stdout, stderr]
}

/// Puts the sections back into `report` (the inverse of [`report_sections`]); `None` when a
/// section is not UTF-8 or is there for a field that is not. A value that is not JSON a queue
/// keeps (see [`Json`]) makes the report a `Serialization` failure naming `sender`: the task
/// fails, typed, and the rest of the report still counts.
pub(crate) fn restore_report(
    report: &mut WireReport,
    sections: &[&[u8]],
    sender: &str,
) -> Option<()> {
    let [value, stdout, stderr] = sections else {
        return None;
    };
    let text = |bytes: &[u8]| std::str::from_utf8(bytes).ok().map(str::to_string);
    match &mut report.outcome {
        WireOutcome::Succeeded(slot) => match Json::from_string(text(value)?) {
            Ok(json) => *slot = WireValue::Sent(json),
            Err(e) => {
                report.outcome = WireOutcome::Failed(TaskFailure::new(
                    FailureKind::Serialization,
                    format!("{sender} sent a value that is not JSON: {e}"),
                ));
            }
        },
        _ if !value.is_empty() => return None,
        _ => {}
    }
    for (output, bytes) in [(&mut report.stdout, stdout), (&mut report.stderr, stderr)] {
        match output {
            Some(output) => output.text = text(bytes)?,
            None if !bytes.is_empty() => return None,
            None => {}
        }
    }
    Some(())
}

/// "These attempts of yours are held here": a node to one submitter, every
/// [`ANNOUNCE_AGAIN`](super::timing::ANNOUNCE_AGAIN), the submitter's proof that the node is
/// alive. Each entry is signed with its attempt's key over (node, beat, token, running);
/// `beat` grows with every announcement, so an old one cannot be replayed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct RunningMsg {
    pub node: String,
    pub beat: u64,
    pub attempts: Vec<Announced>,
}

/// One attempt of a [`RunningMsg`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Announced {
    pub token: String,
    /// Its guest runs (its clock runs on the node); else the node prepares it (fetches its
    /// plugin or input, compiles).
    pub running: bool,
    /// The guest's latest `progress(done, total)`, when it reported one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<[u64; 2]>,
    pub mac: Mac,
}

impl Announced {
    pub(crate) fn new(
        key: &AttemptKey,
        node: &str,
        beat: u64,
        token: &str,
        running: bool,
        progress: Option<[u64; 2]>,
    ) -> Self {
        Self {
            token: token.to_string(),
            running,
            progress,
            mac: key.mac(
                Purpose::Running,
                &Self::parts(node, beat, token, running, progress)
                    .each_ref()
                    .map(Vec::as_slice),
            ),
        }
    }

    /// Whether `key` signed it, in an announcement of `node` numbered `beat`.
    pub(crate) fn is_signed_by(&self, key: &AttemptKey, node: &str, beat: u64) -> bool {
        let parts = Self::parts(node, beat, &self.token, self.running, self.progress);
        key.verify(
            Purpose::Running,
            &parts.each_ref().map(Vec::as_slice),
            &self.mac,
        )
    }

    fn parts(
        node: &str,
        beat: u64,
        token: &str,
        running: bool,
        progress: Option<[u64; 2]>,
    ) -> [Vec<u8>; 5] {
        let progress = match progress {
            Some([done, total]) => [&done.to_be_bytes()[..], &total.to_be_bytes()[..]].concat(),
            None => Vec::new(),
        };
        [
            node.as_bytes().to_vec(),
            beat.to_be_bytes().to_vec(),
            token.as_bytes().to_vec(),
            vec![u8::from(running)],
            progress,
        ]
    }
}

/// "Stop attempt `token`": a submitter to every node, signed with the attempt's key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct CancelMsg {
    pub token: String,
    pub mac: Mac,
}

impl CancelMsg {
    pub(crate) fn new(key: &AttemptKey, token: &str) -> Self {
        Self {
            token: token.to_string(),
            mac: key.mac(Purpose::Cancel, &[token.as_bytes()]),
        }
    }

    /// Whether it was signed with `key`.
    pub(crate) fn is_signed_by(&self, key: &AttemptKey) -> bool {
        key.verify(Purpose::Cancel, &[self.token.as_bytes()], &self.mac)
    }
}

/// A live node, as it describes itself in the nodes bucket.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NodeInfo {
    /// Its id (unique per `serve` process).
    pub id: String,
    /// The machine it runs on.
    pub host: String,
    /// Attempts it runs at once.
    pub slots: usize,
    /// Attempts running now.
    pub running: usize,
    /// Plugins in its memory.
    pub cached: Vec<CachedPlugin>,
    /// The `osiiso-host` version.
    pub version: String,
}

/// A plugin a node holds in memory.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct CachedPlugin {
    /// Its name, as the submitter that sent it first called it.
    pub name: String,
    /// The BLAKE3 hash of its component (hex).
    pub hash: String,
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
    fn report_sections_round_trip_and_refuse_strays() {
        use crate::failure::CapturedOutput;
        let output = |text: &str| {
            Some(CapturedOutput {
                text: text.to_string(),
                truncated: false,
                total_bytes: text.len() as u64,
            })
        };
        let value = Json::parse(r#"{"z":"\"quoted\"","a":[1e15]}"#).unwrap();
        let original = WireReport {
            outcome: WireOutcome::Succeeded(WireValue::Sent(value.clone())),
            fuel_consumed: Some(3),
            stdout: output("out\u{1b}[0m"),
            stderr: None,
        };
        let mut report = original.clone();
        let sections = report_sections(&mut report);
        // The value travels as its own text, once, and the header keeps `null` in its place.
        assert_eq!(sections[0], value.as_str().as_bytes());
        let header = serde_json::to_string(&report).unwrap();
        assert!(header.contains(r#"{"Succeeded":null}"#), "{header}");
        let mut received: WireReport = serde_json::from_str(&header).unwrap();
        let borrowed: Vec<&[u8]> = sections.iter().map(Vec::as_slice).collect();
        restore_report(&mut received, &borrowed, "node n1").unwrap();
        let restored = received.into_report("node n1");
        let crate::attempt::AttemptOutcome::Succeeded(back) = &restored.outcome else {
            panic!("{restored:?}");
        };
        assert_eq!(
            back.as_str(),
            value.as_str(),
            "the same text, key order kept"
        );
        assert_eq!(restored.stdout.unwrap().text, "out\u{1b}[0m");
        // Text for an output that was not captured is refused.
        let mut report = original.clone();
        assert!(restore_report(&mut report, &[b"1", b"", b"stray"], "node n1").is_none());
        assert!(restore_report(&mut report, &[&[0xff], b"", b""], "node n1").is_none());
        // A value that is not JSON fails the task, typed, naming the node.
        let mut report = original;
        restore_report(&mut report, &[b"[1,", b"out", b""], "node n1").unwrap();
        let failed = report.into_report("node n1");
        let crate::attempt::AttemptOutcome::Failed(failure) = &failed.outcome else {
            panic!("{failed:?}");
        };
        assert_eq!(failure.kind, FailureKind::Serialization);
        assert!(
            failure
                .message
                .contains("node n1 sent a value that is not JSON")
        );
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
