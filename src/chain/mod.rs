//! Tamper evidence: a hash chain per object, and [`verify`].
//!
//! Every entry stores a hash computed in two levels:
//!
//! ```text
//! digest = hex(SHA-256(canonical content))
//! hash   = hex(SHA-256(digest + "\n" + prev_hash))      (prev_hash "" when NULL)
//! ```
//!
//! `hex` is lowercase hexadecimal (64 characters); the canonical content is a JSON array of the
//! entry's fields (entity type, object id, action, actor, `created_at` as RFC 3339 UTC with
//! microseconds, changes, tool, message, status, data), with object keys sorted at every depth;
//! `prev_hash` is the hash of the previous entry about the same object (same entity type and
//! object id). Editing an entry breaks its hash; deleting, inserting or reordering entries breaks
//! the link of the entry after them. [`verify`] walks every chain and reports each break.
//!
//! **Why two levels.** The second level only hashes ASCII text (two hex digests and a
//! newline), so a database can compute it without knowing the canonicalization: on PostgreSQL
//! an update, delete or event that continues a chain is written by one `INSERT ... SELECT` that
//! reads the chain head and computes the hash with `sha256()` in SQL from the digest
//! computed here, instead of reading the head with a statement of its own first (see
//! `store::reads_head_in_insert` for why that is exact under concurrency). Everything else
//! (SQLite, MySQL, bulk writes, `verify`) computes the same two levels in Rust, through
//! `entry_hash`.
//!
//! **Why one chain per object.** A single global chain would make every audited write in the
//! application wait for every other one (each append must read the previous hash), and on
//! backends without row locks it would fork under concurrent writers. Writers of one object
//! are already serialized: inside a transaction the capture hooks lock the row (`FOR UPDATE` on
//! PostgreSQL and MySQL; SQLite admits one writer at a time) before the chain head is read. So
//! per-object chains are exact under concurrency and cost no statement of their own: the head
//! of an updated or deleted object is read by the log INSERT (PostgreSQL) or with the
//! before-image (SQLite, and MySQL in a locking subquery; see `capture`). A create reads
//! nothing: it starts a new segment of its object's chain (`prev_hash` NULL, valid only as the
//! object's first entry or right after its delete).
//!
//! **Limits.** Hashes are not keyed: someone who can rewrite the table and recompute every later
//! hash of a chain can forge it; copy hashes elsewhere (a SIEM, see listeners) to anchor them.
//! Deleting the newest entries of a chain leaves no trace in the chain itself. Writes outside a
//! transaction are not serialized: two concurrent writers of one object can fork its chain,
//! which `verify` reports as a [`ProblemKind::Fork`], distinct from tampering. Events lock no
//! row: concurrent events about one object can fork its chain on PostgreSQL even inside
//! transactions; on MySQL their head read locks the head entry and the object's row of
//! [`crate::audit_chain_head`] by their keys, which serializes them inside transactions (see
//! `tests/concurrency.rs`).

mod hash;
mod head;
mod verify;

pub(crate) use hash::{
    Content, POSTGRES_LINK_HASH, UNSEALED, content_digest, entry_hash, link_prefix,
    truncate_to_micros,
};
pub(crate) use head::{
    head, head_sql, head_subquery, heads, mysql_current_head, mysql_head, mysql_head_id_subquery,
};
pub use verify::{Problem, ProblemKind, Report, verify, verify_object};
