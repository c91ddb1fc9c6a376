//! The common case of decoding, without a JSON parser: a value in exactly the shape the upload
//! writes (`{"col":"text"|null,...}`, no whitespace) with the same keys as the row before, whose
//! values escape at most quotes and backslashes, becomes COPY CSV fields in one pass over its
//! bytes — no intermediate values, no allocation, keys compared as bytes. Anything else (another
//! header, a line break or `\u` escape, a value from elsewhere) is left to the JSON parser,
//! which decides as before.

/// The keys of one column list as the upload writes them: `{"col":` for the first, `,"col":`
/// for the others, JSON-escaped.
#[derive(Debug, Default, Clone)]
pub struct Keys(Vec<Vec<u8>>);

impl Keys {
    pub fn new(columns: &[String]) -> Self {
        let keys = columns
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let mut k = vec![if i == 0 { b'{' } else { b',' }];
                // Serializing a &str into a Vec cannot fail.
                let _ = serde_json::to_writer(&mut k, c);
                k.push(b':');
                k
            })
            .collect();
        Self(keys)
    }

    /// Appends the CSV fields of `value` to `out` when it has exactly these keys, in order, and
    /// values that need no unescaping; otherwise leaves `out` as it was and returns false.
    pub fn scan(&self, value: &[u8], out: &mut Vec<u8>) -> bool {
        let start = out.len();
        let ok = self.scan_fields(value, out) && std::str::from_utf8(value).is_ok();
        if !ok {
            out.truncate(start);
        }
        ok
    }

    fn scan_fields(&self, value: &[u8], out: &mut Vec<u8>) -> bool {
        if self.0.is_empty() {
            return value == b"{}";
        }
        let mut at = 0;
        for (i, key) in self.0.iter().enumerate() {
            if !value[at..].starts_with(key) {
                return false;
            }
            at += key.len();
            if i > 0 {
                out.push(b',');
            }
            let rest = &value[at..];
            if rest.starts_with(b"null") {
                at += 4;
            } else if rest.first() == Some(&b'"') {
                let Some(len) = string_field(&rest[1..], out) else {
                    return false;
                };
                at += len + 2;
            } else {
                return false;
            }
        }
        &value[at..] == b"}"
    }
}

/// Writes the JSON string whose text starts `text` (after its opening quote) as a quoted CSV
/// field: `\"` becomes `""`, `\\` and `\/` their character; any other escape or a control
/// character is left to the parser (`None`). Returns the length of the JSON text up to its
/// closing quote.
fn string_field(text: &[u8], out: &mut Vec<u8>) -> Option<usize> {
    out.push(b'"');
    let mut i = 0;
    loop {
        // The plain run up to the next quote, backslash or control character.
        let run = text[i..]
            .iter()
            .position(|b| *b == b'"' || *b == b'\\' || *b < 0x20)?;
        out.extend_from_slice(&text[i..i + run]);
        i += run;
        match text[i] {
            b'"' => {
                out.push(b'"');
                return Some(i);
            }
            b'\\' => {
                match text.get(i + 1)? {
                    b'"' => out.extend_from_slice(b"\"\""),
                    b'\\' => out.push(b'\\'),
                    b'/' => out.push(b'/'),
                    _ => return None,
                }
                i += 2;
            }
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use csvbus_shared::message::{Row, RowEncoder};

    /// What the JSON parser's path writes for `value` (the reference).
    fn parsed(value: &[u8]) -> Vec<u8> {
        let row = Row::decode(value).unwrap();
        let mut out = Vec::new();
        for (i, (_, v)) in row.fields.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            if let Some(v) = v {
                out.push(b'"');
                out.extend_from_slice(v.replace('"', "\"\"").as_bytes());
                out.push(b'"');
            }
        }
        out
    }

    #[test]
    fn the_upload_s_values_scan_as_the_parser_reads_them_and_others_are_left_to_it() {
        let cols: Vec<String> = ["id", "na\"me", "é"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        let keys = Keys::new(&cols);
        let enc = RowEncoder::new(&cols);
        let plain = [Some("1"), Some("Zoë, 漢字"), None];
        let mut value = Vec::new();
        enc.encode(&mut value, plain);
        let mut out = b"x".to_vec();
        assert!(keys.scan(&value, &mut out));
        assert_eq!(out[1..], parsed(&value)[..]);
        let mut empty = Vec::new();
        enc.encode(&mut empty, [Some(""), None, Some("")]);
        let mut out = Vec::new();
        assert!(keys.scan(&empty, &mut out));
        assert_eq!(out, parsed(&empty));

        // Quotes and backslashes are unescaped on the way.
        let mut quoted = Vec::new();
        enc.encode(
            &mut quoted,
            [Some("say \"hi\", \"x\""), Some("a\\b/"), Some("\"")],
        );
        let mut out = Vec::new();
        assert!(keys.scan(&quoted, &mut out));
        assert_eq!(out, parsed(&quoted));

        // Other escapes, other keys, other shapes: not scanned, nothing written.
        let mut escaped = Vec::new();
        enc.encode(&mut escaped, [Some("say \"hi\""), Some("a\nb"), Some("\\")]);
        let others = [
            escaped.as_slice(),
            br#"{"id":"1","na\"me":"x"}"#,
            br#"{"id":"1","na\"me":"x","\u00e9":null,"more":null}"#,
            br#"{"id": "1","na\"me":"x","\u00e9":null}"#,
            br#"{"id":1,"na\"me":"x","\u00e9":null}"#,
            b"{\"id\":\"\xff\",\"na\\\"me\":null,\"\\u00e9\":null}",
            br#"{"id":"1"#,
            b"",
        ];
        for v in others {
            let mut out = b"kept".to_vec();
            assert!(!keys.scan(v, &mut out), "{:?}", String::from_utf8_lossy(v));
            assert_eq!(out, b"kept");
        }
        assert!(Keys::new(&[]).scan(b"{}", &mut Vec::new()));
    }
}
