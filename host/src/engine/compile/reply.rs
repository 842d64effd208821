//! What a compile process writes on its stdout: one reply, `MAGIC`, a kind byte, a
//! little-endian `u64` length and that many bytes, then nothing. The parent reads it with a
//! bound on the length and takes it only from a process that then exits 0.

use std::io::{self, Read, Write};

/// First bytes of a reply.
const MAGIC: &[u8; 16] = b"osiiso-compile1\0";
/// Magic, kind and length.
const HEADER: usize = 16 + 1 + 8;
/// The longest message a compile process sends (an artifact aside).
pub(super) const MAX_MESSAGE: usize = 16 << 10;

/// One reply of a compile process.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Reply {
    /// The compiled component, as `Engine::precompile_component` serialized it.
    Artifact(Vec<u8>),
    /// The bytes are not a valid component (the compiler's message).
    Invalid(String),
    /// The bytes are a core module that cannot be adapted into a component (why).
    Unadaptable(String),
    /// The compile process is another build: its engine fingerprint is not the one asked for.
    Incompatible(String),
    /// The compile process could not do its job (bad arguments, no engine).
    Failed(String),
}

impl Reply {
    fn kind(&self) -> u8 {
        match self {
            Self::Artifact(_) => 0,
            Self::Invalid(_) => 1,
            Self::Incompatible(_) => 2,
            Self::Failed(_) => 3,
            Self::Unadaptable(_) => 4,
        }
    }

    /// Writes the reply; messages are cut to [`MAX_MESSAGE`] bytes (at a character boundary).
    pub(super) fn write(&self, out: &mut impl Write) -> io::Result<()> {
        let payload = match self {
            Self::Artifact(bytes) => bytes.as_slice(),
            Self::Invalid(text)
            | Self::Incompatible(text)
            | Self::Failed(text)
            | Self::Unadaptable(text) => {
                let mut end = text.len().min(MAX_MESSAGE);
                while !text.is_char_boundary(end) {
                    end -= 1;
                }
                &text.as_bytes()[..end]
            }
        };
        out.write_all(MAGIC)?;
        out.write_all(&[self.kind()])?;
        out.write_all(&(payload.len() as u64).to_le_bytes())?;
        out.write_all(payload)?;
        out.flush()
    }

    /// Reads one reply whose artifact is at most `max_artifact` bytes, and checks that the
    /// stream ends after it. Anything else is an error that says what was wrong.
    pub(super) fn read(input: &mut impl Read, max_artifact: u64) -> Result<Self, String> {
        let mut header = [0u8; HEADER];
        read_exact(input, &mut header, "its reply header")?;
        if &header[..16] != MAGIC {
            return Err("its reply does not start with the compile reply magic".into());
        }
        let kind = header[16];
        let len = u64::from_le_bytes(header[17..].try_into().expect("8 bytes"));
        let bound = if kind == 0 {
            max_artifact
        } else {
            MAX_MESSAGE as u64
        };
        if len > bound {
            return Err(format!(
                "its reply announces {len} bytes, more than the {bound} it may send"
            ));
        }
        let mut payload = Vec::new();
        input
            .take(len)
            .read_to_end(&mut payload)
            .map_err(|e| format!("cannot read its reply: {e}"))?;
        if payload.len() as u64 != len {
            return Err(format!(
                "its reply ends after {} of {len} bytes",
                payload.len()
            ));
        }
        let mut rest = [0u8; 1];
        if matches!(input.read(&mut rest), Ok(n) if n > 0) {
            return Err("it wrote more than one reply".into());
        }
        let text = || String::from_utf8_lossy(&payload).into_owned();
        Ok(match kind {
            0 => Self::Artifact(payload),
            1 => Self::Invalid(text()),
            2 => Self::Incompatible(text()),
            3 => Self::Failed(text()),
            4 => Self::Unadaptable(text()),
            other => return Err(format!("its reply has an unknown kind {other}")),
        })
    }
}

fn read_exact(input: &mut impl Read, buf: &mut [u8], what: &str) -> Result<(), String> {
    input.read_exact(buf).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            format!("it ended before {what}")
        } else {
            format!("cannot read {what}: {e}")
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(reply: &Reply, max: u64) -> Result<Reply, String> {
        let mut bytes = Vec::new();
        reply.write(&mut bytes).unwrap();
        Reply::read(&mut bytes.as_slice(), max)
    }

    #[test]
    fn replies_round_trip() {
        for reply in [
            Reply::Artifact(vec![1, 2, 3]),
            Reply::Artifact(Vec::new()),
            Reply::Invalid("bad section".into()),
            Reply::Incompatible("engine abc".into()),
            Reply::Failed("no engine".into()),
            Reply::Unadaptable("not a program".into()),
        ] {
            assert_eq!(round_trip(&reply, 16).unwrap(), reply);
        }
    }

    #[test]
    fn oversized_truncated_and_trailing_replies_are_refused() {
        assert!(
            round_trip(&Reply::Artifact(vec![0; 17]), 16)
                .unwrap_err()
                .contains("more than the 16")
        );
        let mut bytes = Vec::new();
        Reply::Artifact(vec![7; 10]).write(&mut bytes).unwrap();
        let cut = &bytes[..bytes.len() - 1];
        assert!(
            Reply::read(&mut &cut[..], 16)
                .unwrap_err()
                .contains("ends after 9 of 10")
        );
        let mut twice = bytes.clone();
        twice.extend_from_slice(&bytes);
        assert!(
            Reply::read(&mut twice.as_slice(), 16)
                .unwrap_err()
                .contains("more than one")
        );
        assert!(
            Reply::read(&mut &b"garbage"[..], 16)
                .unwrap_err()
                .contains("ended before")
        );
        let mut wrong = bytes.clone();
        wrong[0] ^= 1;
        assert!(
            Reply::read(&mut wrong.as_slice(), 16)
                .unwrap_err()
                .contains("magic")
        );
    }

    #[test]
    fn long_messages_are_cut_at_a_character_boundary() {
        let long = "é".repeat(MAX_MESSAGE);
        let Reply::Invalid(text) = round_trip(&Reply::Invalid(long), 0).unwrap() else {
            panic!("not an Invalid reply");
        };
        assert!(text.len() <= MAX_MESSAGE && text.chars().all(|c| c == 'é'));
    }
}
