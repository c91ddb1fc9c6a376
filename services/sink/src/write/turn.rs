//! A batch's turn within its partition: what it waits on from the batch before (a writer's
//! permit taken, the position locked, the end), and how it is written — pipelined behind that
//! batch while it still runs ([`crate::write::pipeline`]), else the ordinary way once it ended.

use sqlx::PgPool;
use tokio::sync::oneshot::error::TryRecvError;
use tokio::sync::{oneshot, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::write::pipeline::{self, Pipelined, Signal};
use crate::write::writer::{write_with_retry, Batch, Outcome, Settings};

/// What the next batch of a partition waits on: this batch has a writer's permit, holds the
/// partition's position lock, has ended (each resolves when fired or when the batch ends).
pub struct Turn {
    started: oneshot::Receiver<()>,
    locked: oneshot::Receiver<()>,
    done: oneshot::Receiver<()>,
}

/// A batch's side of its [`Turn`].
pub struct Mine {
    started: Signal,
    locked: Signal,
    _done: oneshot::Sender<()>,
}

impl Turn {
    pub fn next() -> (Self, Mine) {
        let (started, started_rx) = Signal::new();
        let (locked, locked_rx) = Signal::new();
        let (done, done_rx) = oneshot::channel();
        let turn = Self {
            started: started_rx,
            locked: locked_rx,
            done: done_rx,
        };
        let mine = Mine {
            started,
            locked,
            _done: done,
        };
        (turn, mine)
    }
}

/// A writer task's shares of the sink.
pub struct Writer<'a> {
    /// The batch may be pipelined behind the one before.
    pub pipelining: bool,
    pub pool: &'a PgPool,
    pub settings: &'a Settings,
    pub sem: &'a Semaphore,
    pub stop: &'a CancellationToken,
}

impl Writer<'_> {
    /// Writes `batch` after the batch `before` it: pipelined behind it while it is still being
    /// written ([`pipeline`]), else — or when that does not commit — once it has ended.
    pub async fn write(
        &self,
        batch: &Batch,
        before: Option<Turn>,
        mine: &Mine,
        contended: &mut bool,
    ) -> Option<Outcome> {
        if let Some(mut before) = before {
            let _ = (&mut before.started).await;
            let permit = self.sem.acquire().await.ok()?;
            mine.started.fire();
            // (A receiver that has answered `try_recv` must not be awaited again.)
            let running = matches!(before.done.try_recv(), Err(TryRecvError::Empty));
            if running && self.pipelining {
                let pipelined =
                    pipeline::write(self.pool, self.settings, batch, before.locked, &mine.locked);
                tokio::select! {
                    written = pipelined => match written {
                        Pipelined::Committed(o) => return Some(o),
                        Pipelined::Contended => *contended = true,
                        Pipelined::Conflict => {}
                    },
                    _ = self.stop.cancelled() => return None,
                }
            }
            drop(permit);
            if running {
                let _ = before.done.await;
            }
        }
        let _permit = self.sem.acquire().await.ok()?;
        mine.started.fire();
        write_with_retry(self.pool, self.settings, batch, self.stop, &mine.locked).await
    }
}
