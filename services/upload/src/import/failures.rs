//! What a failed upload answers: the client's error and the import's final status, for each
//! way reading the body or producing its rows can fail.

use axum::http::StatusCode;
use csvbus_shared::imports::ImportStatus;

use crate::error::ApiError;
use crate::import::checks::too_large;
use crate::produce::producer::ProduceError;
use crate::read::body::BodyError;
use crate::read::tap::RecordTooLong;

/// Why an upload ended before its body did: what the client is told, and (by the variant) the
/// status its import keeps.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UploadFailure {
    /// The body or the service failed the upload: `failed`.
    #[error("upload failed: {}", .0.message)]
    Failed(ApiError),
    /// The client stopped sending, or sent too slowly: `aborted`.
    #[error("upload aborted: {}", .0.message)]
    Aborted(ApiError),
    /// The import ended while the body was read (the sink stopped it past `max_rejected`, or
    /// it was taken for abandoned): its record says what it wrote; the status is not touched.
    #[error("import ended elsewhere: {}", .0.message)]
    EndedElsewhere(ApiError),
}

impl UploadFailure {
    /// The status the import ends in.
    pub(crate) fn status(&self) -> ImportStatus {
        match self {
            Self::Failed(_) | Self::EndedElsewhere(_) => ImportStatus::Failed,
            Self::Aborted(_) => ImportStatus::Aborted,
        }
    }

    pub(crate) fn answer(&self) -> &ApiError {
        match self {
            Self::Failed(e) | Self::Aborted(e) | Self::EndedElsewhere(e) => e,
        }
    }

    pub(crate) fn into_answer(self) -> ApiError {
        match self {
            Self::Failed(e) | Self::Aborted(e) | Self::EndedElsewhere(e) => e,
        }
    }
}

impl From<ApiError> for UploadFailure {
    fn from(e: ApiError) -> Self {
        Self::Failed(e)
    }
}

/// Maps a failure to read the next record to the client's answer and the import's final status.
pub(crate) fn read_error(e: csv_async::Error, max_body: u64) -> UploadFailure {
    match e.into_kind() {
        csv_async::ErrorKind::Io(io) => io_error(io, max_body),
        _ => {
            let e = ApiError::bad_request("invalid_csv", "the body could not be read as CSV");
            UploadFailure::Failed(e)
        }
    }
}

/// Maps a failure to read the body's bytes to the client's answer and the import's final
/// status.
pub(crate) fn io_error(io: std::io::Error, max_body: u64) -> UploadFailure {
    if let Some(b) = BodyError::find(&io) {
        return match b {
            BodyError::TooLarge(_) => UploadFailure::Failed(too_large(max_body)),
            BodyError::Decompressed(max) => UploadFailure::Failed(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body_too_large",
                format!("the body decompresses to more than {max} bytes (CSVBUS_MAX_DECOMPRESSED_BYTES)"),
            )),
            BodyError::Ratio(ratio) => UploadFailure::Failed(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("the body decompresses to more than {ratio} times its size (CSVBUS_MAX_DECOMPRESSION_RATIO)"),
            )),
            BodyError::TooSlow { rate, window } => UploadFailure::Aborted(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "body_too_slow",
                format!("the client sent less than {rate} bytes/s over {window:?}"),
            )),
            BodyError::Idle(d) => UploadFailure::Aborted(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "body_idle_timeout",
                format!("no data received for {d:?}"),
            )),
            BodyError::Client(m) => {
                UploadFailure::Aborted(ApiError::bad_request("body_read_error", m.clone()))
            }
        };
    }
    if let Some(t) = io.get_ref().and_then(|i| i.downcast_ref::<RecordTooLong>()) {
        return UploadFailure::Failed(
            ApiError::unprocessable("record_too_long", t.to_string()).at_line(t.line),
        );
    }
    UploadFailure::Failed(ApiError::bad_request(
        "invalid_body",
        format!("the body could not be decoded: {io}"),
    ))
}

/// The answer for an import that ended while its body was read, from its record.
pub(crate) async fn ended_elsewhere(app: &crate::App, id: uuid::Uuid) -> UploadFailure {
    let rec = csvbus_shared::imports::get(&app.pool, id)
        .await
        .ok()
        .flatten();
    let e = match rec {
        Some(r) if r.stopped => ApiError::unprocessable(
            "too_many_rejected_rows",
            format!(
                "{} (rows written: {}; GET /v1/imports/{id} and its /rejected show the rest; a \
                 retry under the same Idempotency-Key answers this import again)",
                r.error.unwrap_or_default(),
                r.rows_written
            ),
        ),
        _ => ApiError::unavailable(
            "import_aborted",
            "the import was taken for abandoned while it was uploaded; retry with the same \
             Idempotency-Key to finish it",
        ),
    };
    UploadFailure::EndedElsewhere(e)
}

pub(crate) fn produce_error(e: ProduceError) -> UploadFailure {
    tracing::error!(error = %e, "produce failed");
    UploadFailure::Failed(ApiError::unavailable(
        "broker_unavailable",
        "the broker did not acknowledge the rows in time; the import failed, retry later",
    ))
}
