//! A group's COPY CSV lines as one binary COPY stream: header, rows of length-prefixed fields,
//! trailer.

use super::values::Codec;

/// Encodes `rows` COPY CSV lines (as a group holds them: values quoted, NULL empty, the line
/// unquoted, each line ending in `\n`) with `codecs`, one per field, as a whole binary COPY
/// stream into `out`. `false` (and `out` of no use) when a value is not for the binary path.
pub fn encode(csv: &[u8], rows: usize, codecs: &[Codec], out: &mut Vec<u8>) -> bool {
    out.clear();
    // Binary is about as long as the CSV plus a length per field: reserved once, not grown.
    out.reserve(csv.len() + rows * (2 + 4 * codecs.len()) + 21);
    out.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
    out.extend_from_slice(&[0; 8]); // flags, header extension length
    let sent = codecs.iter().filter(|c| **c != Codec::Skip).count();
    let Ok(fields) = i16::try_from(sent) else {
        return false;
    };
    let mut at = 0;
    // A value with a doubled quote, unescaped: one buffer for the stream, not one per value.
    let mut scratch = Vec::new();
    for _ in 0..rows {
        out.extend_from_slice(&fields.to_be_bytes());
        for (i, codec) in codecs.iter().enumerate() {
            let last = i + 1 == codecs.len();
            match field(csv, &mut at, last, out, *codec, &mut scratch) {
                Some(()) => {}
                None => return false,
            }
        }
    }
    out.extend_from_slice(&(-1i16).to_be_bytes());
    at == csv.len()
}

/// Reads the field at `*at` (ending in `,`, or `\n` when `last`) and appends it with its length.
/// Values are quoted; unquoted are only NULL (empty) and the line the staged paths add.
fn field(
    csv: &[u8],
    at: &mut usize,
    last: bool,
    out: &mut Vec<u8>,
    codec: Codec,
    scratch: &mut Vec<u8>,
) -> Option<()> {
    let end = if last { b'\n' } else { b',' };
    let value: &[u8] = if csv.get(*at) == Some(&b'"') {
        let (value, after) = quoted(csv, *at + 1, scratch)?;
        *at = after;
        value
    } else {
        let len = csv[*at..].iter().position(|b| *b == end)?;
        let raw = &csv[*at..*at + len];
        *at += len;
        if raw.is_empty() {
            if codec != Codec::Skip {
                out.extend_from_slice(&(-1i32).to_be_bytes());
            }
            *at += 1;
            return Some(());
        }
        if !raw.iter().all(|b| b.is_ascii_digit() || *b == b'-') {
            return None;
        }
        raw
    };
    if csv.get(*at) != Some(&end) {
        return None;
    }
    *at += 1;
    if codec == Codec::Skip {
        return Some(());
    }
    let len_at = out.len();
    out.extend_from_slice(&[0; 4]);
    codec.encode(value, out)?;
    let len = i32::try_from(out.len() - len_at - 4).ok()?;
    out[len_at..len_at + 4].copy_from_slice(&len.to_be_bytes());
    Some(())
}

/// The quoted value whose text starts at `from` (after its opening quote), `""` read as `"`
/// (then in `scratch`), and the position after its closing quote.
fn quoted<'a>(csv: &'a [u8], from: usize, scratch: &'a mut Vec<u8>) -> Option<(&'a [u8], usize)> {
    let close = from + memchr::memchr(b'"', &csv[from..])?;
    if csv.get(close + 1) != Some(&b'"') {
        return Some((&csv[from..close], close + 1));
    }
    scratch.clear();
    let mut i = from;
    loop {
        let run = memchr::memchr(b'"', &csv[i..])?;
        scratch.extend_from_slice(&csv[i..i + run]);
        i += run + 1;
        if csv.get(i) != Some(&b'"') {
            return Some((&scratch[..], i));
        }
        scratch.push(b'"');
        i += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Codec; 10] = [
        Codec::Bool,
        Codec::Int2,
        Codec::Int4,
        Codec::Int8,
        Codec::Numeric,
        Codec::Text,
        Codec::Date,
        Codec::Timestamp,
        Codec::Timestamptz,
        Codec::Uuid,
    ];

    /// Whatever the bytes (the group's lines come from the sink's own decoder, but a decoder
    /// bug must not take the writer down): no panic, and a stream only for whole lines.
    #[test]
    fn arbitrary_lines_never_panic() {
        let alphabet = b"\",\n\r-+.:TZ 0123456789abcdef\0\xc3\xa9";
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        let (mut out, mut whole) = (Vec::new(), 0);
        for _ in 0..20_000 {
            // Lines shaped as the group's (quoted values, NULLs, unquoted numbers), with junk.
            let (rows, fields) = (next(4), 1 + next(3));
            let mut csv = Vec::new();
            for _ in 0..rows {
                for f in 0..fields {
                    if f > 0 {
                        csv.push(b',');
                    }
                    let text: Vec<u8> = (0..next(12))
                        .map(|_| alphabet[next(alphabet.len())])
                        .collect();
                    match next(5) {
                        0 => {}
                        1 => csv.extend(text.iter().filter(|b| b.is_ascii_digit())),
                        2 => csv.extend(&text),
                        _ => {
                            csv.push(b'"');
                            csv.extend(text.iter().flat_map(|b| match b {
                                b'"' => &b"\"\""[..],
                                _ => std::slice::from_ref(b),
                            }));
                            csv.push(b'"');
                        }
                    }
                }
                csv.push(if next(20) == 0 { b'\r' } else { b'\n' });
            }
            let codecs: Vec<Codec> = (0..1 + next(3)).map(|_| ALL[next(ALL.len())]).collect();
            if encode(&csv, rows, &codecs, &mut out) {
                assert!(csv.iter().filter(|b| **b == b'\n').count() >= rows);
                assert!(out.ends_with(&(-1i16).to_be_bytes()));
                whole += usize::from(rows > 0);
            }
        }
        assert!(whole > 10, "the lines reach the encoders: {whole}");
    }

    /// A skipped field is read and left out: the stream is the one of the lines without it.
    #[test]
    fn a_skipped_field_is_not_in_the_stream() {
        let (mut with, mut without) = (Vec::new(), Vec::new());
        let staged = b"\"7\",\"a\"\"b\",12\n,\"c\",13\n";
        let plain = b"\"7\",\"a\"\"b\"\n,\"c\"\n";
        assert!(encode(
            staged,
            2,
            &[Codec::Int8, Codec::Text, Codec::Skip],
            &mut with
        ));
        assert!(encode(plain, 2, &[Codec::Int8, Codec::Text], &mut without));
        assert_eq!(with, without);
        assert_eq!(&with[19..21], &2i16.to_be_bytes(), "two fields per row");
    }
}
