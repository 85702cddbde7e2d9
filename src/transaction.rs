//! Audited writes in their own transaction, for callers that do not have one.

use sea_orm::{
    ActiveModelBehavior, ActiveModelTrait, DbErr, DeleteResult, EntityTrait, IntoActiveModel,
    TransactionTrait,
};

use crate::auditable::Auditable;
use crate::sql::finish;

type ModelOf<A> = <<A as ActiveModelTrait>::Entity as EntityTrait>::Model;

/// Runs each audited write in a transaction of its own, so the write and its log row commit
/// together or not at all. Inside an existing transaction, call the plain SeaORM methods with
/// the transaction: the log row joins it.
///
/// ```
/// # use sea_orm::DbErr;
/// # async fn demo<A>(db: &sea_orm::DatabaseConnection, post: A) -> Result<(), DbErr>
/// # where A: sea_orm::ActiveModelBehavior + Send + 'static,
/// #   <A::Entity as sea_orm::EntityTrait>::Model: sea_orm_audit::Auditable + sea_orm::IntoActiveModel<A>,
/// # {
/// use sea_orm_audit::AtomicExt;
/// let saved = post.insert_atomic(db).await?;
/// # Ok(()) }
/// ```
#[async_trait::async_trait]
pub trait AtomicExt: ActiveModelBehavior + Send + 'static
where
    ModelOf<Self>: Auditable + IntoActiveModel<Self>,
{
    /// `insert` and its log row in one transaction.
    async fn insert_atomic<D>(self, db: &D) -> Result<ModelOf<Self>, DbErr>
    where
        D: TransactionTrait + Send,
    {
        let txn = db.begin().await?;
        let result = self.insert(&txn).await;
        finish(txn, result).await
    }

    /// `update` and its log row in one transaction.
    async fn update_atomic<D>(self, db: &D) -> Result<ModelOf<Self>, DbErr>
    where
        D: TransactionTrait + Send,
    {
        let txn = db.begin().await?;
        let result = self.update(&txn).await;
        finish(txn, result).await
    }

    /// `save` and its log row in one transaction.
    async fn save_atomic<D>(self, db: &D) -> Result<Self, DbErr>
    where
        D: TransactionTrait + Send,
    {
        let txn = db.begin().await?;
        let result = self.save(&txn).await;
        finish(txn, result).await
    }

    /// `delete` and its log row in one transaction.
    async fn delete_atomic<D>(self, db: &D) -> Result<DeleteResult, DbErr>
    where
        D: TransactionTrait + Send,
    {
        let txn = db.begin().await?;
        let result = self.delete(&txn).await;
        finish(txn, result).await
    }
}

impl<A> AtomicExt for A
where
    A: ActiveModelBehavior + Send + 'static,
    ModelOf<A>: Auditable + IntoActiveModel<A>,
{
}
