//! The crate's one error type.

use sea_orm::DbErr;

/// Everything that can go wrong while recording or reading the audit log.
///
/// Converts into [`DbErr`], so `?` works inside `ActiveModelBehavior` hooks and a failing log
/// write fails the write it describes: a database error as the database's own `DbErr` (its
/// kind intact), anything else as `DbErr::Custom` prefixed `sea-orm-audit:`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The database rejected a statement issued by the audit layer.
    #[error("{context}: {source}")]
    Db {
        /// What the audit layer was doing.
        context: String,
        /// The database error.
        #[source]
        source: DbErr,
    },
    /// `after_save`/`after_delete` ran without the snapshot its `before_*` hook takes.
    #[error(
        "no before-snapshot for {action} of {entity_type} {object_id}: call \
         sea_orm_audit::before_save / before_delete in the matching hook"
    )]
    MissingSnapshot {
        /// `update` or `delete`.
        action: &'static str,
        /// The audited entity type.
        entity_type: String,
        /// The object's canonical id.
        object_id: String,
    },
    /// Another audited write of the same object is in flight in the same task (two writes
    /// joined with `tokio::join!`, say) and did not finish within
    /// [`IN_FLIGHT_WAIT`](crate::IN_FLIGHT_WAIT). Raised by the `before_*` hook, so
    /// this write did not run.
    #[error(
        "another audited write of {entity_type} {object_id} is in flight in this task; \
         run writes of one object one after the other"
    )]
    WriteInFlight {
        /// The audited entity type.
        entity_type: String,
        /// The object's canonical id.
        object_id: String,
    },
    /// An update or delete reached the audit hook without a complete primary key.
    #[error("{entity_type}: the primary key is not set, so the object cannot be audited")]
    MissingPrimaryKey {
        /// The audited entity type.
        entity_type: String,
    },
    /// A stored log row could not be decoded.
    #[error("audit_log row {id}: {reason}")]
    Corrupt {
        /// The row's id.
        id: i64,
        /// What is wrong with it.
        reason: String,
    },
    /// A field of a log row is longer than its column holds (see [`crate::MAX_KEY_CHARS`]).
    /// Checked before the audited write runs, so nothing was written.
    #[error("audit log field `{field}` is {chars} characters long; at most {max_chars} fit")]
    TooLong {
        /// `entity_type`, `object_id`, `actor` or `tool`.
        field: &'static str,
        /// The limit.
        max_chars: usize,
        /// The value's length.
        chars: usize,
    },
    /// A field of a log row holds a NUL character, which the database cannot store.
    #[error("audit log field `{field}` contains a NUL character, which the database cannot store")]
    Nul {
        /// The field.
        field: &'static str,
    },
    /// A value given to the audit API is not acceptable.
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// Which input.
        what: &'static str,
        /// Why it was rejected.
        reason: String,
    },
}

impl Error {
    pub(crate) fn db(context: impl Into<String>, source: DbErr) -> Self {
        Error::Db {
            context: context.into(),
            source,
        }
    }
}

impl From<Error> for DbErr {
    /// The database's own errors pass through unchanged, so a caller can still match their
    /// kind (`DbErr::Query`/`Exec` with the driver's error and code, `sql_err()`) to detect a
    /// deadlock, a lock timeout or a constraint violation and retry; what the audit layer was
    /// doing is reported through `tracing` (target `sea_orm_audit`, level `debug`). The crate's
    /// own conditions become `DbErr::Custom` with the message prefixed `sea-orm-audit:`.
    fn from(err: Error) -> Self {
        match err {
            Error::Db { context, source } => {
                tracing::debug!(target: "sea_orm_audit", %context, error = %source, "database error");
                source
            }
            other => DbErr::Custom(format!("sea-orm-audit: {other}")),
        }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
