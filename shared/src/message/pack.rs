//! Several rows in one message: a *pack*.
//!
//! Every message costs the same on both sides whatever its size — a delivery report, a header
//! parse, a poll — so the upload gathers the keyless rows of a run (they go to one partition
//! anyway) into one message:
//!
//! - headers: [`HEADER_IMPORT`], [`HEADER_LINE`] (the first row's line) and [`HEADER_TABLE`] as
//!   for one row, and [`HEADER_LINES`]: every row's line, in order, as decimals joined by `,`
//!   (strictly ascending; the first is [`HEADER_LINE`]'s);
//! - value: a JSON array of the rows' objects, one per line, in the same order;
//! - with a signing key, [`HEADER_SIGNATURE`] signs the lines instead of the line.
//!
//! A message without [`HEADER_LINES`] is one row, as before packs existed.
//!
//! [`HEADER_IMPORT`]: super::HEADER_IMPORT
//! [`HEADER_LINE`]: super::HEADER_LINE
//! [`HEADER_TABLE`]: super::HEADER_TABLE
//! [`HEADER_SIGNATURE`]: super::HEADER_SIGNATURE

/// The lines of a pack's rows.
pub const HEADER_LINES: &str = "csvbus-lines";

/// Rows gathered for one message: their values joined into a JSON array, their lines listed.
#[derive(Debug, Default)]
pub struct Pack {
    /// `[` and the rows joined by `,` (the closing `]` is added by [`Pack::take`]).
    value: Vec<u8>,
    lines: String,
    first_line: u64,
    rows: u32,
}

/// A finished pack, as it goes on the wire.
#[derive(Debug, Clone, Copy)]
pub enum Packed<'a> {
    /// One row: sent as a plain row message (value: its object).
    One { line: u64, value: &'a [u8] },
    /// Several: [`HEADER_LINES`] and the array.
    Many {
        first_line: u64,
        lines: &'a str,
        value: &'a [u8],
    },
}

impl Pack {
    /// Rows in the pack.
    pub fn rows(&self) -> u32 {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// The bytes the message would take with a row of `len` bytes at `line` added: value,
    /// lines header (the other headers are framing).
    pub fn size_with(&self, len: usize) -> usize {
        self.value.len().max(1) + 1 + len + 1 + self.lines.len() + 21
    }

    /// Adds the row at `line` (after the pack's last one) with value `row`.
    pub fn push(&mut self, line: u64, row: &[u8]) {
        if self.rows == 0 {
            self.value.clear();
            self.value.push(b'[');
            self.lines.clear();
            self.first_line = line;
        } else {
            self.value.push(b',');
            self.lines.push(',');
        }
        self.value.extend_from_slice(row);
        self.lines.push_str(itoa::Buffer::new().format(line));
        self.rows += 1;
    }

    /// Bytes of the rows gathered (value and lines); 0 when empty.
    pub fn bytes(&self) -> usize {
        match self.rows {
            0 => 0,
            _ => self.value.len() + self.lines.len(),
        }
    }

    /// The message of the rows gathered (the pack must not be empty); the pack is empty after
    /// it, its buffers reused by the next [`Pack::push`].
    pub fn take(&mut self) -> Packed<'_> {
        let rows = std::mem::take(&mut self.rows);
        if rows == 1 {
            return Packed::One {
                line: self.first_line,
                value: &self.value[1..],
            };
        }
        self.value.push(b']');
        Packed::Many {
            first_line: self.first_line,
            lines: &self.lines,
            value: &self.value,
        }
    }
}

/// Why a message that says it is a pack cannot be read as one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PackError {
    #[error(
        "header {HEADER_LINES} is not a list of ascending line numbers starting at csvbus-line"
    )]
    Lines,
    #[error("the value of a pack is not a JSON array of objects")]
    Value,
    #[error("the pack lists {lines} lines but holds {rows} rows")]
    Count { lines: usize, rows: usize },
}

/// The rows of a pack: each one's line and value (its JSON object's bytes), in order.
/// `first_line` is the message's [`HEADER_LINE`](super::HEADER_LINE). The objects themselves
/// are not checked here: each is decoded as a row's value is.
pub fn unpack<'a>(
    first_line: i64,
    lines: &[u8],
    value: &'a [u8],
) -> Result<Vec<(i64, &'a [u8])>, PackError> {
    let lines = parse_lines(lines)?;
    if lines.first() != Some(&first_line) {
        return Err(PackError::Lines);
    }
    let objects = split_array(value).ok_or(PackError::Value)?;
    if objects.len() != lines.len() {
        return Err(PackError::Count {
            lines: lines.len(),
            rows: objects.len(),
        });
    }
    Ok(lines.into_iter().zip(objects).collect())
}

fn parse_lines(text: &[u8]) -> Result<Vec<i64>, PackError> {
    let text = std::str::from_utf8(text).map_err(|_| PackError::Lines)?;
    let mut lines = Vec::with_capacity(text.len() / 4 + 1);
    for part in text.split(',') {
        // Plain decimals only: no sign, no spaces.
        if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
            return Err(PackError::Lines);
        }
        let line: i64 = part.parse().map_err(|_| PackError::Lines)?;
        if lines.last().is_some_and(|l| *l >= line) {
            return Err(PackError::Lines);
        }
        lines.push(line);
    }
    Ok(lines)
}

/// The elements of a JSON array of objects (`[{…},{…}]`, no whitespace, as the upload writes
/// it), or `None`. Only the nesting is followed; each element is decoded later.
fn split_array(value: &[u8]) -> Option<Vec<&[u8]>> {
    let body = value.strip_prefix(b"[")?.strip_suffix(b"]")?;
    let mut out = Vec::new();
    let mut at = 0;
    while at < body.len() {
        if body[at] != b'{' {
            return None;
        }
        let len = object_len(&body[at..])?;
        out.push(&body[at..at + len]);
        at += len;
        match body.get(at) {
            None => break,
            Some(b',') if at + 1 < body.len() => at += 1,
            _ => return None,
        }
    }
    (!out.is_empty()).then_some(out)
}

/// The length of the JSON object `text` starts with, its strings skipped.
fn object_len(text: &[u8]) -> Option<usize> {
    flat_object_len(text).or_else(|| nested_object_len(text))
}

/// [`object_len`] of an object as the upload writes them — strings whose escapes are single
/// backslashes, no brackets or braces but its own — in a few passes the compiler vectorizes,
/// instead of a search per string: its first `}` with an even number of unescaped quotes
/// before it. `None` for anything else (then [`nested_object_len`] decides).
fn flat_object_len(text: &[u8]) -> Option<usize> {
    let end = memchr::memchr(b'}', text)?;
    // From the `{` on: it is no quote, no backslash, and the pairs below cover every later byte.
    let from = text.get(..end)?;
    let (mut unescaped, mut odd) = (0u32, 0u8);
    // In runs short enough for byte-wide counters, which the compiler vectorizes 16 bytes wide.
    let mut at = 1;
    while at < from.len() {
        let stop = (at + 255).min(from.len());
        let (mut quotes, mut other) = (0u8, 0u8);
        for (&before, &b) in from[at - 1..stop - 1].iter().zip(&from[at..stop]) {
            let after_backslash = u8::from(before == b'\\');
            quotes += u8::from(b == b'"') & (after_backslash ^ 1);
            // `\\` could end a string just before a quote: left to the exact walk.
            other |= after_backslash & u8::from(b == b'\\');
            other |= u8::from(b == b'{') | u8::from(b == b'[') | u8::from(b == b']');
        }
        unescaped += u32::from(quotes);
        odd |= other;
        at = stop;
    }
    let ends_escaped = from.last() == Some(&b'\\');
    (odd == 0 && !ends_escaped && unescaped % 2 == 0).then_some(end + 1)
}

/// [`object_len`] of any object, nesting and escapes followed.
fn nested_object_len(text: &[u8]) -> Option<usize> {
    let (mut depth, mut i) = (0usize, 0);
    while i < text.len() {
        match text[i] {
            b'"' => {
                i += 1;
                loop {
                    // Past the end after a last backslash: no object.
                    let run = memchr::memchr2(b'"', b'\\', text.get(i..)?)?;
                    i += run;
                    if text[i] == b'"' {
                        break;
                    }
                    i += 2;
                }
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packed(rows: &[(u64, &str)]) -> (u64, String, Vec<u8>) {
        let mut p = Pack::default();
        for (line, row) in rows {
            p.push(*line, row.as_bytes());
        }
        match p.take() {
            Packed::Many {
                first_line,
                lines,
                value,
            } => (first_line, lines.to_owned(), value.to_vec()),
            Packed::One { .. } => panic!("one row"),
        }
    }

    #[test]
    fn a_pack_round_trips_with_quotes_braces_and_escapes_in_values() {
        let rows = [
            (2, r#"{"a":"x","b":null}"#),
            (3, r#"{"a":"} ] , { [","b":"\"},{\""}"#),
            (7, r#"{"a":"\\","b":"\\\""}"#),
        ];
        let (first, lines, value) = packed(&rows);
        assert_eq!((first, lines.as_str()), (2, "2,3,7"));
        let got = unpack(2, lines.as_bytes(), &value).unwrap();
        let want: Vec<(i64, &[u8])> = rows
            .iter()
            .map(|(l, r)| (*l as i64, r.as_bytes()))
            .collect();
        assert_eq!(got, want);
        let whole: serde_json::Value = serde_json::from_slice(&value).unwrap();
        assert_eq!(whole.as_array().unwrap().len(), 3, "the value is JSON");
    }

    #[test]
    fn one_row_is_a_plain_row_and_a_taken_pack_starts_over() {
        let mut p = Pack::default();
        p.push(5, br#"{"a":"1"}"#);
        assert_eq!(p.bytes(), 10 + 1);
        assert!(matches!(p.take(), Packed::One { line: 5, value } if value == br#"{"a":"1"}"#));
        assert!(p.is_empty() && p.bytes() == 0);
        p.push(9, br#"{"a":"2"}"#);
        p.push(10, br#"{"a":"3"}"#);
        assert!(matches!(
            p.take(),
            Packed::Many { first_line: 9, lines: "9,10", value } if value == br#"[{"a":"2"},{"a":"3"}]"#
        ));
    }

    #[test]
    fn a_malformed_pack_is_refused_not_guessed() {
        let v = br#"[{"a":"1"},{"a":"2"}]"#;
        assert!(unpack(1, b"1,2", v).is_ok());
        assert_eq!(unpack(2, b"1,2", v), Err(PackError::Lines), "first line");
        assert_eq!(unpack(1, b"2,1", b"[{},{}]"), Err(PackError::Lines));
        assert_eq!(unpack(1, b"1,1", b"[{},{}]"), Err(PackError::Lines));
        assert_eq!(unpack(1, b"1,+2", v), Err(PackError::Lines));
        assert_eq!(unpack(1, b"1,", v), Err(PackError::Lines));
        assert_eq!(unpack(1, b"1, 2", v), Err(PackError::Lines));
        assert_eq!(
            unpack(1, b"1,2,3", v),
            Err(PackError::Count { lines: 3, rows: 2 })
        );
        for bad in [
            &b"[]"[..],
            b"",
            br#"{"a":"1"}"#,
            br#"[{"a":"1"},]"#,
            br#"[{"a":"1"} ,{"a":"2"}]"#,
            br#"[{"a":"1"},{"a":"2"]"#,
            br#"[{"a":"1}]"#,
            br#"[{"a":"1"}}]"#,
            br#"["x"]"#,
            br#"[{"a":"\"#,
            // A string's last backslash right before the array's end: the walk must stop there.
            br#"[{"a":"\]"#,
            br#"[{"a\]"#,
        ] {
            assert!(
                unpack(1, b"1", bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn the_size_counts_the_value_and_the_lines() {
        let mut p = Pack::default();
        let first = p.size_with(10);
        p.push(1_000_000, &[b'x'; 10]);
        let (first_line, lines, value) = {
            p.push(1_000_001, &[b'x'; 10]);
            match p.take() {
                Packed::Many {
                    first_line,
                    lines,
                    value,
                } => (first_line, lines.len(), value.len()),
                Packed::One { .. } => unreachable!(),
            }
        };
        assert_eq!(first_line, 1_000_000);
        assert!(first >= 10 + 2 + 7);
        assert!(value + lines <= 2 * first + 22);
    }

    /// The quick reading of an object's end agrees with the exact walk on every JSON object it
    /// answers for (and answers for the upload's), and on junk without backslashes; where junk
    /// with a backslash outside a string reads otherwise, the piece it cuts is no JSON object
    /// (its row is a dead letter, as every row of such a message is).
    #[test]
    fn the_flat_reading_of_an_object_agrees_with_the_exact_walk() {
        let values = [
            ("a\"b", true),
            ("}", false),
            ("x\\", false),
            ("{[", false),
            ("é\n", true),
        ];
        for (v, plain) in values {
            let obj = serde_json::json!({ "k": v, "n": null, "\"q": "r" });
            let text = format!("{obj},{obj}]");
            let flat = flat_object_len(text.as_bytes());
            assert_eq!(flat.is_some(), plain, "{text}");
            if plain {
                assert_eq!(flat, Some(obj.to_string().len()));
            }
        }
        let alphabet = b"{}[]\"\\,:ab";
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let (mut answered, mut text) = ([0; 3], Vec::new());
        for round in 0..300_000 {
            text.clear();
            if round % 3 == 0 {
                // A JSON object of random strings, as serde_json writes it.
                let key: String = (0..next() % 6)
                    .map(|_| alphabet[next() as usize % 10] as char)
                    .collect();
                let value: String = (0..next() % 9)
                    .map(|_| alphabet[next() as usize % 10] as char)
                    .collect();
                text.extend(
                    serde_json::json!({ key: value, "b": null })
                        .to_string()
                        .bytes(),
                );
                text.extend(b",{}]");
            } else {
                text.push(b'{');
                let backslashes = round % 3 == 1;
                for _ in 0..next() % 24 {
                    let b = alphabet[next() as usize % alphabet.len()];
                    if backslashes || b != b'\\' {
                        text.push(b);
                    }
                }
            }
            let Some(n) = flat_object_len(&text) else {
                continue;
            };
            answered[round % 3] += 1;
            let exact = nested_object_len(&text);
            if round % 3 == 1 && exact != Some(n) {
                let piece = serde_json::from_slice::<serde_json::Value>(&text[..n]);
                assert!(
                    !piece.is_ok_and(|v| v.is_object()),
                    "{}",
                    String::from_utf8_lossy(&text)
                );
            } else {
                assert_eq!(Some(n), exact, "{}", String::from_utf8_lossy(&text));
            }
        }
        assert!(answered.iter().all(|a| *a > 1_000), "{answered:?}");
    }
}
