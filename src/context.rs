//! Who is acting: a task-scoped context that every log row written inside it carries.

use std::future::Future;

use serde_json::{Map, Value as Json};

tokio::task_local! {
    static CURRENT: AuditContext;
}

/// The actor (and optional tool and extra data) that log rows written inside a scope carry.
///
/// Scopes are task-local: they follow a future across `.await`s and thread hops on a
/// multi-threaded runtime, but not into `tokio::spawn`ed tasks. Carry them explicitly:
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use sea_orm_audit::AuditContext;
///
/// AuditContext::new().actor("alice").tool("billing").scope(async {
///     // Hooks called here record actor "alice", tool "billing".
///     let inherited = AuditContext::current().unwrap_or_default();
///     tokio::spawn(inherited.scope(async {
///         assert_eq!(AuditContext::current_actor().as_deref(), Some("alice"));
///     }))
///     .await
///     .unwrap();
/// })
/// .await;
/// assert_eq!(AuditContext::current_actor(), None);
/// # }
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct AuditContext {
    /// Who is acting (a user id, a service name); `None` writes a NULL actor.
    pub actor: Option<String>,
    /// A category for the work being done (a feature, a job name).
    pub tool: Option<String>,
    /// Extra JSON data merged into every row's `data` column (request id, client IP...).
    pub data: Map<String, Json>,
}

impl AuditContext {
    /// An empty context: no actor, no tool, no data.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the actor.
    #[must_use]
    pub fn actor(mut self, actor: impl Into<String>) -> Self {
        self.actor = Some(actor.into());
        self
    }

    /// Sets the tool.
    #[must_use]
    pub fn tool(mut self, tool: impl Into<String>) -> Self {
        self.tool = Some(tool.into());
        self
    }

    /// Adds one key to the extra data.
    #[must_use]
    pub fn with(mut self, key: impl Into<String>, value: impl Into<Json>) -> Self {
        self.data.insert(key.into(), value.into());
        self
    }

    /// Runs `fut` with this context as the current one. Scopes nest: the innermost wins.
    pub async fn scope<F: Future>(self, fut: F) -> F::Output {
        CURRENT.scope(self, fut).await
    }

    /// Runs a synchronous closure with this context as the current one (for blocking jobs
    /// that call `Handle::block_on`).
    pub fn sync_scope<R>(self, f: impl FnOnce() -> R) -> R {
        CURRENT.sync_scope(self, f)
    }

    /// A copy of the current context, if the caller runs inside a scope.
    pub fn current() -> Option<AuditContext> {
        CURRENT.try_with(Clone::clone).ok()
    }

    /// Whether the current context fits the log (see `limits`): its actor and tool, and its
    /// data without a NUL character, refused on every backend so that an application behaves
    /// the same on each (PostgreSQL cannot store one, and found out only when the entry was
    /// written). Checked before every audited write, in either capture mode.
    pub(crate) fn check_current() -> crate::Result<()> {
        CURRENT
            .try_with(|c| {
                for (field, value) in [("actor", &c.actor), ("tool", &c.tool)] {
                    if let Some(value) = value {
                        crate::limits::check_key(field, value)?;
                    }
                }
                if c.data.keys().any(|k| k.contains('\0')) {
                    return Err(crate::Error::Nul { field: "data" });
                }
                c.data
                    .values()
                    .try_for_each(|v| crate::limits::refuse_nul("data", v))
            })
            .unwrap_or(Ok(()))
    }

    /// The current actor, if any.
    pub fn current_actor() -> Option<String> {
        CURRENT.try_with(|c| c.actor.clone()).ok().flatten()
    }

    /// Spawns `fut` on the tokio runtime with a copy of the current context (if any).
    pub fn spawn<F>(fut: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let ctx = Self::current().unwrap_or_default();
        tokio::spawn(ctx.scope(fut))
    }
}
