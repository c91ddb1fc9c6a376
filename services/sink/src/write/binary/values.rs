//! Each type's values in their plain form, as Postgres' binary input reads them; `None` for any
//! other form (the group then goes as CSV).

use chrono::{Datelike, NaiveDate};

/// How a column's values are encoded; from its type's OID (a domain or any other type: none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    Bool,
    Int2,
    Int4,
    Int8,
    Numeric,
    Text,
    Date,
    Timestamp,
    Timestamptz,
    Uuid,
    /// A field read and left out of the stream: the line a staged group's rows carry, when
    /// they are COPYd straight into their table.
    Skip,
}

impl Codec {
    pub fn from_oid(oid: u32) -> Option<Self> {
        Some(match oid {
            16 => Self::Bool,
            20 => Self::Int8,
            21 => Self::Int2,
            23 => Self::Int4,
            25 | 1043 => Self::Text,
            1082 => Self::Date,
            1114 => Self::Timestamp,
            1184 => Self::Timestamptz,
            1700 => Self::Numeric,
            2950 => Self::Uuid,
            _ => return None,
        })
    }

    /// Appends `v` in this type's binary form (without its length), or `None` when `v` is not
    /// in a form csvbus reads unambiguously.
    pub(super) fn encode(self, v: &[u8], out: &mut Vec<u8>) -> Option<()> {
        match self {
            Self::Text if !v.contains(&0) => out.extend_from_slice(v),
            Self::Text | Self::Skip => return None,
            Self::Bool => out.push(boolean(v)?.into()),
            Self::Int2 => out.extend_from_slice(&i16::try_from(integer(v)?).ok()?.to_be_bytes()),
            Self::Int4 => out.extend_from_slice(&i32::try_from(integer(v)?).ok()?.to_be_bytes()),
            Self::Int8 => out.extend_from_slice(&integer(v)?.to_be_bytes()),
            Self::Numeric => numeric(v, out)?,
            Self::Date => out.extend_from_slice(&i32::try_from(date(v)?).ok()?.to_be_bytes()),
            Self::Timestamp => match timestamp(v)? {
                (at, None) => out.extend_from_slice(&at.to_be_bytes()),
                (_, Some(_)) => return None,
            },
            Self::Timestamptz => {
                let (at, zone) = timestamp(v)?;
                out.extend_from_slice(&(at - zone? * 1_000_000).to_be_bytes());
            }
            Self::Uuid => {
                out.extend_from_slice(uuid::Uuid::try_parse_ascii(uuid_text(v)?).ok()?.as_bytes())
            }
        }
        Some(())
    }
}

fn boolean(v: &[u8]) -> Option<bool> {
    const TRUE: [&[u8]; 5] = [b"t", b"true", b"yes", b"on", b"1"];
    const FALSE: [&[u8]; 5] = [b"f", b"false", b"no", b"off", b"0"];
    let is = |words: [&[u8]; 5]| words.iter().any(|w| w.eq_ignore_ascii_case(v));
    match (is(TRUE), is(FALSE)) {
        (true, _) => Some(true),
        (_, true) => Some(false),
        _ => None,
    }
}

/// `-?[0-9]+` (no sign `+`, no spaces) as an i64.
fn integer(v: &[u8]) -> Option<i64> {
    let digits = v.strip_prefix(b"-").unwrap_or(v);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// `-?[0-9]+(.[0-9]+)?` as Postgres' binary numeric: digit count, weight, sign, display scale,
/// then base-10,000 digits, most significant first, none of them zero at either end.
fn numeric(v: &[u8], out: &mut Vec<u8>) -> Option<()> {
    let (negative, v) = match v.strip_prefix(b"-") {
        Some(rest) => (true, rest),
        None => (false, v),
    };
    let (int, frac) = match v.iter().position(|b| *b == b'.') {
        Some(p) if p + 1 < v.len() => (&v[..p], &v[p + 1..]),
        Some(_) => return None,
        None => (v, &v[..0]),
    };
    let plain = |d: &[u8]| d.iter().all(u8::is_ascii_digit);
    // Long values are left to Postgres (its limits on digits and scale are far beyond).
    if int.is_empty() || !plain(int) || !plain(frac) || v.len() > 1000 {
        return None;
    }
    let int = &int[int.iter().position(|b| *b != b'0').unwrap_or(int.len())..];
    // Groups of four digits aligned on the decimal point: `lead` zeros before the integer part.
    let lead = (4 - int.len() % 4) % 4;
    let digit = |k: usize| match k.checked_sub(lead) {
        Some(k) if k < int.len() => i16::from(int[k] - b'0'),
        Some(k) if k - int.len() < frac.len() => i16::from(frac[k - int.len()] - b'0'),
        _ => 0,
    };
    let groups = (lead + int.len() + frac.len()).div_ceil(4);
    let group = |g: usize| (0..4).fold(0i16, |n, j| n * 10 + digit(g * 4 + j));
    let first = (0..groups).find(|g| group(*g) != 0);
    let last = (0..groups).rev().find(|g| group(*g) != 0);
    let scale = i16::try_from(frac.len()).ok()?;
    let header = |n: usize, weight: i64, sign: u16, out: &mut Vec<u8>| -> Option<()> {
        out.extend_from_slice(&i16::try_from(n).ok()?.to_be_bytes());
        out.extend_from_slice(&i16::try_from(weight).ok()?.to_be_bytes());
        out.extend_from_slice(&sign.to_be_bytes());
        out.extend_from_slice(&scale.to_be_bytes());
        Some(())
    };
    let (Some(first), Some(last)) = (first, last) else {
        return header(0, 0, 0x0000, out); // zero, of either sign
    };
    let int_groups = (lead + int.len()) / 4;
    let weight = int_groups as i64 - 1 - first as i64;
    header(
        last - first + 1,
        weight,
        if negative { 0x4000 } else { 0x0000 },
        out,
    )?;
    for g in first..=last {
        out.extend_from_slice(&group(g).to_be_bytes());
    }
    Some(())
}

/// Days from 0001-01-01 to Postgres' epoch, 2000-01-01.
const EPOCH_DAYS_FROM_CE: i64 = 730_120;

/// `YYYY-MM-DD`, year 1 to 9999, as days since Postgres' epoch.
fn date(v: &[u8]) -> Option<i64> {
    if v.len() != 10 || v[4] != b'-' || v[7] != b'-' {
        return None;
    }
    let year = i32::try_from(digits(&v[..4])?).ok()?;
    (year >= 1).then_some(())?;
    let day = NaiveDate::from_ymd_opt(year, digits(&v[5..7])?, digits(&v[8..10])?)?;
    Some(i64::from(day.num_days_from_ce()) - EPOCH_DAYS_FROM_CE)
}

fn digits(ds: &[u8]) -> Option<u32> {
    ds.iter().try_fold(0u32, |n, d| {
        d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0'))
    })
}

/// `YYYY-MM-DD[ T]HH:MM[:SS[.f{1,6}]]` and an optional offset (`Z`, `±HH`, `±HH:MM`, `±HHMM`):
/// microseconds since Postgres' epoch as written, and the offset in seconds east of UTC.
fn timestamp(v: &[u8]) -> Option<(i64, Option<i64>)> {
    let days = date(v.get(..10)?)?;
    if !matches!(v.get(10), Some(b' ' | b'T')) {
        return None;
    }
    let rest = &v[11..];
    let (time, zone) = match rest.iter().position(|b| matches!(b, b'+' | b'-' | b'Z')) {
        Some(p) => (&rest[..p], Some(offset(&rest[p..])?)),
        None => (rest, None),
    };
    let (clock, fraction) = match time.len() {
        5 | 8 => (time, &time[..0]),
        10..=15 if time[8] == b'.' => (&time[..8], &time[9..]),
        _ => return None,
    };
    let (h, m) = (digits(&clock[..2])?, digits(&clock[3..5])?);
    let s = match clock.len() {
        8 if clock[5] == b':' => digits(&clock[6..8])?,
        8 => return None,
        _ => 0,
    };
    // Postgres reads 24:00 and a leap second by rolling over; csvbus leaves them to it.
    if clock[2] != b':' || h > 23 || m > 59 || s > 59 {
        return None;
    }
    let micros = i64::from(digits(fraction)?) * 10i64.pow(6 - fraction.len() as u32);
    let seconds = days * 86_400 + i64::from(h * 3600 + m * 60 + s);
    Some((seconds * 1_000_000 + micros, zone))
}

fn offset(z: &[u8]) -> Option<i64> {
    let sign = match z.first()? {
        b'Z' if z.len() == 1 => return Some(0),
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let (h, m) = match &z[1..] {
        [h1, h2] => (digits(&[*h1, *h2])?, 0),
        [h1, h2, m1, m2] | [h1, h2, b':', m1, m2] => (digits(&[*h1, *h2])?, digits(&[*m1, *m2])?),
        _ => return None,
    };
    (h <= 15 && m < 60).then_some(sign * i64::from(h * 3600 + m * 60))
}

/// A hyphenated UUID's text (36 characters, hyphens at 8, 13, 18, 23).
fn uuid_text(v: &[u8]) -> Option<&[u8]> {
    let hyphens = [8, 13, 18, 23];
    let ok = v.len() == 36
        && v.iter()
            .enumerate()
            .all(|(i, b)| match hyphens.contains(&i) {
                true => *b == b'-',
                false => b.is_ascii_hexdigit(),
            });
    ok.then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_in_their_plain_form_encode_as_postgres_sends_them() {
        let one = |codec: Codec, v: &str| {
            let mut out = Vec::new();
            codec.encode(v.as_bytes(), &mut out).map(|()| out)
        };
        // 12345.6789: two digits of four before the point, one after; weight 1, scale 4.
        let n = one(Codec::Numeric, "-12345.6789").unwrap();
        let words: Vec<i16> = n
            .chunks(2)
            .map(|c| i16::from_be_bytes([c[0], c[1]]))
            .collect();
        assert_eq!(words, [3, 1, 0x4000, 4, 1, 2345, 6789]);
        assert_eq!(
            one(Codec::Numeric, "0.0001").unwrap()[..4],
            [0, 1, 0xff, 0xff]
        );
        assert_eq!(one(Codec::Date, "2000-01-02").unwrap(), 1i32.to_be_bytes());
        let noon_utc = 12 * 3_600_000_000i64;
        assert_eq!(
            one(Codec::Timestamptz, "2000-01-01 14:00+02").unwrap(),
            noon_utc.to_be_bytes()
        );
        assert_eq!(
            one(Codec::Timestamp, "2000-01-01T12:00:00.000000").unwrap(),
            noon_utc.to_be_bytes()
        );
        assert_eq!(one(Codec::Bool, "On").unwrap(), [1]);
        assert_eq!(
            one(Codec::Int2, "-32768").unwrap(),
            (-32768i16).to_be_bytes()
        );
        for (codec, v) in [
            (Codec::Int4, "2147483648"),
            (Codec::Numeric, "1e3"),
            (Codec::Timestamptz, "2000-01-01 12:00"),
            (Codec::Timestamp, "2000-01-01 12:00Z"),
            (Codec::Date, "2000-02-30"),
            (Codec::Text, "a\0"),
            (Codec::Uuid, "0000000000004000800000000000000a"),
        ] {
            assert_eq!(one(codec, v), None, "{codec:?} {v:?}");
        }
    }
}
