//! The read → check → send loop of one upload, after its header was accepted: each record is
//! encoded and produced (waiting at the in-flight bounds, which stops reading the body) or
//! rejected with its line and raw text.

use std::sync::atomic::Ordering;

use axum::http::StatusCode;
use csvbus_shared::imports::{self, Checkpoint, UploadCounters};
use csvbus_shared::message::{Packed, RowHeaders};
use uuid::Uuid;

use crate::error::ApiError;
use crate::import::failures::{produce_error, read_error, UploadFailure};
use crate::import::idempotency::mismatch;
use crate::import::ingest::DEFAULT_MAX_REJECTED;
use crate::import::progress::Progress;
use crate::import::start::{route_columns, Plan};
use crate::import::widen::Widening;
use crate::produce::checkpoint::Ledger;
use crate::produce::packer::Packer;
use crate::produce::producer::{InFlight, Message, ProduceError, Rows};
use crate::produce::route::Route;
use crate::read::parse::{Records, Span};
use crate::rows::{Header, ValueOptions};
use crate::App;

/// Produces every record after the header of import `id` (resumed from `start`), then waits
/// (up to twice the delivery timeout) for what was sent, so that the progress says how far it
/// got whatever happened; renews the service's producer when it broke. Also returns the
/// statements that widened columns of a table the import created ([`Widening`]).
pub(crate) async fn produce_all(
    app: &App,
    plan: &Plan,
    header: &Header,
    progress: &Progress,
    records: &mut Records<Input>,
    id: Uuid,
    start: &UploadCounters,
) -> (Result<(), UploadFailure>, Vec<String>) {
    let cfg = &app.config;
    // Only a table this import creates adapts its types.
    let widening = plan.create.then(|| {
        let staged = plan.mode.staged().then_some(id);
        let given: Vec<String> = plan
            .given_types
            .iter()
            .filter_map(|g| g.column.clone())
            .collect();
        Widening::new(&plan.table.0, staged, header, (&plan.table.1, &given))
    });
    let (generation, producer) = app.producer();
    let mut rows = RowLoop {
        app,
        id,
        headers: RowHeaders::new(id, &plan.table.0, cfg.common.signer()),
        max_rejected: plan.q.max_rejected.unwrap_or(DEFAULT_MAX_REJECTED),
        opts: &plan.opts,
        header: header.clone(),
        widening,
        progress,
        inflight: InFlight::new(
            producer,
            cfg.common.topic.clone(),
            app.inflight.clone(),
            cfg.inflight_bytes_per_upload,
            Ledger::new(start.acked),
        ),
        route: Route::new(
            route_columns(plan, header),
            plan.partitions,
            id,
            // Keys csvbus derives (upsert, skip) may be packed; a `key=` the client asked for
            // stays on its messages, as does every key when packs are off.
            plan.conflict.is_some() && header.key_index.is_none() && cfg.message_rows > 1,
        ),
        packer: Packer::new(
            cfg.message_rows,
            cfg.message_pack_bytes
                .min(cfg.max_message_bytes.saturating_sub(MESSAGE_FRAMING)),
        ),
        produce_failed: false,
        resume: plan.resume.as_ref().map(|r| r.counters.acked),
        digest: 0,
        start_rows: start.rows_produced as u64,
    };
    let outcome = rows.run(records).await;
    let widened = rows.widening.take().map(|w| w.done).unwrap_or_default();
    let drained = tokio::time::timeout(cfg.delivery_timeout * 2, rows.inflight.drain()).await;
    progress.produced.store(rows.produced(), Ordering::Relaxed);
    progress.set_checkpoint(rows.inflight.ledger.at);
    if rows.inflight.producer_broken() {
        app.renew_producer(generation);
    }
    let outcome = match (outcome, drained) {
        (Err(e), _) => Err(e),
        (Ok(()), Ok(Err(e))) => Err(produce_error(e)),
        (Ok(()), Err(_)) => Err(produce_error(ProduceError::Cancelled)),
        (Ok(()), Ok(Ok(()))) => Ok(()),
    };
    (outcome, widened)
}

/// Longest raw text kept for a rejected row.
const RAW_LIMIT: usize = 4096;

pub type Input = std::pin::Pin<Box<dyn tokio::io::AsyncRead + Send>>;

/// Reads the header record: 422 when the body is empty or the header's quote never closes.
pub async fn read_header(records: &mut Records<Input>, max_body: u64) -> Result<(), ApiError> {
    let span = match records.next().await {
        Ok(Some(span)) => span,
        Ok(None) => {
            return Err(ApiError::unprocessable(
                "missing_header",
                "the body is empty: the first record must name the columns",
            )
            .at_line(1))
        }
        Err(e) => return Err(read_error(e, max_body).into_answer()),
    };
    if records.unterminated(span) {
        return Err(ApiError::unprocessable(
            "invalid_header",
            "the header has a quoted field that is never closed",
        )
        .at_line(span.line));
    }
    records.is_header();
    Ok(())
}

/// The read → check → send loop of one upload.
pub struct RowLoop<'a> {
    pub app: &'a App,
    pub id: Uuid,
    /// The csvbus headers of this import's rows.
    pub headers: RowHeaders,
    pub max_rejected: u64,
    pub opts: &'a ValueOptions,
    /// This upload's own copy: a widened column is read as its new type from then on.
    pub header: Header,
    pub widening: Option<Widening>,
    pub progress: &'a Progress,
    pub inflight: InFlight,
    pub route: Route,
    /// Keyless rows not sent yet.
    pub packer: Packer,
    /// Sending or a delivery failed: nothing more is sent.
    pub produce_failed: bool,
    /// A resumed import: records up to this checkpoint are read and skipped; their digest must
    /// match it.
    pub resume: Option<Checkpoint>,
    /// The chained digest of the records read so far.
    pub digest: i64,
    /// Rows produced by earlier attempts, up to the checkpoint.
    pub start_rows: u64,
}

impl RowLoop<'_> {
    pub(crate) async fn run(&mut self, records: &mut Records<Input>) -> Result<(), UploadFailure> {
        let outcome = self.read_all(records).await;
        // The rows read before the body or a row failed the upload go out, as they did when
        // every row was sent as it was read (the answer counts them as accepted) — not after
        // the broker failed, nor once the import ended elsewhere.
        if matches!(
            outcome,
            Err(UploadFailure::Failed(_) | UploadFailure::Aborted(_))
        ) && !self.produce_failed
        {
            let _ = self.flush_all().await;
        }
        outcome
    }

    async fn read_all(&mut self, records: &mut Records<Input>) -> Result<(), UploadFailure> {
        let cfg = &self.app.config;
        let mut payload = Vec::with_capacity(1024);
        // Made once: per record the check is one poll of it, after the next record's.
        let ended = self.progress.ended_elsewhere.clone().cancelled_owned();
        let mut ended = std::pin::pin!(ended);
        loop {
            let next = {
                let next = records.next();
                let mut next = std::pin::pin!(next);
                match futures::poll!(next.as_mut()) {
                    std::task::Poll::Ready(next) => next,
                    std::task::Poll::Pending => {
                        // The body makes us wait: send what is packed, and take the
                        // acknowledgements meanwhile, so the checkpoint covers what was sent.
                        self.flush_all().await?;
                        loop {
                            tokio::select! {
                                biased;
                                next = next.as_mut() => break next,
                                _ = &mut ended => {
                                    return Err(crate::import::failures::ended_elsewhere(self.app, self.id).await);
                                }
                                acked = self.inflight.complete_one(), if self.inflight.has_pending() => {
                                    if let Err(e) = acked {
                                        return Err(self.produce_failed(e));
                                    }
                                    self.report_progress();
                                }
                            }
                        }
                    }
                }
            };
            let span = match next {
                Ok(Some(span)) => span,
                Ok(None) => {
                    self.flush_all().await?;
                    return self.check_resumed(u64::MAX);
                }
                Err(e) => return Err(read_error(e, cfg.max_body_bytes)),
            };
            let received = self.progress.received.fetch_add(1, Ordering::Relaxed) + 1;
            if received > cfg.max_rows_per_import {
                let e = too_many_rows(cfg.max_rows_per_import).at_line(span.line);
                return Err(e.into());
            }
            self.check_resumed(span.line)?;
            self.digest = records.digest(span, self.digest);
            if self.resume.is_some() {
                records.done();
                continue;
            }
            if let Some(w) = &mut self.widening {
                w.fit(
                    self.app,
                    self.id,
                    &mut self.header,
                    &records.record,
                    self.opts,
                )
                .await?;
            }
            let line = span.line as i64;
            let (key, partition) = self.route.place(span.line, &records.record);
            let max = self.app.config.max_message_bytes;
            match encode(
                &self.header,
                self.opts,
                max,
                records,
                span,
                key,
                &mut payload,
            ) {
                Ok(()) => {
                    let seq = self.inflight.ledger.push(line, self.digest, true);
                    match partition {
                        Some(p) => {
                            if !self.packer.fits(p, payload.len()) {
                                self.flush(p).await?;
                            }
                            self.packer.push(p, span.line, &payload, seq);
                            if self.packer.full(p) {
                                self.flush(p).await?;
                            }
                            while let Some(largest) = self.packer.over_budget() {
                                self.flush(largest).await?;
                            }
                        }
                        None => {
                            let message = Message {
                                payload: &payload,
                                key,
                                partition,
                                rows: Rows {
                                    count: 1,
                                    seqs: vec![seq],
                                },
                            };
                            let headers = self.headers.for_row(span.line, &payload);
                            if let Err(e) = self.inflight.send(message, headers).await {
                                return Err(self.produce_failed(e));
                            }
                        }
                    }
                }
                Err(reason) => {
                    let raw = records.raw_text(span, RAW_LIMIT);
                    self.reject(span.line, &raw, &reason).await?;
                    self.inflight.ledger.push(line, self.digest, false);
                }
            }
            records.done();
            if let Err(e) = self.inflight.poll_acks() {
                return Err(self.produce_failed(e));
            }
            self.report_progress();
        }
    }

    fn report_progress(&self) {
        self.progress
            .produced
            .store(self.produced(), Ordering::Relaxed);
        self.progress.set_checkpoint(self.inflight.ledger.at);
    }

    /// Sends every pack.
    async fn flush_all(&mut self) -> Result<(), UploadFailure> {
        for p in self.packer.partitions() {
            self.flush(p).await?;
        }
        Ok(())
    }

    /// Sends `partition`'s pack.
    async fn flush(&mut self, partition: i32) -> Result<(), UploadFailure> {
        let Some((packed, rows)) = self.packer.take(partition) else {
            return Ok(());
        };
        let (payload, headers) = match packed {
            Packed::One { line, value } => (value, self.headers.for_row(line, value)),
            Packed::Many {
                first_line,
                lines,
                value,
            } => (value, self.headers.for_pack(first_line, lines, value)),
        };
        let message = Message {
            payload,
            key: None,
            partition: Some(partition),
            rows,
        };
        let sent = self.inflight.send(message, headers).await;
        sent.map_err(|e| self.produce_failed(e))
    }

    fn produce_failed(&mut self, e: ProduceError) -> UploadFailure {
        self.produce_failed = true;
        produce_error(e)
    }

    /// Rows produced by the import: those of earlier attempts up to the checkpoint they left,
    /// and those acknowledged in this one.
    pub fn produced(&self) -> u64 {
        self.start_rows + self.inflight.acked
    }

    /// While resuming: once the record at `line` is past the checkpoint (or the body ended,
    /// `u64::MAX`), the records read so far must be the ones the checkpoint was made of.
    fn check_resumed(&mut self, line: u64) -> Result<(), UploadFailure> {
        let Some(at) = self.resume else {
            return Ok(());
        };
        if line <= at.line as u64 {
            return Ok(());
        }
        if self.digest != at.digest {
            let e = mismatch(format!(
                "the body differs from the one first uploaded under this Idempotency-Key (lines 1 to {} must be the same)",
                at.line
            ));
            return Err(e.into());
        }
        tracing::info!(line = at.line, "resumed after the checkpoint");
        self.resume = None;
        Ok(())
    }

    /// Records a rejected row; fails the upload past `max_rejected`.
    async fn reject(&mut self, line: u64, raw: &str, reason: &str) -> Result<(), UploadFailure> {
        let rejected = self.progress.rejected.fetch_add(1, Ordering::Relaxed) + 1;
        let earlier = rejected as i64 - 1;
        if let Err(e) = save_rejected(self.app, self.id, line, reason, raw, earlier).await {
            return Err(ApiError::from(e).into());
        }
        if rejected > self.max_rejected {
            let message = format!(
                "{rejected} rows rejected, more than max_rejected={}; last: {reason}",
                self.max_rejected
            );
            let e = ApiError::unprocessable("too_many_rejected_rows", message).at_line(line);
            return Err(e.into());
        }
        Ok(())
    }
}

/// Bytes a message takes beyond its key and value on the wire: the three csvbus headers and the
/// record's framing (at most ~150 bytes; counted generously).
const MESSAGE_FRAMING: usize = 512;

fn too_many_rows(max: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_many_rows",
        format!("the body has more than {max} rows, the most one import takes (CSVBUS_MAX_ROWS_PER_IMPORT)"),
    )
}

async fn save_rejected(
    app: &App,
    id: Uuid,
    line: u64,
    reason: &str,
    raw: &str,
    earlier: i64,
) -> Result<(), sqlx::Error> {
    let mut conn = app.pool.acquire().await?;
    let rejected = imports::Rejected {
        import_id: id,
        line: line as i64,
        stage: imports::Stage::Parse,
        reason,
        raw: Some(raw),
        fields: None,
    }
    .kept_in_full_after(earlier);
    imports::insert_rejected(&mut conn, rejected).await?;
    metrics::counter!("csvbus_upload_rejected_rows_total").increment(1);
    Ok(())
}

/// The row's message value in `payload`, or why it is rejected: a field the header or the
/// options refuse, a quote left open, or a message (value, `key`, framing) over `max` bytes.
/// A preview ([`crate::import::preview`]) judges its rows with it too.
pub(crate) fn encode(
    header: &Header,
    opts: &ValueOptions,
    max: usize,
    records: &Records<Input>,
    span: Span,
    key: Option<&[u8]>,
    payload: &mut Vec<u8>,
) -> Result<(), String> {
    header.encode(&records.record, opts, || records.quoted(span), payload)?;
    if records.unterminated(span) {
        return Err("unterminated quoted field".to_owned());
    }
    let size = payload.len() + key.map_or(0, <[u8]>::len) + MESSAGE_FRAMING;
    if size > max {
        return Err(format!(
            "the row is {size} bytes as a message, more than the limit of {max} (CSVBUS_MAX_MESSAGE_BYTES)"
        ));
    }
    Ok(())
}
