//! What a failed upload answers: the client's error and the import's final status, for each
//! way reading the body or producing its rows can fail.

use axum::http::StatusCode;
use csvbus_shared::imports::status;

use crate::body::BodyError;
use crate::checks::too_large;
use crate::error::ApiError;
use crate::produce::ProduceError;
use crate::tap::RecordTooLong;

/// Maps a failure to read the next record to the client's answer and the import's final status.
pub(crate) fn read_error(e: csv_async::Error, max_body: u64) -> (ApiError, &'static str) {
    let io = match e.into_kind() {
        csv_async::ErrorKind::Io(io) => io,
        _ => {
            let e = ApiError::bad_request("invalid_csv", "the body could not be read as CSV");
            return (e, status::FAILED);
        }
    };
    if let Some(b) = BodyError::find(&io) {
        return match b {
            BodyError::TooLarge(_) => (too_large(max_body), status::FAILED),
            BodyError::Decompressed(max) => (
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body_too_large",
                    format!("the body decompresses to more than {max} bytes (CSVBUS_MAX_DECOMPRESSED_BYTES)"),
                ),
                status::FAILED,
            ),
            BodyError::TooSlow { rate, window } => (
                ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "body_too_slow",
                    format!("the client sent less than {rate} bytes/s over {window:?}"),
                ),
                status::ABORTED,
            ),
            BodyError::Idle(d) => (
                ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "body_idle_timeout",
                    format!("no data received for {d:?}"),
                ),
                status::ABORTED,
            ),
            BodyError::Client(m) => (
                ApiError::bad_request("body_read_error", m.clone()),
                status::ABORTED,
            ),
        };
    }
    if let Some(t) = io.get_ref().and_then(|i| i.downcast_ref::<RecordTooLong>()) {
        return (
            ApiError::unprocessable("record_too_long", t.to_string()).at_line(t.line),
            status::FAILED,
        );
    }
    (
        ApiError::bad_request(
            "invalid_body",
            format!("the body could not be decoded: {io}"),
        ),
        status::FAILED,
    )
}

pub(crate) fn produce_error(e: ProduceError) -> (ApiError, &'static str) {
    tracing::error!(error = %e, "produce failed");
    (
        ApiError::unavailable(
            "broker_unavailable",
            "the broker did not acknowledge the rows in time; the import failed, retry later",
        ),
        status::FAILED,
    )
}
