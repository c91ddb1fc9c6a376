//! Row messages onto the broker: the producer with its bound on bytes in flight
//! ([`producer`]), keyless rows gathered into packs ([`packer`]), the partition of each row, the
//! same on every attempt ([`route`]), and the checkpoint of what the broker acknowledged, which
//! a retry resumes from ([`checkpoint`]).

pub(crate) mod checkpoint;
pub(crate) mod packer;
pub(crate) mod producer;
pub(crate) mod route;
