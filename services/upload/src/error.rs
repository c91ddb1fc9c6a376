//! What a client sees when something goes wrong: a status, a stable machine-readable code, a
//! message safe to show, and the CSV line when one is to blame. Causes go to the log only.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use csvbus_shared::dates::DateOrder;
use csvbus_shared::modes::ImportMode;
use csvbus_shared::numbers::DecimalMark;
use csvbus_shared::read_as::Delimiter;
use serde::{Deserialize, Deserializer, Serialize};

/// An error answer of the HTTP API.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub line: Option<u64>,
    pub retry_after_secs: Option<u32>,
    /// The import the error is about, when there is one (e.g. 409 `import_running`).
    pub import_id: Option<uuid::Uuid>,
}

/// The body of every error answer.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody<'a> {
    /// A stable machine-readable code, e.g. `unknown_table`, `unknown_column`, `body_too_large`.
    #[schema(example = "unknown_column")]
    pub error: &'a str,
    /// What went wrong, safe to show to a person.
    pub message: &'a str,
    /// The CSV line to blame (1 is the header), when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    /// The import the error is about, when there is one (e.g. 409 `import_running`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub import_id: Option<uuid::Uuid>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            line: None,
            retry_after_secs: None,
            import_id: None,
        }
    }
    pub fn for_import(mut self, id: uuid::Uuid) -> Self {
        self.import_id = Some(id);
        self
    }
    pub fn at_line(mut self, line: u64) -> Self {
        self.line = Some(line);
        self
    }
    pub fn retry_after(mut self, secs: u32) -> Self {
        self.retry_after_secs = Some(secs);
        self
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }
    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }
    pub fn unavailable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, code, message).retry_after(5)
    }

    /// A database failure: logged with its cause, shown as a plain 503.
    pub fn database(e: &sqlx::Error) -> Self {
        tracing::error!(error = %e, "database error");
        Self::unavailable(
            "database_unavailable",
            "the database is unavailable; try again later",
        )
    }
}

impl From<crate::rows::HeaderError> for ApiError {
    fn from(e: crate::rows::HeaderError) -> Self {
        Self::unprocessable(e.code(), e.to_string()).at_line(1)
    }
}

/// A data exception (SQLSTATE class 22) comes from a value of the request, e.g. a NUL
/// character in a table name or a filter: the client's to fix (400), not a retry (503).
impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Database(d) if d.code().is_some_and(|c| c.starts_with("22")) => {
                tracing::info!(error = %e, "request value refused by the database");
                Self::bad_request(
                    "invalid_value",
                    "a value in the request cannot be used (for example, it contains a NUL character)",
                )
            }
            _ => Self::database(&e),
        }
    }
}

/// A query string that does not parse answers the JSON error shape, not axum's plain text; an
/// unknown parameter is named, with the known one closest to it.
impl From<axum::extract::rejection::QueryRejection> for ApiError {
    fn from(e: axum::extract::rejection::QueryRejection) -> Self {
        let text = e.body_text();
        match unknown_parameter(&text) {
            Some((name, known)) => {
                let closest = known
                    .iter()
                    .map(|k| (strsim::damerau_levenshtein(&name, k), k))
                    .filter(|(d, k)| *d <= 2.max(k.len() / 3))
                    .min_by_key(|(d, _)| *d);
                let hint = match closest {
                    Some((_, k)) => format!("; did you mean `{k}`?"),
                    None => format!("; known: {}", known.join(", ")),
                };
                Self::bad_request(
                    "unknown_parameter",
                    format!("unknown query parameter `{name}`{hint}"),
                )
            }
            None => match typed_option_error(&text) {
                Some((code, message)) => Self::bad_request(code, message),
                None => Self::bad_request("invalid_query", text),
            },
        }
    }
}

/// A typed query option's own error (`invalid_mode: …`, see
/// [`QueryOption`]): its code and message.
fn typed_option_error(text: &str) -> Option<(&'static str, String)> {
    OPTION_CODES.iter().find_map(|code| {
        let at = text.find(&format!("{code}: "))?;
        Some((*code, text[at + code.len() + 2..].to_owned()))
    })
}

/// The unknown field and the known ones, from serde's `unknown field `x`, expected one of `a`,
/// `b`` (or `expected `a``) message.
fn unknown_parameter(text: &str) -> Option<(String, Vec<String>)> {
    let rest = &text[text.find("unknown field `")? + "unknown field `".len()..];
    let (name, rest) = rest.split_once('`')?;
    let known = rest
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect();
    Some((name.to_owned(), known))
}

/// A query option read straight into its type: empty is not given, and a value the type does
/// not take is refused with the option's own error code (`invalid_mode`, …), which
/// [`ApiError::from(QueryRejection)`] finds at the start of the message.
pub(crate) trait QueryOption: Sized {
    /// The error code of a value that is not one.
    const INVALID: &'static str;
    /// `None`: the default (`auto`, or nothing).
    fn from_query(s: &str) -> Result<Option<Self>, String>;
}

/// The error codes of [`QueryOption`]s.
pub(crate) const OPTION_CODES: [&str; 9] = [
    "invalid_comment",
    "invalid_mode",
    "invalid_escape",
    "invalid_delimiter",
    "invalid_dateformat",
    "invalid_decimal",
    "invalid_encoding",
    "invalid_quote",
    "invalid_query",
];

impl QueryOption for ImportMode {
    const INVALID: &'static str = "invalid_mode";
    fn from_query(s: &str) -> Result<Option<Self>, String> {
        match s {
            "" => Ok(None),
            s => ImportMode::parse(s).map(Some).ok_or_else(|| {
                format!("mode {s:?} is not one of append, atomic, replace, upsert, skip")
            }),
        }
    }
}

/// An option that is empty (its default) or one of a few words: `parse` reads it, `expected`
/// says what it may be.
fn one_of<T>(
    s: &str,
    parse: impl Fn(&str) -> Option<T>,
    expected: impl Fn(&str) -> String,
) -> Result<Option<T>, String> {
    match s {
        "" => Ok(None),
        s => parse(s).map(Some).ok_or_else(|| expected(s)),
    }
}

impl QueryOption for DateOrder {
    const INVALID: &'static str = "invalid_dateformat";
    fn from_query(s: &str) -> Result<Option<Self>, String> {
        one_of(s, DateOrder::parse, |s| {
            format!("dateformat {s:?} is not one of dmy, mdy, ymd")
        })
    }
}

impl QueryOption for DecimalMark {
    const INVALID: &'static str = "invalid_decimal";
    fn from_query(s: &str) -> Result<Option<Self>, String> {
        one_of(s, DecimalMark::parse, |s| {
            format!("decimal {s:?} is not , or .")
        })
    }
}

impl QueryOption for Delimiter {
    const INVALID: &'static str = "invalid_delimiter";
    fn from_query(s: &str) -> Result<Option<Self>, String> {
        Delimiter::parse(s)
    }
}

pub(crate) fn typed<'de, D: Deserializer<'de>, T: QueryOption>(
    d: D,
) -> Result<Option<T>, D::Error> {
    let Some(text) = Option::<std::borrow::Cow<'de, str>>::deserialize(d)? else {
        return Ok(None);
    };
    T::from_query(&text).map_err(|m| serde::de::Error::custom(format!("{}: {m}", T::INVALID)))
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.code,
            message: &self.message,
            line: self.line,
            import_id: self.import_id,
        };
        let mut resp = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after_secs {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_typed_option_answers_with_a_code_the_rejection_knows() {
        use crate::read::parse::{Comment, Quote, Quotes};
        use crate::read::transcode::GivenEncoding;
        use crate::rows::mapping::ExtraColumns;
        for code in [
            ImportMode::INVALID,
            Delimiter::INVALID,
            DateOrder::INVALID,
            DecimalMark::INVALID,
            GivenEncoding::INVALID,
            Quote::INVALID,
            Quotes::INVALID,
            Comment::INVALID,
            ExtraColumns::INVALID,
        ] {
            assert!(OPTION_CODES.contains(&code), "{code}");
        }
        let text = "Failed to deserialize query string: invalid_quote: quote=\"ab\": use one";
        assert_eq!(
            typed_option_error(text),
            Some(("invalid_quote", "quote=\"ab\": use one".to_owned()))
        );
    }
}
