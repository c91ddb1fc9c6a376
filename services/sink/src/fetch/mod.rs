//! Records from the broker: the fetch loop on a thread of its own ([`feed`]), each message kept
//! as a [`record::Record`] with its typed csvbus headers, the partition count ([`topic`]) and
//! the consumer lag against the positions in Postgres ([`lag`]).

pub(crate) mod feed;
pub(crate) mod lag;
pub(crate) mod record;
pub(crate) mod topic;
