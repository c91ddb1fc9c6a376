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
