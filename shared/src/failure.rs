//! One failure policy for every database write: what an error from Postgres means.
//!
//! - [`Failure::Outage`]: the database is down, restarting, overloaded, or a transaction lost a
//!   race. Wait and retry, with a capped backoff, for as long as it takes; never reject a row
//!   for it.
//! - [`Failure::Rows`]: the values of some rows are refused (bad data, constraints, triggers,
//!   index limits, row-level security, a statement timeout caused by a row). Bisect down to the
//!   rows and reject them with Postgres' message; the rest is written.
//! - [`Failure::Group`]: no row of the group can be written (the table or a column is gone):
//!   reject them all without bisecting.
//! - [`Failure::NotByCopy`]: the statement cannot write this table at all (0A000, e.g. COPY
//!   into a table with forced row-level security): a COPY is redone as `INSERT … SELECT`;
//!   for any other statement it means [`Failure::Group`].
//! - [`Failure::Unknown`]: none of the above. Retried a bounded number of times, then treated as
//!   [`Failure::Rows`], so no input can hold a partition forever.

/// What an error means for the rows being written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    Outage,
    Rows,
    Group,
    NotByCopy,
    Unknown,
}

/// Classifies an error of a write.
pub fn classify(e: &sqlx::Error) -> Failure {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => Failure::Outage,
        sqlx::Error::Database(db) => db.code().map_or(Failure::Unknown, |c| classify_code(&c)),
        _ => Failure::Unknown,
    }
}

/// Classifies a SQLSTATE.
pub fn classify_code(code: &str) -> Failure {
    let class = code.get(..2).unwrap_or("");
    match (class, code) {
        // Connection exception; insufficient resources; admin/crash shutdown, cannot connect
        // now; serialization failure, deadlock; lock not available; system (I/O) error.
        ("08" | "53" | "58", _) | (_, "57P01" | "57P02" | "57P03" | "57P04" | "57P05") => {
            Failure::Outage
        }
        ("40", "40001" | "40P01") | (_, "55P03") => Failure::Outage,
        // The target or a column is gone: nothing of the group can be written.
        (_, "42P01" | "42703" | "3F000") => Failure::Group,
        // Feature not supported: e.g. COPY into a table with forced row-level security.
        (_, "0A000") => Failure::NotByCopy,
        // Data exception; integrity constraint; program limit (index row too big, too many
        // columns); PL/pgSQL raise; insufficient privilege / row-level security; statement
        // timeout; errors raised by routines and triggers; other syntax-or-access errors
        // caused by what the table does with the values.
        ("22" | "23" | "54" | "P0" | "42" | "2F" | "38" | "39" | "27", _) | (_, "57014") => {
            Failure::Rows
        }
        _ => Failure::Unknown,
    }
}

/// Postgres' message with its SQLSTATE, for a rejected row.
pub fn describe(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(d) => {
            format!(
                "{} (SQLSTATE {})",
                d.message(),
                d.code().unwrap_or_default()
            )
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_class_of_sqlstate_has_its_meaning() {
        for (code, want) in [
            ("08006", Failure::Outage),
            ("53300", Failure::Outage),
            ("57P01", Failure::Outage),
            ("57P03", Failure::Outage),
            ("40001", Failure::Outage),
            ("40P01", Failure::Outage),
            ("55P03", Failure::Outage),
            ("58030", Failure::Outage),
            ("22021", Failure::Rows),
            ("22P05", Failure::Rows),
            ("23505", Failure::Rows),
            ("23503", Failure::Rows),
            ("23514", Failure::Rows),
            ("54000", Failure::Rows),
            ("P0001", Failure::Rows),
            ("42501", Failure::Rows),
            ("57014", Failure::Rows),
            ("27000", Failure::Rows),
            ("42P01", Failure::Group),
            ("42703", Failure::Group),
            ("3F000", Failure::Group),
            ("0A000", Failure::NotByCopy),
            ("XX000", Failure::Unknown),
            ("55000", Failure::Unknown),
            ("25P02", Failure::Unknown),
        ] {
            assert_eq!(classify_code(code), want, "{code}");
        }
    }

    #[test]
    fn connection_level_errors_are_outages() {
        assert_eq!(classify(&sqlx::Error::PoolTimedOut), Failure::Outage);
        let io = sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert_eq!(classify(&io), Failure::Outage);
        assert_eq!(classify(&sqlx::Error::RowNotFound), Failure::Unknown);
    }
}
