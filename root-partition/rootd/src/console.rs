//! A child's console as rootd keeps it: the last [`CONSOLE_KEEP`] bytes, addressed by
//! absolute offset since the partition was created, plus the complete lines not yet
//! logged.

use std::collections::VecDeque;

/// Bytes of console output rootd keeps per partition.
pub const CONSOLE_KEEP: usize = 64 * 1024;

/// The longest line logged as one (longer output is logged in pieces of this size).
const LINE_MAX: usize = 1024;

/// The last [`CONSOLE_KEEP`] bytes of a child's console.
#[derive(Clone, Debug, Default)]
pub struct ConsoleBuffer {
    bytes: VecDeque<u8>,
    /// Absolute offset of `bytes[0]`.
    start: u64,
    /// Bytes of the current, unfinished line.
    partial: Vec<u8>,
}

/// Bytes read from a [`ConsoleBuffer`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsoleRead {
    /// The bytes from `offset` on.
    pub data: Vec<u8>,
    /// Absolute offset of `data[0]` (later than the asked offset if older bytes were
    /// dropped).
    pub offset: u64,
    /// Offset to ask for next.
    pub next_offset: u64,
}

impl ConsoleBuffer {
    /// An empty console.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends `data`, dropping the oldest bytes beyond [`CONSOLE_KEEP`], and returns the
    /// lines it completed (without their `\n`; a line longer than 1 KiB is cut).
    pub fn push(&mut self, data: &[u8]) -> Vec<String> {
        self.bytes.extend(data);
        let excess = self.bytes.len().saturating_sub(CONSOLE_KEEP);
        self.bytes.drain(..excess);
        self.start = self.start.saturating_add(excess as u64);
        let mut lines = Vec::new();
        for &byte in data {
            if byte == b'\n' {
                lines.push(self.take_line());
            } else if byte != b'\r' {
                self.partial.push(byte);
                if self.partial.len() >= LINE_MAX {
                    lines.push(self.take_line());
                }
            }
        }
        lines
    }

    fn take_line(&mut self) -> String {
        let line = String::from_utf8_lossy(&self.partial).into_owned();
        self.partial.clear();
        line
    }

    /// The unfinished last line, if any (logged when the partition stops).
    pub fn flush_partial(&mut self) -> Option<String> {
        (!self.partial.is_empty()).then(|| self.take_line())
    }

    /// Offset one past the newest byte.
    #[must_use]
    pub fn end(&self) -> u64 {
        self.start.saturating_add(self.bytes.len() as u64)
    }

    /// Everything kept from `offset` on (from the oldest kept byte if `offset` is older).
    #[must_use]
    pub fn read_from(&self, offset: u64) -> ConsoleRead {
        let from = offset.clamp(self.start, self.end());
        // `from - start` is at most the buffer length.
        let skip = usize::try_from(from - self.start).unwrap_or(usize::MAX);
        ConsoleRead {
            data: self.bytes.iter().skip(skip).copied().collect(),
            offset: from,
            next_offset: self.end(),
        }
    }

    /// Everything kept, as text.
    #[must_use]
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.read_from(0).data).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_offsets() {
        let mut console = ConsoleBuffer::new();
        assert_eq!(console.push(b"GUEST HEL"), Vec::<String>::new());
        assert_eq!(
            console.push(b"LO\r\nsecond\nthi"),
            ["GUEST HELLO", "second"]
        );
        assert_eq!(console.end(), 23);
        let read = console.read_from(18);
        assert_eq!(read.data, b"d\nthi");
        assert_eq!((read.offset, read.next_offset), (18, 23));
        assert_eq!(console.read_from(99).data, b"");
        assert_eq!(console.flush_partial().as_deref(), Some("thi"));
        assert_eq!(console.flush_partial(), None);
    }

    #[test]
    fn keeps_only_the_last_64_kib() {
        let mut console = ConsoleBuffer::new();
        let chunk: Vec<u8> = (0..1000u32).map(|i| b'a' + (i % 26) as u8).collect();
        for _ in 0..70 {
            console.push(&chunk);
        }
        assert_eq!(console.end(), 70_000);
        let read = console.read_from(0);
        assert_eq!(read.offset, 70_000 - CONSOLE_KEEP as u64);
        assert_eq!(read.data.len(), CONSOLE_KEEP);
        // The newest byte is the last of the chunk.
        assert_eq!(read.data.last(), chunk.last());
    }

    #[test]
    fn overlong_lines_are_cut() {
        let mut console = ConsoleBuffer::new();
        let lines = console.push(&[b'x'; 2500]);
        assert_eq!(lines.len(), 2);
        assert!(lines.iter().all(|l| l.len() == LINE_MAX));
        assert_eq!(console.flush_partial().map(|l| l.len()), Some(452));
    }
}
