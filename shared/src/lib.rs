//! The library both csvbus services (upload and sink) and the `csvbus` command stand on.
//!
//! It owns what must agree between the two halves of the pipeline — the Kafka message format of a
//! row, the Postgres schema of csvbus' own state — and the plumbing both need. It never holds
//! service logic: parsing uploads lives in `csvbus-upload`, writing batches in `csvbus-sink`.
//!
//! Layout:
//! - [`config`]: typed settings read from an injectable environment, with documented defaults.
//! - [`message`]: the wire format of one row on the topic (JSON value, import/line headers).
//! - [`kafka`]: producer, consumer and admin client construction; topic creation.
//! - [`db`]: Postgres pool with start-up retry and the embedded migrator (one for all binaries).
//! - [`failure`]: what a Postgres error means for the rows being written (one policy).
//! - [`catalog`]: target-table introspection and identifier quoting, so names reach SQL only
//!   checked against the catalog and quoted.
//! - [`imports`]: `csvbus.imports` and its rejected rows, with the one module of typed
//!   transitions every change goes through; the list, retention.
//! - [`usage`]: `--help` and `--version` of the service binaries.
//! - [`dates`]: dates as people write them, rewritten to ISO (`dateformat=`).
//! - [`read_as`]: how an upload's bytes were read (dialect, encoding, column mapping).
//! - [`infer`]: column types from a sample of rows, and the `CREATE TABLE` of `create=true`.
//! - [`modes`]: what an import does to its table; staging tables of all-or-nothing imports.
//! - [`telemetry`]: tracing subscriber (text or JSON) and the Prometheus recorder.
//! - [`shutdown`]: SIGINT/SIGTERM to a `CancellationToken`.
//! - [`service`]: the fatal error of either service.
//! - [`webhook`]: where the end of an import is announced, and how a delivery is signed.

pub mod catalog;
pub mod config;
pub mod dates;
pub mod db;
pub mod failure;
pub mod health;
pub mod imports;
pub mod infer;
pub mod kafka;
pub mod malloc;
pub mod message;
pub mod modes;
pub mod numbers;
pub mod read_as;
pub mod scope;
pub mod service;
pub mod shutdown;
pub mod telemetry;
pub mod usage;
pub mod webhook;
