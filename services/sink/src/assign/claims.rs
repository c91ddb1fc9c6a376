//! Partition ownership kept in Postgres (`CSVBUS_SINK_ASSIGNMENT=postgres`).
//!
//! The positions are Postgres' already, so Postgres can say who writes which partition too, and
//! no broker's group bookkeeping can park a sink. Each sink holds, on one session of its own:
//!
//! - a *member* advisory lock (a random key under the group's member namespace): the live members
//!   are the holders of those locks, read from `pg_locks`;
//! - a *partition* advisory lock for each partition it writes.
//!
//! Every `CSVBUS_SINK_CLAIM_INTERVAL_MS` each sink lists the live members, sorted; the member at
//! index `i` of `n` wants the partitions `p` with `p % n == i`. It lets go of the others (stops
//! fetching them, then unlocks) and tries to lock the ones it wants, assigning each to its
//! consumer at the position stored in Postgres. A process that dies loses its session and with
//! it every lock at once (SIGKILL closes the socket; a vanished host is found by TCP keepalives),
//! so the next look of the others shares its partitions out. Two sinks briefly fetching one
//! partition is harmless: a batch locks the partition's position row, and rows below the stored
//! position are skipped ([`crate::positions::offsets`]).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::Consumer;
use rdkafka::{Offset, TopicPartitionList};
use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;

use crate::assign::locks;
use crate::assign::watchdog::GroupHealth;
use crate::fetch::feed::SinkConsumer;
use crate::fetch::topic;
use crate::positions::offsets;

/// What the claimer needs.
pub struct Claimer {
    pub pool: PgPool,
    /// Also asked for the topic's metadata every look: the answer refreshes the consumer's own
    /// view, so a topic that was missing for a while (a broker restarted without it) is fetched
    /// again within a look of coming back, not after librdkafka's 5-minute metadata refresh.
    pub consumer: Arc<SinkConsumer>,
    pub topic: String,
    pub group_id: String,
    pub interval: Duration,
    pub health: Arc<GroupHealth>,
}

#[derive(Debug, thiserror::Error)]
enum ClaimError {
    #[error("postgres: {0}")]
    Db(#[from] sqlx::Error),
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("the session no longer holds its member lock")]
    LostMembership,
}

/// Claims partitions until `shutdown`; a broken session is dropped (its locks go with it), the
/// partitions it held are unassigned, and a new session starts after a backoff.
pub async fn run(c: Claimer, shutdown: CancellationToken) {
    use backon::Retryable;
    loop {
        let open = (|| Session::open(&c))
            .retry(csvbus_shared::db::outage_backoff(None))
            .sleep(tokio::time::sleep)
            .notify(|e, delay| {
                tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "cannot open the claims session");
            });
        let mut session = tokio::select! {
            _ = shutdown.cancelled() => return,
            s = open => match s {
                Ok(s) => s,
                // Not reached: the backoff has no end.
                Err(_) => continue,
            },
        };
        let mut tick = tokio::time::interval(c.interval);
        let ended = loop {
            tokio::select! {
                _ = shutdown.cancelled() => break None,
                _ = c.health.rejoin_requested() => break Some("the watchdog asked for a new session".to_owned()),
                _ = tick.tick() => {}
            }
            if let Err(e) = session.step(&c).await {
                break Some(e.to_string());
            }
        };
        session.let_go_all(&c);
        let Some(why) = ended else { return };
        tracing::warn!(reason = %why, "claims session ended: letting go of every partition");
        metrics::counter!("csvbus_sink_rejoins_total").increment(1);
    }
}

/// One Postgres session and the partitions it holds.
struct Session {
    conn: PgConnection,
    members_ns: i32,
    partitions_ns: i32,
    member: i32,
    held: BTreeSet<i32>,
}

impl Session {
    async fn open(c: &Claimer) -> Result<Self, ClaimError> {
        let mut conn = c.pool.acquire().await?.detach();
        // A host that vanishes without closing its socket is found within ~25 s.
        for set in [
            "SET tcp_keepalives_idle = 10",
            "SET tcp_keepalives_interval = 5",
            "SET tcp_keepalives_count = 3",
        ] {
            sqlx::query(set).execute(&mut conn).await?;
        }
        let members_ns = locks::key(&["csvbus-members", &c.group_id, &c.topic]);
        let partitions_ns = locks::key(&["csvbus-partitions", &c.group_id, &c.topic]);
        loop {
            let member = locks::key(&[&uuid::Uuid::new_v4().to_string()]);
            if locks::try_lock(&mut conn, members_ns, member).await? {
                tracing::info!(member, "claims session open");
                return Ok(Self {
                    conn,
                    members_ns,
                    partitions_ns,
                    member,
                    held: BTreeSet::new(),
                });
            }
        }
    }

    /// One look: who is alive, what this member wants, let go and take accordingly.
    async fn step(&mut self, c: &Claimer) -> Result<(), ClaimError> {
        let members = self.members().await?;
        let Some(index) = members.iter().position(|m| *m == self.member) else {
            return Err(ClaimError::LostMembership);
        };
        let count = match topic::partition_count(&c.consumer, &c.topic).await {
            Ok(n) => n,
            Err(e) => {
                tracing::debug!(error = %e, "no partition count this time");
                return Ok(());
            }
        };
        if count > 0 && c.consumer.context().take_brokers_lost() {
            self.reseat(c).await;
        }
        let wanted: BTreeSet<i32> = (0..count)
            .filter(|p| *p as usize % members.len() == index)
            .collect();
        let surplus: Vec<i32> = self.held.difference(&wanted).copied().collect();
        if !surplus.is_empty() {
            c.consumer
                .incremental_unassign(&topic::tpl(&c.topic, &surplus, Offset::Invalid)?)?;
            for p in surplus.iter().copied() {
                locks::unlock(&mut self.conn, self.partitions_ns, p).await?;
                self.held.remove(&p);
            }
            tracing::info!(partitions = ?surplus, members = members.len(), "let go of partitions");
        }
        let mut taken = Vec::new();
        let missing: Vec<i32> = wanted.difference(&self.held).copied().collect();
        for p in missing {
            if !locks::try_lock(&mut self.conn, self.partitions_ns, p).await? {
                continue; // Its previous holder has not let go yet: next look.
            }
            let at = self.stored(c, p).await?;
            c.consumer
                .incremental_assign(&topic::tpl(&c.topic, &[p], at)?)?;
            self.held.insert(p);
            taken.push(p);
        }
        if !taken.is_empty() {
            tracing::info!(partitions = ?taken, members = members.len(), "took partitions");
        }
        Ok(())
    }

    /// After every broker connection was lost, fetching resumes from the offsets committed to
    /// the brokers (the hint committed after each batch), or from the log start when the
    /// brokers have none: a broker that lost its log (tansu with memory storage) recreates the
    /// topic from offset 0, and a fetch position past the new log's end would otherwise wait
    /// for it forever, or read on from there and never see the records before it. Records the
    /// stored positions cover are skipped; records of a recreated log are recognised as such
    /// ([`crate::positions::stale`]).
    async fn reseat(&mut self, c: &Claimer) {
        let held: Vec<i32> = self.held.iter().copied().collect();
        if held.is_empty() {
            return;
        }
        let consumer = c.consumer.clone();
        let Ok(list) = topic::tpl(&c.topic, &held, Offset::Invalid) else {
            return;
        };
        let committed = tokio::task::spawn_blocking(move || {
            consumer.committed_offsets(list, Duration::from_secs(5))
        })
        .await;
        let Ok(Ok(committed)) = committed else {
            c.consumer.context().note_brokers_lost(); // not back yet: next look
            return;
        };
        let mut at = TopicPartitionList::new();
        for e in committed.elements() {
            let offset = match e.offset() {
                Offset::Offset(n) => Offset::Offset(n),
                _ => Offset::Beginning,
            };
            let _ = at.add_partition_offset(&c.topic, e.partition(), offset);
        }
        // The fetch thread may have unassigned them already (see `feed::stop_fetching`).
        let moved = c
            .consumer
            .assignment()
            .and_then(|now| match now.count() {
                0 => Ok(()),
                _ => c.consumer.incremental_unassign(&now),
            })
            .and_then(|()| c.consumer.incremental_assign(&at));
        match moved {
            Ok(()) => tracing::warn!(
                partitions = ?held,
                "the brokers were unreachable: fetching again from their committed offsets"
            ),
            Err(e) => {
                tracing::warn!(error = %e, "re-assigning after a broker outage failed");
                c.consumer.context().note_brokers_lost();
            }
        }
    }

    /// The live members' keys, sorted.
    async fn members(&mut self) -> Result<Vec<i32>, sqlx::Error> {
        locks::holders(&mut self.conn, self.members_ns).await
    }

    /// Where fetching of `partition` starts: the position stored in Postgres.
    async fn stored(&mut self, c: &Claimer, partition: i32) -> Result<Offset, sqlx::Error> {
        let key = offsets::Key {
            group_id: &c.group_id,
            topic: &c.topic,
            partition,
        };
        let Some(next) = offsets::stored(&mut self.conn, key).await? else {
            return Ok(Offset::Beginning);
        };
        let high = topic::high_watermark(&c.consumer, &c.topic, partition).await;
        Ok(start_at(next, high))
    }

    /// Stops fetching everything held; the locks go with the session when it is dropped.
    fn let_go_all(&mut self, c: &Claimer) {
        let held: Vec<i32> = std::mem::take(&mut self.held).into_iter().collect();
        if held.is_empty() {
            return;
        }
        match topic::tpl(&c.topic, &held, Offset::Invalid) {
            Ok(list) => {
                if let Err(e) = c.consumer.incremental_unassign(&list) {
                    tracing::warn!(error = %e, "unassigning the held partitions failed");
                }
            }
            Err(e) => tracing::warn!(error = %e, "unassigning the held partitions failed"),
        }
    }
}

/// Records fetched again before the stored position when a partition is taken: the first
/// batch then holds records the sink wrote, for the writer to compare with what it stored.
pub const LOOK_BACK: i64 = 16;

/// Where fetching a partition starts, its stored position being `next` and its log's end
/// `high` (`None`: the brokers did not say).
///
/// A few records before `next` ([`LOOK_BACK`]): a topic deleted and created again, or a broker
/// without durable storage restarted, may have been refilled past `next` while nobody fetched
/// it; only records below `next` can tell that log from the one the position was stored on
/// ([`crate::positions::stale`]), so the first batch must hold some. (A broker that answers a
/// fetch from the next whole record batch needs more than one.) They are skipped as written.
///
/// A position past the log's end was left by an earlier incarnation of the topic; not every
/// broker answers such a fetch with "out of range", so fetching starts from the beginning and
/// the writer finds the position stale. When the end is not known — brokers just restarted,
/// the topic perhaps recreated and refilling — the beginning too.
fn start_at(next: i64, high: Option<i64>) -> Offset {
    match high {
        Some(high) if next <= high && next > LOOK_BACK => Offset::Offset(next - LOOK_BACK),
        _ => Offset::Beginning,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fetching_starts_before_the_stored_position_only_within_a_log_known_to_reach_it() {
        assert_eq!(start_at(76, Some(100)), Offset::Offset(76 - LOOK_BACK));
        assert_eq!(start_at(76, Some(76)), Offset::Offset(76 - LOOK_BACK));
        assert_eq!(start_at(LOOK_BACK, Some(76)), Offset::Beginning);
        assert_eq!(start_at(76, Some(30)), Offset::Beginning);
        // The brokers did not answer (the restarted one of `broker_faults`): not past records
        // never seen.
        assert_eq!(start_at(76, None), Offset::Beginning);
    }
}
