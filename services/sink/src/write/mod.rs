//! A partition's records into Postgres: batches handed to writer tasks, up to four in flight
//! ([`dispatch`]), each in its turn behind the one before ([`turn`]) and pipelined behind it
//! while it runs ([`pipeline`]); records grouped by import, dead letters set apart ([`batch`]);
//! values decoded into COPY CSV before the transaction ([`decode`]); a batch's rows written and
//! booked ([`rows`]); one batch in one transaction,
//! retried by the failure policy ([`writer`]), with the imports it names ([`targets`]); COPY
//! or staged `INSERT … ON CONFLICT` of a group ([`copy`]), refused rows found by bisection
//! under savepoints ([`bisect`]) or, where they are dense, a row at a time inside Postgres
//! ([`each`]); every write in the transaction [`transaction`] begins.

pub(crate) mod batch;
pub(crate) mod binary;
pub(crate) mod bisect;
pub(crate) mod copy;
pub(crate) mod decode;
pub(crate) mod dispatch;
pub(crate) mod each;
pub(crate) mod how;
pub(crate) mod pipeline;
pub(crate) mod rows;
pub(crate) mod scan;
pub(crate) mod targets;
pub(crate) mod transaction;
pub(crate) mod turn;
pub(crate) mod writer;

/// A map keyed by import. Its lookups are per row on the write path (three or four per row
/// while a batch is sorted), so a fast hasher, seeded per process (an id in a forged message
/// could be chosen, but not to collide).
pub(crate) type ByImport<V> = std::collections::HashMap<uuid::Uuid, V, foldhash::fast::RandomState>;
