//! Who is making a request: [`Actor`] and the pluggable [`ResolveActor`].

use std::future::Future;

use http::request::Parts;
use serde_json::{Map, Value as Json};

/// The authenticated caller of a request.
///
/// `id` becomes the actor of every entry written while the request is handled; `claims` are
/// extra facts about the caller (tenant, roles, token id) that [`Permission`](super::Permission)
/// checks can use and that [`AuditLayer::copy_claims`](super::AuditLayer::copy_claims) copies
/// into each entry's data.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Actor {
    /// The actor recorded in `audit_log.actor` (a user id, a service name).
    pub id: String,
    /// Extra claims, e.g. from a verified token's payload.
    pub claims: Map<String, Json>,
}

impl Actor {
    /// An actor without claims.
    pub fn new(id: impl Into<String>) -> Self {
        Actor {
            id: id.into(),
            claims: Map::new(),
        }
    }

    /// Adds a claim.
    #[must_use]
    pub fn claim(mut self, key: impl Into<String>, value: impl Into<Json>) -> Self {
        self.claims.insert(key.into(), value.into());
        self
    }
}

/// Finds the actor of a request: from an extension your auth layer set, a verified token's
/// claims, a session.
///
/// Any `Fn(&Parts) -> Option<Actor>` closure is a resolver. Implement the trait yourself when
/// finding the actor needs to `.await` (a session store):
///
/// ```
/// use sea_orm_audit::web::{Actor, ResolveActor};
///
/// struct Sessions; // your session store
/// impl ResolveActor for Sessions {
///     async fn resolve(&self, parts: &http::request::Parts) -> Option<Actor> {
///         let cookie = parts.headers.get("cookie")?.to_str().ok()?;
///         // look the session up, asynchronously...
///         cookie.strip_prefix("session=").map(Actor::new)
///     }
/// }
/// ```
///
/// Resolvers must only trust what your own auth layer verified: an unverified token's claims
/// would let any caller write any actor into the log.
pub trait ResolveActor: Send + Sync + 'static {
    /// The actor, or `None` for an anonymous request.
    fn resolve(&self, parts: &Parts) -> impl Future<Output = Option<Actor>> + Send;
}

impl<F> ResolveActor for F
where
    F: Fn(&Parts) -> Option<Actor> + Send + Sync + 'static,
{
    fn resolve(&self, parts: &Parts) -> impl Future<Output = Option<Actor>> + Send {
        std::future::ready(self(parts))
    }
}

/// A resolver that maps an extension of type `T`, set by your authentication layer (which must
/// run before the audit layer), to the actor.
///
/// ```
/// use sea_orm_audit::web::{Actor, AuditLayer, from_extension};
///
/// #[derive(Clone)]
/// struct CurrentUser { id: i64, tenant: String }
///
/// let layer = AuditLayer::new(from_extension(|user: &CurrentUser| {
///     Some(Actor::new(user.id.to_string()).claim("tenant", user.tenant.clone()))
/// }));
/// # let _ = layer;
/// ```
pub fn from_extension<T, F>(f: F) -> impl ResolveActor
where
    T: Send + Sync + 'static,
    F: Fn(&T) -> Option<Actor> + Send + Sync + 'static,
{
    move |parts: &Parts| parts.extensions.get::<T>().and_then(&f)
}
