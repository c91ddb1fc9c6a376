//! The HTTP surface: the connection loop, the checks every request passes before its route,
//! the router with its API-key check, and the read-only routes (an import, its rejected rows,
//! the lists, the page, the OpenAPI document, the metrics). `POST /v1/imports` is routed to
//! [`crate::import::ingest`].

pub(crate) mod api_doc;
pub(crate) mod edge;
pub(crate) mod import_status;
pub(crate) mod listing;
pub(crate) mod metric_docs;
pub(crate) mod page;
pub(crate) mod rejected_csv;
pub(crate) mod routes;
pub(crate) mod server;
