//! What a handler says about its request's activity entry.

use axum::response::{IntoResponseParts, ResponseParts};

use crate::Action;
use crate::auditable::Auditable;

/// What a handler says about its request's activity entry: a message (the remarks of the
/// entry) and the object it concerns. Return it as a response part:
///
/// ```
/// use axum::Json;
/// use sea_orm_audit::web::ActivityNote;
///
/// async fn publish() -> (ActivityNote, Json<&'static str>) {
///     (ActivityNote::message("published post 7").target_id("post", "7"), Json("ok"))
/// }
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct ActivityNote {
    /// The entry's message (default: `METHOD path → status`).
    pub message: Option<String>,
    /// `(entity type, object id)` the request concerns, stored as `data.target`.
    pub target: Option<(String, String)>,
    /// The actor to record when the request had none (a login endpoint knows who just
    /// logged in).
    pub actor: Option<String>,
    /// Keep only the size of the response body (a download; the history API's own answers,
    /// which would copy the log into itself).
    pub omit_response_body: bool,
    /// The action to record, overriding the route's and the method's (`Action::Login` from
    /// a login handler that tells success from failure).
    pub action: Option<Action>,
}

impl ActivityNote {
    /// A note with a message.
    pub fn message(message: impl Into<String>) -> Self {
        ActivityNote {
            message: Some(message.into()),
            ..Self::default()
        }
    }

    /// Records the response body's size only.
    #[must_use]
    pub fn omit_response_body(mut self) -> Self {
        self.omit_response_body = true;
        self
    }

    /// The action to record (default: the one set for the route, else the method's).
    #[must_use]
    pub fn action(mut self, action: impl Into<Action>) -> Self {
        self.action = Some(action.into());
        self
    }

    /// The actor to record if the request had none.
    #[must_use]
    pub fn actor(mut self, actor: impl Into<String>) -> Self {
        self.actor = Some(actor.into());
        self
    }

    /// The model the request concerns.
    #[must_use]
    pub fn target<M: Auditable>(self, model: &M) -> Self {
        self.target_id(M::entity_type(), model.audit_object_id())
    }

    /// The object the request concerns, by entity type and canonical id.
    #[must_use]
    pub fn target_id(
        mut self,
        entity_type: impl Into<String>,
        object_id: impl Into<String>,
    ) -> Self {
        self.target = Some((entity_type.into(), object_id.into()));
        self
    }
}

impl IntoResponseParts for ActivityNote {
    type Error = std::convert::Infallible;

    fn into_response_parts(self, mut res: ResponseParts) -> Result<ResponseParts, Self::Error> {
        res.extensions_mut().insert(self);
        Ok(res)
    }
}
