//! The CSV → message path on its own, for the fuzz target and its corpus test: the record
//! reader ([`Records`]) and the header check that yields each record's message value
//! ([`check_header`], [`ValueOptions`]).

pub use crate::read::parse::{Dialect, Records};
pub use crate::rows::{check_header, ValueOptions};
pub use csvbus_shared::read_as::Delimiter;
