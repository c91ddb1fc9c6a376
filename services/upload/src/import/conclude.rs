//! How an upload ends: the body's digest and the final counters saved, and the answer — `202`
//! with the counters once every row is on the broker, else the failure's answer with the
//! import's id and what its rows came to.

use axum::http::StatusCode;
use axum::Json;
use csvbus_shared::imports::{self, ImportStatus};
use csvbus_shared::modes::ImportMode;
use csvbus_shared::read_as::ReadAs;
use uuid::Uuid;

use crate::error::ApiError;
use crate::import::failures::{self, UploadFailure};
use crate::import::progress::{Progress, ProgressGuard};
use crate::import::request::Accepted;
use crate::import::start::Plan;
use crate::read::body_digest::BodyDigest;
use crate::read::media;
use crate::App;

/// What an answer after a failure says of the rows before it: in a mode that is not staged they
/// are written whatever happens now, and a retry must not send them again.
fn written_before(mode: ImportMode, produced: i64) -> String {
    match (mode.staged(), produced) {
        (_, 0) => String::new(),
        (true, _) => format!(" ({} import: none of its rows were written)", mode.as_str()),
        (false, n) => format!(
            " ({n} rows before it were accepted and are written to the table; a retry with the \
             same Idempotency-Key resumes after them, one without a key writes them again)"
        ),
    }
}

/// What an upload that got as far as its rows leaves behind.
pub(crate) struct Ended {
    pub id: Uuid,
    pub read_as: ReadAs,
    /// The body's digest: saved when the body was read to its end, before the import is
    /// accepted, so that a repeat of it is always compared.
    pub digest: BodyDigest,
}

/// Saves how the upload ended and answers: `202` with the counters once every row is on the
/// broker, the failure's answer otherwise.
pub(crate) async fn conclude(
    app: &App,
    guard: &mut ProgressGuard,
    plan: &Plan,
    Ended {
        id,
        mut read_as,
        digest,
    }: Ended,
    progress: &Progress,
    outcome: Result<(), UploadFailure>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    if let Some(d) = digest.finished() {
        imports::save_body_digest(&app.pool, id, &d).await?;
    }
    read_as
        .notes
        .extend(plan.form_rest.as_ref().and_then(media::Rest::note));
    let counters = progress.snapshot();
    let (final_status, error) = match &outcome {
        Ok(()) => (ImportStatus::Produced, None),
        Err(f) => (f.status(), Some(f.answer().message.clone())),
    };
    let saved = guard
        .finish(final_status, counters, error.as_deref())
        .await?;
    if let Err(f) = outcome {
        tracing::warn!(error = %f, "upload ended early");
        // The import id tells the client where to see what this import wrote before it ended.
        let suffix = match &f {
            UploadFailure::EndedElsewhere(_) => String::new(),
            _ => written_before(plan.mode, counters.rows_produced),
        };
        let mut answer = f.into_answer().for_import(id);
        answer.message += &suffix;
        return Err(answer);
    }
    if !saved {
        // It ended while its body was read: the sink stopped it, or it was taken for abandoned.
        let answer = failures::ended_elsewhere(app, id).await.into_answer();
        return Err(answer.for_import(id));
    }
    tracing::info!(
        rows = counters.rows_produced,
        rejected = counters.rows_rejected,
        bytes = counters.bytes_received,
        "upload produced"
    );
    Ok((
        StatusCode::ACCEPTED,
        Json(Accepted {
            import_id: id,
            table: plan.table.0.to_string(),
            status: final_status,
            mode: plan.mode,
            rows_produced: counters.rows_produced as u64,
            rows_rejected: counters.rows_rejected as u64,
            bytes_read: counters.bytes_received as u64,
            resumed_from_line: plan.resume.as_ref().map(|r| r.counters.acked.line as u64),
            status_url: format!("/v1/imports/{id}"),
            read_as: Some(read_as),
            replayed: false,
        }),
    ))
}
