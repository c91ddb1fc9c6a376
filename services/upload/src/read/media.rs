//! What an upload body is, from its `Content-Type`: the CSV itself (`text/csv`,
//! `application/csv`, `application/vnd.ms-excel` — what browsers on Windows label a `.csv` —,
//! `application/octet-stream`, or no type), or a form (`multipart/form-data`, what `curl -F
//! file=@x.csv` sends) whose one file part is the CSV, streamed like any body. A `charset=`
//! names the text encoding. `text/plain` and `application/x-www-form-urlencoded` are refused
//! with a hint: they are what a browser page on another site can send without asking, and
//! what `curl --data-binary` sends when no type is given.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderMap, StatusCode};

use crate::error::ApiError;
use crate::read::body::Encoding;

/// How to read an upload's body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Media {
    /// `multipart/form-data`: its boundary.
    pub form_boundary: Option<String>,
    /// The `charset=` parameter, when given.
    pub charset: Option<String>,
}

/// A form upload (`curl -F file=@x.csv`): one part, the CSV file; the options go in the query
/// string.
#[derive(utoipa::ToSchema)]
#[allow(
    dead_code,
    reason = "it only describes the form in the OpenAPI document"
)]
pub struct UploadForm {
    /// The CSV file (its name becomes the import's source; `.gz` and `.zst` are decompressed).
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
}

const HINT: &str =
    "send the file as CSV: curl -H 'Content-Type: text/csv' --data-binary @file.csv URL, \
                    or as a form: curl -F file=@file.csv URL";

/// The body's kind from its `Content-Type`; 415 with a hint for the types csvbus does not read.
pub fn media(headers: &HeaderMap) -> Result<Media, ApiError> {
    let Some(ct) = headers.get(header::CONTENT_TYPE) else {
        return Ok(Media {
            form_boundary: None,
            charset: None,
        });
    };
    let ct = ct.to_str().unwrap_or("");
    let mut parts = ct.split(';');
    let mime = parts.next().unwrap_or("").trim().to_ascii_lowercase();
    let param = |name: &str| {
        ct.split(';').skip(1).find_map(|p| {
            let (k, v) = p.split_once('=')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().trim_matches('"').to_owned())
        })
    };
    let csv = matches!(
        mime.as_str(),
        "text/csv"
            | "application/csv"
            | "text/x-csv"
            | "application/vnd.ms-excel"
            | "application/octet-stream"
            | "text/tab-separated-values"
    );
    if csv {
        return Ok(Media {
            form_boundary: None,
            charset: param("charset"),
        });
    }
    if mime == "multipart/form-data" {
        let boundary = param("boundary").filter(|b| !b.is_empty()).ok_or_else(|| {
            ApiError::bad_request("invalid_form", "multipart/form-data without a boundary")
        })?;
        return Ok(Media {
            form_boundary: Some(boundary),
            charset: None,
        });
    }
    Err(ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        format!("Content-Type {mime:?} is not read as CSV; {HINT}"),
    ))
}

/// What follows a form's file part, once it was read to its end: the name of the next part, if
/// there is one (it is not read; the answer says so).
#[derive(Debug, Clone, Default)]
pub struct Rest(Arc<Mutex<Option<String>>>);

impl Rest {
    /// The note for the answer when the form had more than its file.
    pub fn note(&self) -> Option<String> {
        let next = self.0.lock().ok()?.clone()?;
        Some(format!(
            "the form's part {next:?} after the file was not read: send one file per upload, \
             with the options in the query string"
        ))
    }
}

/// The file part of a form, as the body to read, with its file name, the encoding its name
/// says (`.gz`, `.zst`), and what follows it. Only the file part is read: a field before it is
/// refused (`400 invalid_form`); a part after it is not read and named in the answer, so
/// nothing a form says is dropped silently.
pub async fn file_part(
    body: Body,
    boundary: &str,
    idle: Duration,
) -> Result<(Body, Option<String>, Encoding, Rest), ApiError> {
    let limits = multer::Constraints::new().size_limit(
        // Part headers only: the file part itself is streamed, bounded like any body.
        multer::SizeLimit::new().per_field(u64::MAX),
    );
    let mut form = multer::Multipart::with_constraints(body.into_data_stream(), boundary, limits);
    let invalid = |m: String| ApiError::bad_request("invalid_form", m);
    let field = match tokio::time::timeout(idle, form.next_field()).await {
        Err(_) => {
            return Err(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "body_idle_timeout",
                format!("no form part received for {idle:?}"),
            ))
        }
        Ok(Err(e)) => return Err(invalid(format!("the form could not be read: {e}"))),
        Ok(Ok(None)) => {
            return Err(invalid(
                "the form has no file part; send the CSV as one".into(),
            ))
        }
        Ok(Ok(Some(f))) => f,
    };
    let Some(name) = field.file_name().map(str::to_owned) else {
        let field_name = field.name().unwrap_or("").to_owned();
        return Err(invalid(format!(
            "the form's first part ({field_name:?}) is not a file: send the CSV as the only part \
             (curl -F file=@file.csv) and the options in the query string"
        )));
    };
    let lower = name.to_ascii_lowercase();
    let encoding = if lower.ends_with(".gz") {
        Encoding::Gzip
    } else if lower.ends_with(".zst") {
        Encoding::Zstd
    } else {
        Encoding::Identity
    };
    let rest = Rest::default();
    let seen = rest.clone();
    // Keep the form alive while its field streams: the field reads through it. At the field's
    // end, the next part's headers (if any) say whether the form had more.
    let stream = futures::stream::unfold((field, form), move |(mut field, mut form)| {
        let seen = seen.clone();
        async move {
            match field.chunk().await {
                Ok(Some(chunk)) => Some((Ok(chunk), (field, form))),
                Ok(None) => {
                    // The form moves on to its next part only once this one is let go.
                    drop(field);
                    let next = tokio::time::timeout(idle, form.next_field()).await;
                    if let Ok(Ok(Some(next))) = next {
                        let name = next.file_name().or(next.name()).unwrap_or("").to_owned();
                        if let Ok(mut s) = seen.0.lock() {
                            *s = Some(name);
                        }
                    }
                    None
                }
                Err(e) => Some((Err(std::io::Error::other(e)), (field, form))),
            }
        }
    });
    Ok((Body::from_stream(stream), Some(name), encoding, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ct(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, v.parse().unwrap());
        h
    }

    #[test]
    fn csv_types_forms_and_refusals() {
        for ok in [
            "text/csv",
            "application/vnd.ms-excel",
            "application/octet-stream",
            "TEXT/CSV; charset=utf-8",
        ] {
            assert!(media(&ct(ok)).unwrap().form_boundary.is_none(), "{ok}");
        }
        assert_eq!(
            media(&ct("text/csv; charset=\"windows-1252\""))
                .unwrap()
                .charset
                .as_deref(),
            Some("windows-1252")
        );
        let form = media(&ct("multipart/form-data; boundary=xyz")).unwrap();
        assert_eq!(form.form_boundary.as_deref(), Some("xyz"));
        for refused in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "application/json",
        ] {
            let e = media(&ct(refused)).unwrap_err();
            assert_eq!(
                (e.status, e.code),
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            );
            assert!(
                e.message.contains("Content-Type: text/csv"),
                "{}",
                e.message
            );
        }
        assert!(media(&HeaderMap::new()).is_ok());
    }
}
