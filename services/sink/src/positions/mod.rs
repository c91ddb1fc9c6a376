//! Where each partition stands, in Postgres: a batch's transaction locks its partition's
//! position, skips what is below it and moves it past the batch ([`offsets`]); positions left
//! by an earlier incarnation of the topic are detected ([`stale`]); the highest line handled
//! per import and partition moves with it ([`handled`]).

pub(crate) mod handled;
pub(crate) mod offsets;
pub(crate) mod stale;
