//! Rows kept for the end of a run (`--output json` and `table` print in input order), on disk
//! rather than in memory: each row is appended to an unlinked temporary file as its task
//! finishes, and memory holds only where each one is (16 bytes a task).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use parking_lot::Mutex;

/// Rows by input position, in a temporary file that disappears with the process.
pub(crate) struct Spill {
    inner: Mutex<Inner>,
}

struct Inner {
    file: File,
    /// Bytes written so far.
    end: u64,
    /// Where the row of each position is: `(offset, len)`, `len == MISSING` for none yet.
    rows: Vec<(u64, u64)>,
}

const MISSING: u64 = u64::MAX;

impl Spill {
    /// A spill file in the temporary directory (`$TMPDIR`), already unlinked.
    pub(crate) fn new() -> io::Result<Self> {
        let file = tempfile::tempfile()?;
        Ok(Self {
            inner: Mutex::new(Inner {
                file,
                end: 0,
                rows: Vec::new(),
            }),
        })
    }

    /// Keeps `row` as the row of `position`.
    pub(crate) fn put(&self, position: usize, row: &[u8]) -> io::Result<()> {
        let mut inner = self.inner.lock();
        let offset = inner.end;
        inner.file.write_all_at(row, offset)?;
        inner.end += row.len() as u64;
        if inner.rows.len() <= position {
            inner.rows.resize(position + 1, (0, MISSING));
        }
        inner.rows[position] = (offset, row.len() as u64);
        Ok(())
    }

    /// Calls `each` with every row, in position order.
    pub(crate) fn for_each(&self, mut each: impl FnMut(&[u8]) -> io::Result<()>) -> io::Result<()> {
        let inner = self.inner.lock();
        let mut row = Vec::new();
        for &(offset, len) in &inner.rows {
            if len == MISSING {
                continue;
            }
            row.resize(len as usize, 0);
            inner.file.read_exact_at(&mut row, offset)?;
            each(&row)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_come_back_in_position_order() {
        let spill = Spill::new().unwrap();
        spill.put(2, b"two").unwrap();
        spill.put(0, b"zero").unwrap();
        spill.put(4, b"").unwrap();
        let mut seen = Vec::new();
        spill
            .for_each(|row| {
                seen.push(String::from_utf8(row.to_vec()).unwrap());
                Ok(())
            })
            .unwrap();
        assert_eq!(seen, ["zero", "two", ""]);
    }
}
