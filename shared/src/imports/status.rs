//! Where an import stands: the status stored in `csvbus.imports.status` and shown by the API.

use serde::{Deserialize, Serialize};

/// Where an import stands (`csvbus.imports.status`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
#[sqlx(type_name = "text", rename_all = "lowercase")]
pub enum ImportStatus {
    /// The body is being read.
    Receiving,
    /// Every row is on the broker (or rejected); the sink has not written them all yet.
    Produced,
    /// Every produced row is written or rejected (staged modes: moved into the target).
    Completed,
    /// The upload ended with an error of the data or of the service.
    Failed,
    /// The client went away before the body ended.
    Aborted,
}

/// What an import came to, at a glance: derived from its status and counters (never stored),
/// so that an import whose rows Postgres refused is not shown as a plain success.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum Outcome {
    /// `receiving` or `produced`: not ended yet.
    InProgress,
    /// Completed, with no row rejected.
    Completed,
    /// Completed, with rows rejected (while reading or by Postgres): some rows, or all of them,
    /// are not in the table.
    CompletedWithRejections,
    Failed,
    Aborted,
}

impl Outcome {
    /// The SQL expression of an import's outcome over `csvbus.imports`' columns (the one
    /// definition the record and the list's filter share).
    pub const SQL: &'static str =
        "(CASE WHEN status IN ('receiving', 'produced') THEN 'in_progress'
          WHEN status = 'completed' AND rows_rejected + rows_write_rejected > 0
            THEN 'completed_with_rejections'
          ELSE status END)";
}

impl ImportStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Receiving => "receiving",
            Self::Produced => "produced",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Aborted => "aborted",
        }
    }

    /// The upload ended without all of its body accepted.
    pub fn upload_failed(self) -> bool {
        matches!(self, Self::Failed | Self::Aborted)
    }
}

impl std::fmt::Display for ImportStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
