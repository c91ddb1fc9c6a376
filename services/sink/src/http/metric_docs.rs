//! The sink's metrics (`/metrics`): described and registered at start from this one list,
//! which docs/operations.md is checked against.

use csvbus_shared::telemetry::MetricDoc;
use csvbus_shared::telemetry::MetricKind::{Counter, Gauge, Histogram};

pub const METRICS: &[MetricDoc] = &[
    MetricDoc::new(
        "csvbus_sink_webhook_attempts_total",
        Counter,
        "Webhook delivery attempts, by `outcome`: delivered, retry, failed (given up).",
    ),
    MetricDoc::new(
        "csvbus_sink_rows_written_total",
        Counter,
        "Rows written into their tables.",
    ),
    MetricDoc::new(
        "csvbus_sink_rows_rejected_total",
        Counter,
        "Rows Postgres refused (kept with their line and reason).",
    ),
    MetricDoc::new(
        "csvbus_sink_dead_letters_total",
        Counter,
        "Rows (or messages) that are not rows csvbus may write: each row of a pack counts.",
    ),
    MetricDoc::new(
        "csvbus_sink_duplicates_total",
        Counter,
        "Rows an earlier attempt of their import already sent (not written again).",
    ),
    MetricDoc::new(
        "csvbus_sink_rows_set_aside_total",
        Counter,
        "Rows of imports stopped past their max_rejected, set aside unwritten.",
    ),
    MetricDoc::new(
        "csvbus_sink_retries_total",
        Counter,
        "Write transactions retried after a database outage.",
    ),
    MetricDoc::new(
        "csvbus_sink_copies_total",
        Counter,
        "COPY statements of batch rows, by format: binary (every column's type and value encodable), csv, or one_by_one (the rest of a group after its second refused row, inserted a row at a time inside Postgres).",
    ),
    MetricDoc::new(
        "csvbus_sink_allowance_rewrites_total",
        Counter,
        "Batches written again with their imports' rows locked: the refusals they counted without the lock passed what the imports had left of max_rejected.",
    ),
    MetricDoc::new(
        "csvbus_sink_pipelined_batches_total",
        Counter,
        "Batches written behind the one before, by result: committed, conflict, contended, failed, refused, ordinary.",
    ),
    MetricDoc::new(
        "csvbus_sink_rejoins_total",
        Counter,
        "Times the sink joined its group or claims again after losing them.",
    ),
    MetricDoc::new(
        "csvbus_sink_seek_backs_total",
        Counter,
        "Seeks back to the position stored in Postgres.",
    ),
    MetricDoc::new(
        "csvbus_sink_missing_offsets_total",
        Counter,
        "Stored positions whose records the broker no longer has (the partition stalls).",
    ),
    MetricDoc::new(
        "csvbus_sink_batch_rows",
        Histogram,
        "Records per write transaction.",
    ),
    MetricDoc::new(
        "csvbus_sink_batch_seconds",
        Histogram,
        "Seconds per write transaction.",
    ),
    MetricDoc {
        labels: &["topic", "group", "partition"],
        ..MetricDoc::new(
            "csvbus_sink_consumer_lag",
            Gauge,
            "Records on the broker past the position committed to Postgres.",
        )
    },
];
