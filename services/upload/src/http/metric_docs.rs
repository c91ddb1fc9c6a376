//! The upload service's metrics (`/metrics`): described and registered at start from this one
//! list, which docs/operations.md is checked against.

use csvbus_shared::telemetry::MetricDoc;
use csvbus_shared::telemetry::MetricKind::{Counter, Gauge, Histogram};

pub const METRICS: &[MetricDoc] = &[
    MetricDoc::new(
        "csvbus_upload_bytes_total",
        Counter,
        "Body bytes read, as sent (compressed).",
    ),
    MetricDoc::new(
        "csvbus_upload_rows_total",
        Counter,
        "Records read from bodies (header excluded).",
    ),
    MetricDoc::new(
        "csvbus_upload_rows_produced_total",
        Counter,
        "Rows the broker acknowledged.",
    ),
    MetricDoc::new(
        "csvbus_upload_rejected_rows_total",
        Counter,
        "Records rejected while reading (with their line).",
    ),
    MetricDoc::new(
        "csvbus_upload_refused_total",
        Counter,
        "Uploads answered 429 (the service's or a client's upload slots taken).",
    ),
    MetricDoc::new(
        "csvbus_upload_producer_renewed_total",
        Counter,
        "Producers replaced after a delivery failure they cannot go on from.",
    ),
    MetricDoc::new(
        "csvbus_upload_inflight_bytes",
        Gauge,
        "Message bytes awaiting the broker's acknowledgement.",
    ),
    MetricDoc::new("csvbus_uploads_active", Gauge, "Uploads being read now."),
    MetricDoc::new(
        "csvbus_upload_delivery_seconds",
        Histogram,
        "Seconds from send to the broker's acknowledgement, per message (a row or a pack).",
    ),
];
