//! Which replica writes which partition: the consumer group, or claims kept in Postgres with
//! advisory locks ([`claims`], [`locks`]); and the [`watchdog`] that rejoins the group when the
//! sink holds no partition while rows wait.

pub(crate) mod claims;
pub(crate) mod locks;
pub(crate) mod watchdog;
