//! csvbus' integration tests, one binary with a module per area (each test binary would link
//! the whole dependency graph again). They share the harness (`csvbus_tests`): a fresh database
//! per test, a random topic and group, services spawned in-process on port 0 or as release
//! processes, request helpers. Run one area with `cargo test --test integration sink::`.
//! `restarts.rs`, which restarts the shared PostgreSQL, is a binary of its own.

mod backpressure;
mod binary_copy;
mod broker_faults;
mod compose;
mod crash;
mod foundation;
mod hostile;
mod limits;
mod listing;
mod messy;
mod modes;
mod openapi;
mod packs;
mod pipeline;
mod replay;
mod roles;
mod routes;
mod sink;
mod sink_crash;
mod upload;
mod upsert_copy;
mod webhooks;
