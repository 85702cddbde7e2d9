//! The history HTTP API and the viewer page.

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::{FromRequestParts, OriginalUri, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use sea_orm::DatabaseConnection;
use serde_json::json;

use super::activity::ActivityNote;
use super::actor::Actor;
use super::layer::RequestContext;
use super::params::{self, BadParam, FILTERS, Parsed};

/// What a history request asks to see, for [`Permission`] checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Scope<'a> {
    /// The whole log (`GET /entries`).
    All,
    /// One object's history (`GET /{entity_type}/{object_id}/log`).
    Object {
        /// The entity type.
        entity_type: &'a str,
        /// The object id.
        object_id: &'a str,
    },
}

/// Who may read which history. "My history" (`GET /me`) needs no permission, only an actor.
///
/// Any `Fn(&Actor, &Scope) -> bool` closure is a permission; implement the trait when the check
/// needs to `.await` (roles in the database).
pub trait Permission: Send + Sync + 'static {
    /// Whether `actor` may read `scope`.
    fn allows(&self, actor: &Actor, scope: &Scope<'_>) -> impl Future<Output = bool> + Send;
}

impl<F> Permission for F
where
    F: Fn(&Actor, &Scope<'_>) -> bool + Send + Sync + 'static,
{
    fn allows(&self, actor: &Actor, scope: &Scope<'_>) -> impl Future<Output = bool> + Send {
        std::future::ready(self(actor, scope))
    }
}

/// The default [`Permission`]: nobody may read anything but their own history.
#[derive(Debug, Clone, Copy, Default)]
pub struct DenyAll;

impl Permission for DenyAll {
    fn allows(&self, _: &Actor, _: &Scope<'_>) -> impl Future<Output = bool> + Send {
        std::future::ready(false)
    }
}

/// The history API, as a router to nest where you like (`.nest("/audit", api.into_router())`):
///
/// | route | what | who |
/// |---|---|---|
/// | `GET /entries` | the whole log, filtered | [`Permission`] for [`Scope::All`] |
/// | `GET /me` | the caller's own entries | any actor |
/// | `GET /{entity_type}/{object_id}/log` | one object's history | [`Permission`] for [`Scope::Object`] |
/// | `GET /viewer` | an HTML page to browse all three | anyone (the page holds no data) |
///
/// Filters (query parameters): `entity_type`, `object_id`, `actor`, `tool`, `action`, `status`
/// (`success`/`failed`), `created_after`, `created_before` (RFC 3339), `limit` (clamped to
/// 1..=1000, default 50), `offset`, `cursor`. Lists answer
/// `{"count": total, "results": [entries, newest first], "next": "URL of the next page" | null}`;
/// `next` pages by cursor, stable while entries are written.
///
/// Unknown, repeated, empty or malformed parameters get `400 {"error", "parameter"}`; a request
/// without an actor `401`; without permission `403`. Values reach SQL only as bound
/// parameters. The actor comes from the [`AuditLayer`](super::AuditLayer), which must wrap
/// this router.
#[derive(Debug, Clone)]
#[must_use]
pub struct HistoryApi<P = DenyAll> {
    db: DatabaseConnection,
    permission: P,
    hidden_from_me: Vec<String>,
}

impl HistoryApi<DenyAll> {
    /// The API over the log in `db`; until [`permission`](Self::permission) is set, only
    /// `/me` answers.
    pub fn new(db: DatabaseConnection) -> Self {
        HistoryApi {
            db,
            permission: DenyAll,
            hidden_from_me: Vec::new(),
        }
    }
}

impl<P: Permission> HistoryApi<P> {
    /// Who may read the whole log and object histories.
    pub fn permission<Q: Permission>(self, permission: Q) -> HistoryApi<Q> {
        HistoryApi {
            db: self.db,
            permission,
            hidden_from_me: self.hidden_from_me,
        }
    }

    /// Entity types left out of "my history" (`GET /me`), e.g. `API_ENTITY` to show users
    /// their changes and logins but not every request they made. Admin listings still show them.
    pub fn hide_from_me<S: Into<String>>(mut self, types: impl IntoIterator<Item = S>) -> Self {
        self.hidden_from_me
            .extend(types.into_iter().map(Into::into));
        self
    }

    /// The router.
    pub fn into_router<S: Clone + Send + Sync + 'static>(self) -> Router<S> {
        Router::new()
            .route("/entries", get(all::<P>))
            .route("/me", get(mine::<P>))
            .route("/{entity_type}/{object_id}/log", get(object::<P>))
            .route("/viewer", get(viewer))
            .with_state(Arc::new(self))
    }
}

type Api<P> = State<Arc<HistoryApi<P>>>;

fn error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({ "error": message }))).into_response()
}

fn bad_request(e: BadParam) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({
            "error": format!("invalid parameter {}: {}", e.parameter, e.message),
            "parameter": e.parameter,
        })),
    )
        .into_response()
}

/// Which listing a request is for.
enum Listing {
    All,
    Mine,
    Object(String, String),
}

/// Authenticates, authorizes, validates, then reads one page: the same order for every route,
/// so a caller without access never learns which parameters would have been accepted.
async fn listing<P: Permission>(api: &HistoryApi<P>, asked: Asked, listing: Listing) -> Response {
    let Asked { actor, path, query } = asked;
    let Some(actor) = actor else {
        return error(StatusCode::UNAUTHORIZED, "authentication required");
    };
    let (scope, denied, excluded): (Option<Scope<'_>>, &str, &[&str]) = match &listing {
        Listing::All => (Some(Scope::All), "not allowed to read the audit log", &[]),
        Listing::Mine => (None, "", &["actor"]),
        Listing::Object(entity_type, object_id) => (
            Some(Scope::Object {
                entity_type,
                object_id,
            }),
            "not allowed to read this history",
            &["entity_type", "object_id"],
        ),
    };
    if let Some(scope) = scope
        && !api.permission.allows(&actor, &scope).await
    {
        return error(StatusCode::FORBIDDEN, denied);
    }
    if let Listing::Object(entity_type, object_id) = &listing {
        let checked = params::path_value("entity_type", entity_type)
            .and_then(|()| params::path_value("object_id", object_id));
        if let Err(e) = checked {
            return bad_request(e);
        }
    }
    let allowed: Vec<&str> = FILTERS
        .iter()
        .copied()
        .filter(|p| !excluded.contains(p))
        .collect();
    let mut parsed = match params::parse(query.as_deref(), &allowed) {
        Ok(parsed) => parsed,
        Err(e) => return bad_request(e),
    };
    parsed.history = match listing {
        Listing::All => parsed.history,
        Listing::Mine => parsed
            .history
            .actor(actor.id)
            .without_entity_types(api.hidden_from_me.iter().cloned()),
        Listing::Object(entity_type, object_id) => parsed.history.object(entity_type, object_id),
    };
    page(&api.db, parsed, &path).await
}

/// What every listing needs from its request: who asks (from the [`AuditLayer`]'s
/// [`RequestContext`]), the path as the client sent it (for `next`), the raw query.
///
/// [`AuditLayer`]: super::AuditLayer
struct Asked {
    actor: Option<Actor>,
    path: String,
    query: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for Asked {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let uri = parts
            .extensions
            .get::<OriginalUri>()
            .map_or(&parts.uri, |o| &o.0);
        Ok(Asked {
            actor: parts
                .extensions
                .get::<RequestContext>()
                .and_then(|c| c.actor.clone()),
            path: uri.path().to_owned(),
            query: parts.uri.query().map(str::to_owned),
        })
    }
}

async fn all<P: Permission>(State(api): Api<P>, asked: Asked) -> Response {
    listing(&api, asked, Listing::All).await
}

async fn mine<P: Permission>(State(api): Api<P>, asked: Asked) -> Response {
    listing(&api, asked, Listing::Mine).await
}

async fn object<P: Permission>(
    State(api): Api<P>,
    Path((entity_type, object_id)): Path<(String, String)>,
    asked: Asked,
) -> Response {
    listing(&api, asked, Listing::Object(entity_type, object_id)).await
}

async fn page(db: &DatabaseConnection, parsed: Parsed, path: &str) -> Response {
    let result = async {
        let page = parsed.history.fetch(db).await?;
        let count = parsed.history.count(db).await?;
        Ok::<_, sea_orm::DbErr>((page, count))
    }
    .await;
    match result {
        Ok((page, count)) => {
            let next = page.next.map(|cursor| {
                format!(
                    "{path}?{}",
                    params::next_query(&parsed.keep, parsed.limit, cursor)
                )
            });
            // Who read which part of the log is recorded; the log is not copied into itself.
            let note = ActivityNote::default().omit_response_body();
            (
                note,
                axum::Json(json!({ "count": count, "results": page.entries, "next": next })),
            )
                .into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "sea-orm-audit: history API query failed");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "reading the audit log failed",
            )
        }
    }
}

const VIEWER: &str = include_str!("viewer.html");

/// The page: inline script and style only, no outside resources.
async fn viewer() -> Response {
    let mut response = Html(VIEWER).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
             connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
             frame-ancestors 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
