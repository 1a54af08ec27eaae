//! How the database clients' errors are sorted and shown. Apart from the backends so that
//! [`StoreError`](crate::StoreError), which wraps both clients' errors, can describe them
//! without depending on either backend: this module depends on no other of the crate.

use postgres::error::SqlState;

/// [`StoreError::kind`](crate::StoreError::kind) of a SQLite error.
pub(crate) fn sqlite_kind(e: &rusqlite::Error) -> &'static str {
    match e {
        rusqlite::Error::SqliteFailure(e, _) => match e.code {
            rusqlite::ErrorCode::DiskFull => "full",
            rusqlite::ErrorCode::ReadOnly => "read_only",
            rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked => "locked",
            rusqlite::ErrorCode::SystemIoFailure => "io",
            _ => "other",
        },
        _ => "other",
    }
}

/// The SQLSTATE code and the server's message (never its detail, which may quote the
/// values of a row), or the client's own description and cause.
pub(crate) fn postgres_describe(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} {}", db.code().code(), db.message()),
        None => match std::error::Error::source(e) {
            Some(cause) => format!("{e}: {cause}"),
            None => e.to_string(),
        },
    }
}

/// [`StoreError::kind`](crate::StoreError::kind) of a PostgreSQL error.
pub(crate) fn postgres_kind(e: &postgres::Error) -> &'static str {
    if let Some(code) = e.code() {
        let class = code.code().get(..2).unwrap_or_default();
        return match code {
            c if *c == SqlState::DISK_FULL => "full",
            c if *c == SqlState::READ_ONLY_SQL_TRANSACTION => "read_only",
            c if *c == SqlState::LOCK_NOT_AVAILABLE || *c == SqlState::T_R_DEADLOCK_DETECTED => {
                "locked"
            }
            // Shutting down, starting up, or the session was terminated.
            c if *c == SqlState::ADMIN_SHUTDOWN
                || *c == SqlState::CRASH_SHUTDOWN
                || *c == SqlState::CANNOT_CONNECT_NOW =>
            {
                "unavailable"
            }
            _ if class == "08" => "unavailable",
            _ if class == "58" => "io",
            _ => "other",
        };
    }
    match std::error::Error::source(e).and_then(|c| c.downcast_ref::<std::io::Error>()) {
        // What TLS reports through I/O: a certificate or protocol the operator must fix,
        // not a server that is away.
        Some(io) if io.kind() == std::io::ErrorKind::InvalidData => "other",
        Some(_) => "unavailable",
        None if e.is_closed() => "unavailable",
        None => "other",
    }
}
