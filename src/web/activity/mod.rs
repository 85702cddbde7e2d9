//! The API activity log: one `audit_log` entry per HTTP request. This module is its
//! configuration ([`ActivityLog`]: which requests, what they record, what happens when the queue
//! is full); `note` is what a handler adds to its request's entry, `entry` turns a finished
//! request into the entry the writer stores.

mod entry;
mod note;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use http::{HeaderName, Method};
use serde_json::{Map, Value as Json};

use super::mask::{DEFAULT_SENSITIVE_KEYS, Sensitive};
use super::writer::{ActivityWriter, Reservation};
use crate::Action;

pub(crate) use entry::{Captured, capture_headers, is_form, is_json};
pub use note::ActivityNote;

/// Entity type of API activity entries; their object id is the request id.
pub const API_ENTITY: &str = "api";

/// How the requested path is recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum PathStyle {
    /// `/posts/1?draft=true` (the default).
    #[default]
    PathAndQuery,
    /// `https://example.com/posts/1?draft=true`: the host from the `Host` header, the scheme
    /// from `X-Forwarded-Proto` when the peer is a trusted proxy, else from the URI (`http`).
    /// The host is what the client sent; do not use it to tell your own hosts apart.
    Absolute,
}

/// What happens to a request when the activity queue is full (the database is slow or down
/// and the [`ActivityWriter`] is behind by its whole capacity).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Overflow {
    /// Serve the request without an activity entry; counted in
    /// [`WriterStats::dropped`](super::WriterStats::dropped) and reported through `tracing`
    /// (the default: availability first). Model changes are still logged: they never go
    /// through the queue.
    #[default]
    Drop,
    /// Refuse the request with `503 Service Unavailable` and `Retry-After` before the handler
    /// runs: no request is ever served unlogged.
    Reject,
}

/// Which requests become activity entries, and what they record. Give it to
/// [`AuditLayer::activity`](super::AuditLayer::activity).
///
/// Defaults: every method; anonymous requests skipped; path with query; headers `user-agent`,
/// `content-type` and `referer`; JSON bodies up to 16 KiB each, keys of
/// [`DEFAULT_SENSITIVE_KEYS`] masked; [`Overflow::Drop`].
///
/// ```
/// # async fn demo(db: sea_orm::DatabaseConnection) {
/// use sea_orm_audit::web::{ActivityLog, ActivityWriter, Batching, Overflow};
/// let writer = ActivityWriter::spawn(db, Batching::new());
/// let activity = ActivityLog::new(&writer)
///     .skip_prefix("/static")
///     .skip_route("/health")
///     .allow_anonymous("/login")
///     .methods([http::Method::POST, http::Method::PUT, http::Method::PATCH, http::Method::DELETE])
///     .mask_key("card_number")
///     .event_name("POST /posts", "Create post")
///     .on_full(Overflow::Reject);
/// # let _ = activity; }
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct ActivityLog {
    pub(crate) writer: ActivityWriter,
    pub(crate) config: Arc<Config>,
}

#[derive(Debug, Clone)]
pub(crate) struct Config {
    skip_routes: HashSet<String>,
    skip_prefixes: Vec<String>,
    methods: Option<Vec<Method>>,
    anonymous_routes: HashSet<String>,
    anonymous_writes: bool,
    sensitive: Sensitive,
    pub(crate) path_style: PathStyle,
    pub(crate) headers: Vec<HeaderName>,
    pub(crate) body_limit: usize,
    event_names: HashMap<String, String>,
    actions: HashMap<String, Action>,
    tool: Option<String>,
    pub(crate) overflow: Overflow,
    enrich: Option<Enrich>,
}

type EnrichFn = dyn Fn(&mut Map<String, Json>) + Send + Sync;

/// A user function adding to an entry's data, run by the writer task.
#[derive(Clone)]
struct Enrich(Arc<EnrichFn>);

impl std::fmt::Debug for Enrich {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Enrich(..)")
    }
}

/// Default cap on the bytes of each body kept in an entry.
const DEFAULT_BODY_LIMIT: usize = 16 * 1024;

impl ActivityLog {
    /// Records requests through `writer`.
    pub fn new(writer: &ActivityWriter) -> Self {
        ActivityLog {
            writer: writer.clone(),
            config: Arc::new(Config {
                skip_routes: HashSet::new(),
                skip_prefixes: Vec::new(),
                methods: None,
                anonymous_routes: HashSet::new(),
                anonymous_writes: false,
                sensitive: Sensitive::new(DEFAULT_SENSITIVE_KEYS),
                path_style: PathStyle::default(),
                headers: vec![
                    http::header::USER_AGENT,
                    http::header::CONTENT_TYPE,
                    http::header::REFERER,
                ],
                body_limit: DEFAULT_BODY_LIMIT,
                event_names: HashMap::new(),
                actions: HashMap::new(),
                tool: None,
                overflow: Overflow::default(),
                enrich: None,
            }),
        }
    }

    fn config(&mut self) -> &mut Config {
        Arc::make_mut(&mut self.config)
    }

    /// Does not record requests whose matched route template is `route` (`"/health"`,
    /// `"/posts/{id}"`).
    pub fn skip_route(mut self, route: impl Into<String>) -> Self {
        self.config().skip_routes.insert(route.into());
        self
    }

    /// Does not record requests whose path starts with `prefix` (`"/static/"`).
    pub fn skip_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.config().skip_prefixes.push(prefix.into());
        self
    }

    /// Records only these methods (default: all).
    pub fn methods(mut self, methods: impl IntoIterator<Item = Method>) -> Self {
        self.config().methods = Some(methods.into_iter().collect());
        self
    }

    /// Records requests to this route template even without an actor (a login endpoint).
    /// Other anonymous requests are not recorded.
    pub fn allow_anonymous(mut self, route: impl Into<String>) -> Self {
        self.config().anonymous_routes.insert(route.into());
        self
    }

    /// Records anonymous requests that may change data (every method but GET, HEAD, OPTIONS
    /// and TRACE) on every route: a public form or API whose writes are audited in the log
    /// should show in the activity log too. Off by default.
    pub fn record_anonymous_writes(mut self) -> Self {
        self.config().anonymous_writes = true;
        self
    }

    /// Replaces the sensitive keys (matched as whole words, see
    /// [`is_sensitive_key`](super::is_sensitive_key)) masked in bodies, query strings and
    /// headers.
    pub fn sensitive_keys<S: Into<String>>(mut self, keys: impl IntoIterator<Item = S>) -> Self {
        let keys: Vec<String> = keys.into_iter().map(Into::into).collect();
        self.config().sensitive = Sensitive::new(&keys);
        self
    }

    /// Adds one sensitive key to those masked.
    pub fn mask_key(mut self, key: impl Into<String>) -> Self {
        self.config().sensitive.push(&key.into());
        self
    }

    /// How the path is recorded (default [`PathStyle::PathAndQuery`]).
    pub fn path_style(mut self, style: PathStyle) -> Self {
        self.config().path_style = style;
        self
    }

    /// Replaces the request headers recorded (default `user-agent`, `content-type`,
    /// `referer`). Values of sensitive headers (`authorization`, `cookie`, any name with a
    /// sensitive word) are masked.
    pub fn headers(mut self, headers: impl IntoIterator<Item = HeaderName>) -> Self {
        self.config().headers = headers.into_iter().collect();
        self
    }

    /// Keeps at most this many bytes of each JSON body (default 16 KiB). Longer bodies stream
    /// through untouched; the entry keeps their masked prefix, marked `"truncated": true`, and
    /// their size. 0 keeps no body. An entry is capped at 256 KiB as a whole: one larger
    /// keeps only its bodies' sizes, so limits past ~100 KiB gain nothing.
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.config().body_limit = bytes;
        self
    }

    /// A friendly event name for a route template, or for a method and route
    /// (`"POST /posts"`); the method-specific name wins. Default: the route template.
    pub fn event_name(mut self, route: impl Into<String>, name: impl Into<String>) -> Self {
        self.config().event_names.insert(route.into(), name.into());
        self
    }

    /// The action recorded for a route template, or for a method and route (`"POST /{id}"`);
    /// the method-specific one wins. Default: from the method (GET read, POST create, PUT and
    /// PATCH update, DELETE delete), which form-based apps contradict: `POST /{id}` edits,
    /// `POST /delete/{id}` deletes, `POST /login` logs in. A handler's
    /// [`ActivityNote::action`] wins over both.
    ///
    /// ```
    /// # use sea_orm_audit::{Action, web::{ActivityLog, ActivityWriter}};
    /// # fn demo(writer: &ActivityWriter) -> ActivityLog {
    /// ActivityLog::new(writer)
    ///     .action("POST /posts/{id}", Action::Update)
    ///     .action("POST /posts/delete/{id}", Action::Delete)
    ///     .action("/login", Action::Login)
    ///     .action("/logout", Action::Logout)
    /// # }
    /// ```
    pub fn action(mut self, route: impl Into<String>, action: impl Into<Action>) -> Self {
        self.config().actions.insert(route.into(), action.into());
        self
    }

    /// The tool recorded on activity entries (default none).
    pub fn tool(mut self, tool: impl Into<String>) -> Self {
        self.config().tool = Some(tool.into());
        self
    }

    /// Adds to each entry's `data` (already holding `method`, `path`, `ip`, `headers`...)
    /// before it is written: the client's country from a GeoIP database, a tenant looked up
    /// from the path. Runs in the writer task, off the response path.
    ///
    /// ```
    /// # fn demo(activity: sea_orm_audit::web::ActivityLog) -> sea_orm_audit::web::ActivityLog {
    /// activity.enrich(|data| {
    ///     let private = data["ip"].as_str().is_some_and(|ip| ip.starts_with("10."));
    ///     data.insert("network".into(), if private { "internal" } else { "internet" }.into());
    /// })
    /// # }
    /// ```
    pub fn enrich(mut self, f: impl Fn(&mut Map<String, Json>) + Send + Sync + 'static) -> Self {
        self.config().enrich = Some(Enrich(Arc::new(f)));
        self
    }

    /// What to do when the queue is full (default [`Overflow::Drop`]).
    pub fn on_full(mut self, policy: Overflow) -> Self {
        self.config().overflow = policy;
        self
    }

    /// Whether a request is recorded at all.
    pub(crate) fn wants(
        &self,
        method: &Method,
        path: &str,
        route: Option<&str>,
        anonymous: bool,
    ) -> bool {
        let c = &self.config;
        if let Some(methods) = &c.methods
            && !methods.contains(method)
        {
            return false;
        }
        if route.is_some_and(|r| c.skip_routes.contains(r)) {
            return false;
        }
        if c.skip_prefixes.iter().any(|p| path.starts_with(p.as_str())) {
            return false;
        }
        !anonymous
            || route.is_some_and(|r| c.anonymous_routes.contains(r))
            || (c.anonymous_writes && !method.is_safe())
    }

    /// Reserves room in the queue for one entry; `None` if the queue is full or closed.
    pub(crate) fn reserve(&self) -> Option<Reservation> {
        self.writer.reserve()
    }

    pub(crate) fn count_dropped(&self) {
        self.writer.count_dropped();
    }
}
