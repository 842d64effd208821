//! The lines of an inputs or jobs file, each bounded before anything looks inside it: a line
//! is never held beyond its limit, and an over-long one is skipped to its end without being
//! read into memory, so that the lines after it can still be read.

use std::io::{self, BufRead};

/// Why a line could not be read.
#[derive(Debug)]
pub(crate) enum LineError {
    /// Over the line limit. The next call skips the rest of it.
    TooLong { line: usize },
    /// The source failed; nothing more is read.
    Io { line: usize, error: io::Error },
}

/// Lines (without their `\n` or `\r\n`) of a reader, each at most `max` bytes, with their
/// 1-based numbers.
pub(crate) struct BoundedLines<R> {
    reader: R,
    max: usize,
    line: usize,
    /// Bytes read (and skipped) so far.
    consumed: u64,
    /// The rest of an over-long line is still to be skipped.
    skipping: bool,
    done: bool,
}

impl<R: BufRead> BoundedLines<R> {
    pub(crate) fn new(reader: R, max: usize) -> Self {
        Self {
            reader,
            max,
            line: 0,
            consumed: 0,
            skipping: false,
            done: false,
        }
    }

    /// Bytes read so far, skipped ones included.
    pub(crate) fn consumed(&self) -> u64 {
        self.consumed
    }

    /// The buffered bytes, or an error that ends the reading.
    fn fill(&mut self) -> Result<&[u8], LineError> {
        loop {
            match self.reader.fill_buf() {
                Ok(_) => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => {
                    self.done = true;
                    return Err(LineError::Io {
                        line: self.line,
                        error,
                    });
                }
            }
        }
        // Filled above: this returns the same buffer without reading.
        self.reader.fill_buf().map_err(|error| LineError::Io {
            line: self.line,
            error,
        })
    }

    fn consume(&mut self, n: usize) {
        self.reader.consume(n);
        self.consumed += n as u64;
    }

    /// Skips to the end of the current line; false at the end of the source.
    fn skip_line(&mut self) -> Result<bool, LineError> {
        loop {
            let chunk = self.fill()?;
            if chunk.is_empty() {
                return Ok(false);
            }
            let (take, ends) = match chunk.iter().position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None => (chunk.len(), false),
            };
            self.consume(take);
            if ends {
                return Ok(true);
            }
        }
    }
}

impl<R: BufRead> Iterator for BoundedLines<R> {
    type Item = Result<(usize, Vec<u8>), LineError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        if std::mem::take(&mut self.skipping) {
            match self.skip_line() {
                Ok(true) => {}
                Ok(false) => {
                    self.done = true;
                    return None;
                }
                Err(error) => return Some(Err(error)),
            }
        }
        self.line += 1;
        let mut line = Vec::new();
        loop {
            let max = self.max;
            let chunk = match self.fill() {
                Ok(chunk) => chunk,
                Err(error) => return Some(Err(error)),
            };
            if chunk.is_empty() {
                self.done = true;
                if line.len() > max {
                    return Some(Err(LineError::TooLong { line: self.line }));
                }
                return (!line.is_empty()).then_some(Ok((self.line, line)));
            }
            let (take, ends) = match chunk.iter().position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None => (chunk.len(), false),
            };
            // Content so far, one byte of room for the `\r` of a `\r\n`.
            let content = line.len() + take - usize::from(ends);
            if content > max + 1 {
                self.consume(take);
                self.skipping = !ends;
                return Some(Err(LineError::TooLong { line: self.line }));
            }
            line.extend_from_slice(&chunk[..take]);
            self.consume(take);
            if ends {
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                if line.len() > max {
                    return Some(Err(LineError::TooLong { line: self.line }));
                }
                return Some(Ok((self.line, line)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &[u8], max: usize, capacity: usize) -> Vec<Result<(usize, Vec<u8>), String>> {
        let reader = io::BufReader::with_capacity(capacity, io::Cursor::new(text.to_vec()));
        BoundedLines::new(reader, max)
            .map(|r| r.map_err(|e| format!("{e:?}")))
            .collect()
    }

    #[test]
    fn an_overlong_line_is_skipped_and_the_next_ones_read() {
        let mut text = b"ok\n".to_vec();
        text.extend(std::iter::repeat_n(b'x', 10_000));
        text.extend(b"\n\"after\"\r\nlast");
        for capacity in [1, 7, 64, 1 << 16] {
            let got = lines(&text, 16, capacity);
            assert_eq!(got.len(), 4, "{capacity}: {got:?}");
            assert_eq!(got[0], Ok((1, b"ok".to_vec())));
            assert!(got[1].as_ref().unwrap_err().contains("TooLong { line: 2 }"));
            assert_eq!(got[2], Ok((3, b"\"after\"".to_vec())));
            assert_eq!(got[3], Ok((4, b"last".to_vec())));
        }
    }

    #[test]
    fn lines_at_the_limit_pass_and_one_byte_more_does_not() {
        for capacity in [1, 3, 1 << 16] {
            let got = lines(b"1234\n1234\r\n12345\n12345", 4, capacity);
            assert_eq!(got[0], Ok((1, b"1234".to_vec())));
            assert_eq!(got[1], Ok((2, b"1234".to_vec())));
            assert!(got[2].is_err() && got[3].is_err(), "{got:?}");
            assert_eq!(got.len(), 4);
        }
    }

    #[test]
    fn an_endless_line_is_refused_without_reading_it_whole() {
        let mut lines = BoundedLines::new(io::BufReader::new(io::repeat(b'x')), 1024);
        match lines.next() {
            Some(Err(LineError::TooLong { line: 1 })) => {}
            other => panic!("{other:?}"),
        }
        assert!(lines.consumed() < 1 << 20, "stopped at the limit");
    }
}
