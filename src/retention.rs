//! Retention: prune old entries in bounded batches without breaking verification.

use chrono::{DateTime, Utc};
use std::collections::BTreeMap;

use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityName, EntityTrait, IdenStatic, QueryFilter,
    QueryOrder, QuerySelect, Statement, TransactionTrait, Value,
};
use serde_json::Value as Json;

use crate::Action;
use crate::audit_log;
use crate::error::Error;
use crate::prune_marker::{self, PRUNE_ACTION, PRUNE_ENTITY, PrunedChain};
use crate::sql::{Placeholders, finish, quote};
use crate::store::{self, NewEntry};

/// What to prune. At least one of [`older_than`](Self::older_than) and
/// [`keep_latest`](Self::keep_latest) is required.
///
/// Pruning removes only the *oldest* entries of each object's history (a prefix of its hash
/// chain), so [`crate::verify`] still passes for what remains: `older_than` removes the entries
/// older than the oldest entry written at or after the cutoff (by id, so a clock that stepped
/// back never punches a hole in a chain), and `keep_latest(n)` keeps the newest `n` entries of
/// each object. Both together remove only what both allow.
///
/// ```
/// # use sea_orm_audit::Retention;
/// # async fn demo(db: &sea_orm::DatabaseConnection) -> Result<(), sea_orm::DbErr> {
/// let cutoff = chrono::Utc::now() - chrono::Duration::days(365);
/// let report = sea_orm_audit::prune(db, &Retention::new().older_than(cutoff).entity_type("post")).await?;
/// println!("removed {} entries in {} batches", report.removed, report.batches);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq)]
#[must_use]
pub struct Retention {
    older_than: Option<DateTime<Utc>>,
    entity_type: Option<String>,
    keep_latest: Option<u64>,
    batch_size: u64,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            older_than: None,
            entity_type: None,
            keep_latest: None,
            batch_size: 1000,
        }
    }
}

impl Retention {
    /// A policy that prunes nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Prune entries written before `cutoff`.
    pub fn older_than(mut self, cutoff: DateTime<Utc>) -> Self {
        self.older_than = Some(cutoff);
        self
    }

    /// Only this entity type.
    pub fn entity_type(mut self, entity_type: impl Into<String>) -> Self {
        self.entity_type = Some(entity_type.into());
        self
    }

    /// Keep the newest `n` entries of every object.
    pub fn keep_latest(mut self, n: u64) -> Self {
        self.keep_latest = Some(n);
        self
    }

    /// Entries deleted per statement (default 1,000; at least 1).
    pub fn batch_size(mut self, n: u64) -> Self {
        self.batch_size = n.max(1);
        self
    }
}

/// What [`prune`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PruneReport {
    /// Entries removed.
    pub removed: u64,
    /// DELETE statements issued.
    pub batches: u64,
}

/// Removes entries as `policy` says, `batch_size` at a time. Each batch is one transaction (so
/// on a plain connection no lock is held across batches) that deletes the entries and records
/// a `prune` entry (entity type `audit_log`) saying exactly what it removed: per chain, the
/// id and hash of the newest entry removed. [`crate::verify`] accepts a chain whose oldest
/// remaining entry links to exactly that hash, and nothing else. Prune markers are never
/// pruned.
pub async fn prune<C>(db: &C, policy: &Retention) -> Result<PruneReport, Error>
where
    C: ConnectionTrait + TransactionTrait,
{
    if policy.older_than.is_none() && policy.keep_latest.is_none() {
        return Err(Error::EmptyRetentionPolicy);
    }
    let boundary = match policy.older_than {
        Some(cutoff) => boundary(db, cutoff).await?,
        None => None,
    };
    let mut report = PruneReport::default();
    loop {
        let ids = match policy.keep_latest {
            None => prefix_batch(db, policy, boundary).await?,
            Some(keep) => ranked_batch(db, policy, boundary, keep).await?,
        };
        if ids.is_empty() {
            break;
        }
        let n = ids.len() as u64;
        // Per chain, the newest entry this batch removes: the entry the chain's oldest
        // remaining entry links to, which the marker records (see `chain::pruned_chains`).
        let removed: Vec<(String, String, i64, Option<String>)> = audit_log::Entity::find()
            .select_only()
            .columns([
                audit_log::Column::EntityType,
                audit_log::Column::ObjectId,
                audit_log::Column::Id,
                audit_log::Column::Hash,
            ])
            .filter(audit_log::Column::Id.is_in(ids.clone()))
            .order_by_asc(audit_log::Column::Id)
            .into_tuple()
            .all(db)
            .await?;
        let mut last: BTreeMap<(String, String), (i64, Option<String>)> = BTreeMap::new();
        for (entity_type, object_id, id, hash) in removed {
            last.insert((entity_type, object_id), (id, hash));
        }
        // A removed entry without a hash (written before chains existed) links nothing.
        let chains = prune_marker::encode(last.into_iter().filter_map(
            |((entity_type, object_id), (id, hash))| {
                Some(PrunedChain {
                    entity_type,
                    object_id,
                    id,
                    hash: hash?,
                })
            },
        ));
        // The DELETE and the marker saying what it removed commit together: a removal with
        // no marker would be what verify reports as tampering.
        let txn = db.begin().await?;
        let result = async {
            audit_log::Entity::delete_many()
                .filter(audit_log::Column::Id.is_in(ids))
                .exec(&txn)
                .await?;
            let mut marker = prune_marker(policy);
            marker.data.insert("removed".into(), Json::from(n));
            marker.data.insert(prune_marker::CHAINS.into(), chains);
            store::write(&txn, marker).await
        }
        .await;
        finish(txn, result).await?;
        report.removed += n;
        report.batches += 1;
    }
    Ok(report)
}

/// A marker row describing one pruning batch; the caller adds `removed` and `chains`.
fn prune_marker(policy: &Retention) -> NewEntry {
    {
        let mut marker = NewEntry::new(
            PRUNE_ENTITY,
            PRUNE_ACTION.to_owned(),
            Action::Custom(PRUNE_ACTION.into()),
        );
        marker.data.insert(
            "entity_type".into(),
            policy.entity_type.clone().map_or(Json::Null, Json::String),
        );
        marker.data.insert(
            "older_than".into(),
            policy
                .older_than
                .map_or(Json::Null, |c| Json::String(c.to_rfc3339())),
        );
        marker.data.insert(
            "keep_latest".into(),
            policy.keep_latest.map_or(Json::Null, Json::from),
        );
        marker
    }
}

/// The oldest id written at or after `cutoff`; everything below it is older. `None`: no entry
/// is that recent, so every entry is older.
async fn boundary<C: ConnectionTrait>(db: &C, cutoff: DateTime<Utc>) -> Result<Option<i64>, DbErr> {
    let cutoff = crate::sql::time_value(db.get_database_backend(), cutoff);
    let first: Option<Option<i64>> = audit_log::Entity::find()
        .select_only()
        .column_as(audit_log::Column::Id.min(), "id")
        .filter(audit_log::Column::CreatedAt.gte(cutoff))
        .into_tuple()
        .one(db)
        .await?;
    Ok(first.flatten())
}

async fn prefix_batch<C: ConnectionTrait>(
    db: &C,
    policy: &Retention,
    boundary: Option<i64>,
) -> Result<Vec<i64>, DbErr> {
    let mut query = audit_log::Entity::find()
        .select_only()
        .column(audit_log::Column::Id)
        .filter(audit_log::Column::EntityType.ne(PRUNE_ENTITY))
        .order_by_asc(audit_log::Column::Id)
        .limit(policy.batch_size);
    if let Some(b) = boundary {
        query = query.filter(audit_log::Column::Id.lt(b));
    }
    if let Some(t) = &policy.entity_type {
        query = query.filter(audit_log::Column::EntityType.eq(t.as_str()));
    }
    query.into_tuple().all(db).await
}

/// A batch of entries ranked below the newest `keep` of their object (window function; one
/// pass over the candidate entries per batch).
async fn ranked_batch<C: ConnectionTrait>(
    db: &C,
    policy: &Retention,
    boundary: Option<i64>,
    keep: u64,
) -> Result<Vec<i64>, DbErr> {
    let backend = db.get_database_backend();
    let mut values: Vec<Value> = vec![PRUNE_ENTITY.into()];
    use audit_log::Column as Col;
    let q = |name: &str| quote(backend, name);
    let (id, entity_type, object_id) = (
        q(Col::Id.as_str()),
        q(Col::EntityType.as_str()),
        q(Col::ObjectId.as_str()),
    );
    let mut filter = format!("{entity_type} <> {{p}}");
    if let Some(t) = &policy.entity_type {
        filter.push_str(&format!(" AND {entity_type} = {{p}}"));
        values.push(t.clone().into());
    }
    let mut outer = String::from("rn > {p}");
    values.push(i64::try_from(keep).unwrap_or(i64::MAX).into());
    if let Some(b) = boundary {
        outer.push_str(&format!(" AND {id} < {{p}}"));
        values.push(b.into());
    }
    values.push(i64::try_from(policy.batch_size).unwrap_or(i64::MAX).into());
    let template = format!(
        "SELECT {id} FROM (SELECT {id}, ROW_NUMBER() OVER (PARTITION BY {entity_type}, \
         {object_id} ORDER BY {id} DESC) AS rn FROM {table} WHERE {filter}) ranked WHERE \
         {outer} ORDER BY {id} LIMIT {{p}}",
        table = q(audit_log::Entity.table_name()),
    );
    let sql = Placeholders::new(backend).fill(&template);
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(backend, sql, values))
        .await?;
    rows.iter().map(|r| r.try_get::<i64>("", "id")).collect()
}
