//! The checks of an upload that need no row: content type and encoding, declared length,
//! query options, and the target table. Each answers a 4xx before anything is produced.

use axum::body::Body;
use axum::http::{header, HeaderMap, StatusCode};
use csvbus_shared::catalog::{self, TableName};
use csvbus_shared::modes::{self, ImportMode};
use csvbus_shared::scope::Scope;

use crate::error::ApiError;
use crate::import::ingest::UploadQuery;
use crate::read::body::Encoding;
use crate::read::media;
use crate::read::prepare::ReadOptions;
use crate::read::transcode::{GivenEncoding, TextEncoding};
use crate::rows::mapping::{ExtraColumns, Mapping};
use crate::App;

/// Content encoding and declared length, before the body is touched (the content type is
/// [`crate::read::media`]'s).
pub fn check_headers(headers: &HeaderMap, max_body: u64) -> Result<Encoding, ApiError> {
    let enc = headers
        .get(header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("?"));
    let encoding = Encoding::parse(enc).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_encoding",
            format!(
                "Content-Encoding {:?} is not supported; use gzip, zstd or none",
                enc.unwrap_or("")
            ),
        )
    })?;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max_body) {
        return Err(too_large(max_body));
    }
    Ok(encoding)
}

pub fn too_large(max: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        format!("the body is larger than the limit of {max} bytes"),
    )
}

pub async fn resolve_table(
    app: &App,
    name: &str,
) -> Result<(TableName, Vec<catalog::Column>), ApiError> {
    let unknown = || {
        ApiError::not_found(
            "unknown_table",
            format!("no table {name:?} that csvbus may write to"),
        )
    };
    let table = TableName::parse(name, catalog::DEFAULT_SCHEMA).ok_or_else(unknown)?;
    long_name(&table)?;
    if !catalog::may_target(&table, &app.config.common.allowed_schemas) {
        return Err(unknown());
    }
    let cols = catalog::table_columns(&app.pool, &table).await?;
    Ok((table, cols.ok_or_else(unknown)?))
}

/// The target table and its columns; with `create=true`, a table that does not exist yet is
/// one to create (`true`; its columns come from the file) and the body's start is kept for it.
pub async fn resolve_or_create(
    app: &App,
    q: &UploadQuery,
    read: &mut ReadOptions,
) -> Result<((TableName, Vec<catalog::Column>), bool), ApiError> {
    match resolve_table(app, &q.table).await {
        Err(e) if e.code == "unknown_table" && q.create == Some(true) => {
            read.keep_sample = crate::import::create::SAMPLE_BYTES;
            Ok(((new_table(app, &q.table)?, Vec::new()), true))
        }
        Ok(found) => {
            if q.evolve.is_some() {
                // New columns are typed from the first rows, as create=true types a table.
                read.keep_sample = crate::import::create::SAMPLE_BYTES;
            }
            Ok((found, false))
        }
        Err(e) => Err(e),
    }
}

/// A schema or table name Postgres would cut (past 63 bytes) names another table than the one
/// asked for: refused, not guessed.
fn long_name(t: &TableName) -> Result<(), ApiError> {
    let max = csvbus_shared::infer::MAX_IDENTIFIER_BYTES;
    match [&t.schema, &t.table].into_iter().find(|n| n.len() > max) {
        Some(n) => Err(ApiError::bad_request(
            "invalid_table",
            format!("{n:?} is longer than {max} bytes, the longest name Postgres keeps"),
        )),
        None => Ok(()),
    }
}

/// The name of a table `create=true` will create: its schema must be allowed.
pub fn new_table(app: &App, name: &str) -> Result<TableName, ApiError> {
    let table = TableName::parse(name, catalog::DEFAULT_SCHEMA)
        .filter(|t| catalog::may_target(t, &app.config.common.allowed_schemas));
    table.ok_or_else(|| {
        ApiError::not_found(
            "unknown_table",
            format!("{name:?} is not a table name csvbus may create (CSVBUS_ALLOWED_SCHEMAS)"),
        )
    })
}

/// The conflict columns of an upsert or skip import: `conflict=a,b` or the primary key, covered
/// exactly by a unique index (422 otherwise). `None` in the other modes (400 if given).
pub async fn resolve_conflict(
    app: &App,
    mode: ImportMode,
    table: &TableName,
    conflict: Option<&str>,
) -> Result<Option<Vec<String>>, ApiError> {
    let wanted: Option<Vec<String>> = conflict
        .filter(|c| !c.is_empty())
        .map(|c| c.split(',').map(|s| s.trim().to_owned()).collect());
    if !mode.on_conflict() {
        return match wanted {
            None => Ok(None),
            Some(_) => Err(ApiError::bad_request(
                "invalid_query",
                "conflict= applies to the upsert and skip modes only",
            )),
        };
    }
    modes::conflict_columns(&app.pool, table, wanted.as_deref())
        .await?
        .map(Some)
        .map_err(|m| ApiError::unprocessable("invalid_conflict", m))
}

/// The options of how to read the body: delimiter, encoding, preamble, trimming, header and
/// column mapping.
pub fn read_options(q: &UploadQuery, charset: Option<&str>) -> Result<ReadOptions, ApiError> {
    let given = q.encoding;
    let encoding = match (given, charset) {
        (None, Some(c)) => TextEncoding::parse(if c.eq_ignore_ascii_case("us-ascii") { "utf-8" } else { c })
            .map_err(|_| {
                ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_media_type",
                    format!("charset={c} is not one csvbus reads: utf-8, windows-1252, latin1, utf-16, utf-16be"),
                )
            })?,
        (Some(GivenEncoding(e)), _) => e,
        (None, None) => Some(TextEncoding::Utf8),
    };
    let names: Option<Vec<String>> = q
        .columns
        .as_deref()
        .filter(|c| !c.is_empty())
        .map(|c| c.split(',').map(|s| s.trim().to_owned()).collect());
    let header = q.header.unwrap_or(true);
    if !header && names.is_none() {
        return Err(ApiError::bad_request(
            "invalid_query",
            "header=false needs columns= to name the fields",
        ));
    }
    let ignore_extra = q.extra_columns == Some(ExtraColumns::Ignore);
    Ok(ReadOptions {
        delimiter: q.delimiter,
        quote: q.quote,
        escape: q.escape,
        encoding,
        encoding_given: given.is_some() || charset.is_some(),
        skip_lines: q.skip_lines.map(|n| n.min(MAX_SKIP_LINES)),
        trim: q.trim.unwrap_or(false),
        header,
        header_given: q.header.is_some(),
        mapping: Mapping {
            names,
            ignore_extra,
        },
        keep_sample: 0,
        dateformat: q.dateformat,
        decimal: q.decimal,
        value_sample: false,
        comment: q.comment,
    })
}

/// The most preamble lines `skip_lines=` may skip.
const MAX_SKIP_LINES: u64 = 10_000;

/// A table with a column of csvbus' own staging name cannot be imported in the modes that
/// stage rows (atomic, replace, upsert, skip): refused, so that the name never collides.
pub fn reserved_column(mode: ImportMode, columns: &[catalog::Column]) -> Result<(), ApiError> {
    let line = csvbus_shared::modes::LINE_COLUMN;
    if mode == ImportMode::Append || !columns.iter().any(|c| c.name == line) {
        return Ok(());
    }
    Err(ApiError::unprocessable(
        "reserved_column",
        format!(
            "the table has a column named {line:?}, which csvbus uses for its {} imports; \
             rename it or import with mode=append",
            mode.as_str()
        ),
    ))
}

/// 403 `out_of_scope` unless the request's key reaches `t`.
pub(crate) fn in_scope(scope: &Scope, t: &TableName) -> Result<(), ApiError> {
    if scope.allows(t) {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        "out_of_scope",
        format!("this API key may not write {t} (its scope in CSVBUS_API_KEYS)"),
    ))
}

/// The CSV of the body: the body itself, or a form's file part (its name, and the encoding its
/// name says). A form is not compressed as a whole (its file part may be).
pub(crate) async fn unpack(
    app: &App,
    media: &media::Media,
    encoding: Encoding,
    body: Body,
) -> Result<(Body, Encoding, Option<String>, Option<media::Rest>), ApiError> {
    let Some(boundary) = &media.form_boundary else {
        return Ok((body, encoding, None, None));
    };
    if encoding != Encoding::Identity {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_encoding",
            "a form is not compressed as a whole: send a compressed file part (file.csv.gz)",
        ));
    }
    let (part, name, encoding, rest) =
        media::file_part(body, boundary, app.config.body_idle_timeout).await?;
    Ok((part, encoding, name, Some(rest)))
}
