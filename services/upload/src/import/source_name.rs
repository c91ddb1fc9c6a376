//! Where an upload's rows come from, as the client names it: the `name=` query option (the
//! page and the CLI send the file's name), else the filename of a `Content-Disposition` header
//! (`curl -H 'Content-Disposition: attachment; filename="x.csv"'`). Stored with the import and
//! shown in the imports list, so that imports of one table can be told apart.
//!
//! Only the last path segment is kept; a name longer than [`MAX_SOURCE_CHARS`] characters or
//! with control characters is refused (`400 invalid_name`), not cut.

use axum::http::{header, HeaderMap};

use crate::error::ApiError;

/// The longest source name, in characters.
pub const MAX_SOURCE_CHARS: usize = 255;

/// The upload's source name, if the client gave one.
pub fn source(name: Option<&str>, headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let given = match name.filter(|n| !n.is_empty()) {
        Some(n) => Some(n.to_owned()),
        None => headers
            .get(header::CONTENT_DISPOSITION)
            .and_then(|v| v.to_str().ok())
            .and_then(disposition_filename),
    };
    let Some(given) = given else {
        return Ok(None);
    };
    let base = given.rsplit(['/', '\\']).next().unwrap_or_default();
    if base.chars().count() > MAX_SOURCE_CHARS || base.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "invalid_name",
            format!(
                "the source name must be at most {MAX_SOURCE_CHARS} characters, without control characters"
            ),
        ));
    }
    Ok((!base.is_empty()).then(|| base.to_owned()))
}

/// The filename of a `Content-Disposition` value: `filename*=UTF-8''…` (RFC 6266, percent-
/// encoded) before `filename="…"` or `filename=token`.
fn disposition_filename(v: &str) -> Option<String> {
    let params: Vec<(String, &str)> = v
        .split(';')
        .skip(1)
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim()))
        .collect();
    let extended = params
        .iter()
        .find(|(k, _)| k == "filename*")
        .and_then(|(_, v)| {
            let (charset, rest) = v.split_once('\'')?;
            let (_lang, encoded) = rest.split_once('\'')?;
            charset
                .eq_ignore_ascii_case("utf-8")
                .then(|| {
                    percent_encoding::percent_decode_str(encoded)
                        .decode_utf8()
                        .ok()
                })?
                .map(|s| s.into_owned())
        });
    extended.or_else(|| {
        let (_, v) = params.iter().find(|(k, _)| k == "filename")?;
        Some(
            match v.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
                Some(quoted) => quoted.replace("\\\"", "\"").replace("\\\\", "\\"),
                None => (*v).to_owned(),
            },
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_disposition(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_DISPOSITION, v.parse().unwrap());
        h
    }

    #[test]
    fn the_query_name_comes_first_then_the_disposition_filename_last_segment_only() {
        let h = with_disposition(r#"attachment; filename="C:\exports\sales.csv""#);
        assert_eq!(source(Some("a.csv"), &h).unwrap().as_deref(), Some("a.csv"));
        assert_eq!(source(None, &h).unwrap().as_deref(), Some("sales.csv"));
        let h =
            with_disposition("attachment; filename=plain.csv; filename*=UTF-8''Stra%C3%9Fe.csv");
        assert_eq!(source(None, &h).unwrap().as_deref(), Some("Straße.csv"));
        let h = with_disposition("attachment; filename=plain.csv");
        assert_eq!(source(Some(""), &h).unwrap().as_deref(), Some("plain.csv"));
        assert_eq!(source(None, &HeaderMap::new()).unwrap(), None);
        assert_eq!(source(Some("dir/"), &HeaderMap::new()).unwrap(), None);
    }

    #[test]
    fn long_names_and_control_characters_are_refused_not_cut() {
        let long = "x".repeat(MAX_SOURCE_CHARS + 1);
        let e = source(Some(&long), &HeaderMap::new()).unwrap_err();
        assert_eq!(e.code, "invalid_name");
        assert!(source(Some("a\nb.csv"), &HeaderMap::new()).is_err());
        let fits = "é".repeat(MAX_SOURCE_CHARS);
        assert!(source(Some(&fits), &HeaderMap::new()).is_ok());
    }
}
