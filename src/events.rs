//! Events: what people did, beyond model writes (logins, exports, custom actions).

use std::net::IpAddr;

use sea_orm::{ConnectionTrait, DbErr};
use serde_json::{Map, Value as Json};

use crate::auditable::Auditable;
use crate::diff::Changes;
use crate::store::{self, NewEntry};
use crate::template::Template;
use crate::{Action, Status};

/// Entity type of authentication events; their object id is the identifier (user name, email).
pub const AUTH_ENTITY: &str = "auth";
/// Entity type of events recorded without a target; their object id is the actor (or empty).
pub const EVENT_ENTITY: &str = "event";

/// An event to record. Without an explicit actor, tool or data, those of the current
/// [`AuditContext`](crate::AuditContext) are used.
///
/// ```
/// # use sea_orm_audit::{Event, Template, Action};
/// # async fn demo(db: &sea_orm::DatabaseConnection) -> Result<(), sea_orm::DbErr> {
/// Event::new(Action::Custom("export".into()))
///     .tool("reports")
///     .template(Template::new("{user} exported {n} rows").value("user", "alice").value("n", 1200))
///     .data("format", "csv")
///     .record(db)
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct Event {
    action: Action,
    status: Status,
    actor: Option<String>,
    target: Option<(String, String)>,
    tool: Option<String>,
    message: Option<String>,
    template: Option<Template>,
    data: Map<String, Json>,
    changes: Option<Changes>,
}

impl Event {
    /// An event with this action (`Action::Login`, or `Action::Custom("export".into())`, or
    /// `"export".into()`).
    pub fn new(action: impl Into<Action>) -> Self {
        Event {
            action: action.into(),
            status: Status::Success,
            actor: None,
            target: None,
            tool: None,
            message: None,
            template: None,
            data: Map::new(),
            changes: None,
        }
    }

    /// Who did it (default: the context's actor).
    pub fn actor(mut self, actor: impl Into<String>) -> Self {
        self.actor = Some(actor.into());
        self
    }

    /// The object it concerns: the same generic relation as change logs, so it shows in
    /// `logs_for(model)`.
    pub fn target<M: Auditable>(self, model: &M) -> Self {
        self.target_id(M::entity_type(), model.audit_object_id())
    }

    /// The object it concerns, by entity type and canonical id.
    pub fn target_id(
        mut self,
        entity_type: impl Into<String>,
        object_id: impl Into<String>,
    ) -> Self {
        self.target = Some((entity_type.into(), object_id.into()));
        self
    }

    /// A category (feature, job) for filtering.
    pub fn tool(mut self, tool: impl Into<String>) -> Self {
        self.tool = Some(tool.into());
        self
    }

    /// A plain message.
    pub fn message(mut self, message: impl Into<String>) -> Self {
        self.message = Some(message.into());
        self.template = None;
        self
    }

    /// A templated message, rendered when the event is recorded.
    pub fn template(mut self, template: Template) -> Self {
        self.template = Some(template);
        self.message = None;
        self
    }

    /// One key of JSON data.
    pub fn data(mut self, key: impl Into<String>, value: impl Into<Json>) -> Self {
        self.data.insert(key.into(), value.into());
        self
    }

    /// Success (default) or failure.
    pub fn status(mut self, status: Status) -> Self {
        self.status = status;
        self
    }

    /// Marks the event as failed.
    pub fn failed(self) -> Self {
        self.status(Status::Failed)
    }

    /// A diff to store with it (for example from [`crate::diff`]).
    pub fn changes(mut self, changes: Changes) -> Self {
        self.changes = Some(changes);
        self
    }

    /// Writes the event on `db` (inside the caller's transaction, if `db` is one). A template
    /// with a placeholder that has no value is an error, and nothing is written.
    pub async fn record<C: ConnectionTrait>(self, db: &C) -> Result<(), DbErr> {
        let entry = self.into_entry()?;
        store::write(db, entry).await?;
        Ok(())
    }

    fn into_entry(self) -> Result<NewEntry, crate::Error> {
        let mut data = self.data;
        let message = match &self.template {
            Some(t) => {
                let rendered = t.render()?;
                let (text, values) = t.to_data();
                data.insert("template".into(), text);
                data.insert("values".into(), values);
                Some(rendered)
            }
            None => self.message,
        };
        let actor = self.actor.or_else(crate::AuditContext::current_actor);
        let (entity_type, object_id) = match self.target {
            Some(target) => target,
            None => (EVENT_ENTITY.to_owned(), actor.clone().unwrap_or_default()),
        };
        let mut entry = NewEntry::new(&entity_type, object_id, self.action);
        entry.actor = actor;
        entry.tool = self.tool;
        entry.message = message;
        entry.status = self.status;
        entry.data = data;
        entry.changes = self.changes.map(Changes::into_json);
        Ok(entry)
    }
}

/// Records a successful login of `actor`, with the client IP.
pub async fn login<C: ConnectionTrait>(
    db: &C,
    actor: &str,
    ip: Option<IpAddr>,
) -> Result<(), DbErr> {
    auth_event(Action::Login, actor, ip)
        .actor(actor)
        .record(db)
        .await
}

/// Records a logout of `actor`, with the client IP.
pub async fn logout<C: ConnectionTrait>(
    db: &C,
    actor: &str,
    ip: Option<IpAddr>,
) -> Result<(), DbErr> {
    auth_event(Action::Logout, actor, ip)
        .actor(actor)
        .record(db)
        .await
}

/// Records a failed login attempt for `identifier` (the user name or email tried; never pass
/// the password), with the client IP and an optional reason. The actor is NULL: nobody was
/// authenticated.
pub async fn login_failed<C: ConnectionTrait>(
    db: &C,
    identifier: &str,
    ip: Option<IpAddr>,
    reason: Option<&str>,
) -> Result<(), DbErr> {
    let mut event = auth_event(Action::LoginFailed, identifier, ip).failed();
    if let Some(reason) = reason {
        event = event.data("reason", reason);
    }
    event.record(db).await
}

fn auth_event(action: Action, identifier: &str, ip: Option<IpAddr>) -> Event {
    let mut event = Event::new(action)
        .target_id(AUTH_ENTITY, identifier)
        .data("identifier", identifier);
    if let Some(ip) = ip {
        event = event.data("ip", ip.to_string());
    }
    event
}
