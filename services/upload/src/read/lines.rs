//! Line numbers as people count them: `\n`, `\r\n` and a lone `\r` each end a line.
//!
//! The CSV reader counts `\n` only (a file with bare CR line breaks is all "line 1") and starts
//! a record's position before the blank lines it skips. [`Lines`] is fed every byte of the input
//! once, record by record, and says on which line each record really starts and where its text
//! begins.

/// The line counter of one input.
#[derive(Debug, Clone)]
pub struct Lines {
    /// The line the next byte is on.
    next: u64,
    /// The last byte fed was `\r` (a following `\n` ends no other line).
    after_cr: bool,
}

impl Default for Lines {
    fn default() -> Self {
        Self {
            next: 1,
            after_cr: false,
        }
    }
}

impl Lines {
    /// A counter whose first byte is on line `first` (after skipped preamble lines).
    pub fn starting_at(first: u64) -> Self {
        Self {
            next: first,
            after_cr: false,
        }
    }

    /// Feeds the bytes from the end of the previous record to the end of this one. Returns the
    /// line the record starts on and how many leading bytes (blank lines) are not its text.
    pub fn record(&mut self, bytes: &[u8]) -> (u64, usize) {
        let lead = bytes
            .iter()
            .take_while(|b| **b == b'\n' || **b == b'\r')
            .count();
        self.feed(&bytes[..lead]);
        let line = self.next;
        self.feed(&bytes[lead..]);
        (line, lead)
    }

    /// The line the next record starts on (unless blank lines come first).
    pub fn next(&self) -> u64 {
        self.next
    }

    fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            match b {
                b'\n' if self.after_cr => self.after_cr = false,
                b'\n' => self.next += 1,
                b'\r' => {
                    self.next += 1;
                    self.after_cr = true;
                }
                _ => self.after_cr = false,
            }
        }
    }
}

/// Where the first `n` lines of `sample` end (`\n`, `\r\n` and a lone `\r` each end a line),
/// or `None` when the sample holds fewer.
pub fn after_lines(sample: &[u8], n: u64) -> Option<usize> {
    let mut left = n;
    let mut i = 0;
    while left > 0 {
        let j = sample[i..]
            .iter()
            .position(|b| *b == b'\n' || *b == b'\r')?
            + i;
        i = if sample[j] == b'\r' && sample.get(j + 1) == Some(&b'\n') {
            j + 2
        } else {
            j + 1
        };
        left -= 1;
    }
    Some(i)
}

/// How many lines end in `bytes` (`\r\n` is one line break).
pub fn lines_in(bytes: &[u8]) -> u64 {
    let mut l = Lines::default();
    l.feed(bytes);
    l.next - 1
}

/// How the first line of `sample` ends: `lf`, `crlf`, `cr`, or `none`.
pub fn line_break(sample: &[u8]) -> &'static str {
    match sample.iter().position(|b| *b == b'\n' || *b == b'\r') {
        None => "none",
        Some(i) if sample[i] == b'\n' => "lf",
        Some(i) if sample.get(i + 1) == Some(&b'\n') => "crlf",
        Some(_) => "cr",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_skipped_whatever_their_break() {
        assert_eq!(after_lines(b"x\r\ny\rz\na,b\n", 3), Some(7));
        assert_eq!(after_lines(b"x\na", 1), Some(2));
        assert_eq!(after_lines(b"x\na", 2), None);
        assert_eq!(after_lines(b"abc", 0), Some(0));
        assert_eq!(lines_in(b"x\r\ny\rz\n"), 3);
        assert_eq!(lines_in(b"x\r\n\ny"), 2);
        let breaks = [b"a\nb".as_slice(), b"a\r\nb", b"a\rb", b"ab"].map(line_break);
        assert_eq!(breaks, ["lf", "crlf", "cr", "none"]);
    }

    fn lines_of(records: &[&str]) -> Vec<(u64, usize)> {
        let mut l = Lines::default();
        records.iter().map(|r| l.record(r.as_bytes())).collect()
    }

    #[test]
    fn every_line_break_convention_counts_once() {
        assert_eq!(lines_of(&["a\n", "b\n", "c"]), [(1, 0), (2, 0), (3, 0)]);
        assert_eq!(lines_of(&["a\r\n", "b\r\n", "c"]), [(1, 0), (2, 0), (3, 0)]);
        assert_eq!(lines_of(&["a\r", "b\r", "c"]), [(1, 0), (2, 0), (3, 0)]);
        // The reader may end a record at '\r' and start the next at '\n'.
        assert_eq!(lines_of(&["a\r", "\nb\r", "\nc"]), [(1, 0), (2, 1), (3, 1)]);
    }

    #[test]
    fn blank_lines_and_quoted_newlines_move_the_line_not_the_text() {
        assert_eq!(
            lines_of(&["a\n", "\n\nb\n", "\"x\ny\"\n", "z"]),
            [(1, 0), (4, 2), (5, 0), (7, 0)]
        );
        assert_eq!(lines_of(&["a\r", "\r\rb"]), [(1, 0), (4, 2)]);
    }
}
