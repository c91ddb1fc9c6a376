//! One upload, planned and run: what is checked before the body ([`checks`]), the plan and the
//! new import record ([`start`]), repeats and resumes under an `Idempotency-Key`
//! ([`idempotency`]), the read → check → send loop ([`row_loop`]) with its live counters
//! ([`progress`]), and what each way an upload ends answers ([`failures`]). [`ingest`] is the
//! handler that runs these in order.

pub(crate) mod checks;
pub(crate) mod clients;
pub(crate) mod conclude;
pub(crate) mod create;
pub(crate) mod dates;
pub(crate) mod failures;
pub(crate) mod given_types;
pub(crate) mod idempotency;
pub(crate) mod ingest;
pub(crate) mod lookup;
pub(crate) mod preview;
pub(crate) mod progress;
pub(crate) mod request;
pub(crate) mod row_loop;
pub(crate) mod source_name;
pub(crate) mod start;
pub(crate) mod type_notes;
pub(crate) mod widen;
