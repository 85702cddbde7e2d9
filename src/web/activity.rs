//! The API activity log: one `audit_log` entry per HTTP request.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use axum::response::{IntoResponseParts, ResponseParts};
use chrono::{DateTime, Utc};
use http::{HeaderMap, HeaderName, Method};
use serde_json::{Map, Value as Json, json};

use super::batch::Prepared;
use super::body::Capture;
use super::limits;
use super::mask::{DEFAULT_SENSITIVE_KEYS, Sensitive, mask_json_text, mask_query, mask_value};
use super::writer::{ActivityWriter, Pending, Reservation};
use crate::auditable::Auditable;
use crate::diff::FILTERED;
use crate::store::NewEntry;
use crate::{Action, Status};

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

/// Everything known about a request when its response is done. Turned into an entry by the
/// writer task, so masking and JSON work stay off the response path.
#[derive(Debug)]
pub(crate) struct Captured {
    pub(crate) config: Arc<Config>,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) request_id: String,
    pub(crate) actor: Option<String>,
    /// The request's audit context data (request id, IP, copied claims, an outer scope's).
    pub(crate) context: Map<String, Json>,
    pub(crate) method: Method,
    /// The path as requested, or the absolute URI (not yet masked).
    pub(crate) path: String,
    pub(crate) route: Option<String>,
    pub(crate) status: u16,
    pub(crate) duration_ms: f64,
    pub(crate) ip: Option<IpAddr>,
    /// The recorded headers, values joined and capped (see [`capture_headers`]).
    pub(crate) headers: Vec<(HeaderName, String)>,
    pub(crate) request: Capture,
    pub(crate) request_type: Option<String>,
    pub(crate) response: Capture,
    pub(crate) response_type: Option<String>,
    pub(crate) complete: bool,
    pub(crate) note: Option<ActivityNote>,
    /// Why the entry lost its bodies before it was queued, if it did.
    pub(crate) reduced: Option<&'static str>,
}

/// The values of the recorded headers, all values of a name joined, each cut to
/// [`limits::MAX_HEADER`] bytes: a 300 KB `User-Agent` costs 1 KiB in the queue and in the row.
pub(crate) fn capture_headers(
    headers: &HeaderMap,
    names: &[HeaderName],
) -> Vec<(HeaderName, String)> {
    names
        .iter()
        .filter_map(|name| {
            let mut values = headers.get_all(name).iter().peekable();
            values.peek()?;
            let joined: Vec<&str> = values.map(|v| v.to_str().unwrap_or("(not text)")).collect();
            Some((
                name.clone(),
                limits::cap_bytes(&joined.join(", "), limits::MAX_HEADER),
            ))
        })
        .collect()
}

/// The action a method stands for.
pub(crate) fn action_for(method: &Method) -> Action {
    match *method {
        Method::GET | Method::HEAD => Action::Read,
        Method::POST => Action::Create,
        Method::PUT | Method::PATCH => Action::Update,
        Method::DELETE => Action::Delete,
        ref other => Action::Custom(other.as_str().to_ascii_lowercase()),
    }
}

/// Whether a content type is JSON (`application/json`, `application/problem+json`...).
/// `application/x-www-form-urlencoded`, what HTML forms send.
pub(crate) fn is_form(content_type: Option<&str>) -> bool {
    content_type.is_some_and(|ct| {
        ct.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .eq_ignore_ascii_case("application/x-www-form-urlencoded")
    })
}

pub(crate) fn is_json(content_type: Option<&str>) -> bool {
    content_type.is_some_and(|ct| {
        let essence = ct.split(';').next().unwrap_or("").trim();
        let Some((_, subtype)) = essence.split_once('/') else {
            return false;
        };
        subtype.eq_ignore_ascii_case("json")
            || subtype
                .rsplit_once('+')
                .is_some_and(|(_, suffix)| suffix.eq_ignore_ascii_case("json"))
    })
}

/// Bytes of an entry that do not depend on the request (keys, ids, times, numbers).
const FIXED_BYTES: usize = 512;

impl Pending for Captured {
    fn approx_bytes(&self) -> usize {
        let headers: usize = self
            .headers
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len())
            .sum();
        let context: usize = self
            .context
            .iter()
            .map(|(k, v)| k.len() + json_size(v))
            .sum();
        FIXED_BYTES
            + self.path.len()
            + headers
            + context
            + self.request.bytes.len()
            + self.response.bytes.len()
    }

    fn drop_bodies(&mut self, reason: &'static str) {
        self.request.forget();
        self.response.forget();
        self.reduced = Some(reason);
    }

    fn prepare(self: Box<Self>) -> Prepared {
        self.into_entry()
    }
}

impl Captured {
    fn into_entry(self) -> Prepared {
        let c = &*self.config;
        let event = self.route.as_deref().map(|route| {
            c.event_names
                .get(&format!("{} {route}", self.method))
                .or_else(|| c.event_names.get(route))
                .cloned()
                .unwrap_or_else(|| route.to_owned())
        });
        let path = mask_query(&self.path, &c.sensitive);
        let method = limits::cap_chars(self.method.as_str(), limits::MAX_METHOD);
        let mut data = self.context;
        data.insert("method".into(), method.clone().into());
        data.insert("path".into(), path.clone().into());
        data.insert("route".into(), self.route.clone().into());
        data.insert("event".into(), event.clone().into());
        data.insert("status_code".into(), self.status.into());
        data.insert("duration_ms".into(), json!(self.duration_ms));
        data.insert("ip".into(), self.ip.map(|ip| ip.to_string()).into());
        data.insert("request_id".into(), self.request_id.clone().into());
        let headers: Map<String, Json> = self
            .headers
            .into_iter()
            .map(|(name, value)| {
                let value = if sensitive_header(&name, &c.sensitive) {
                    FILTERED.to_owned()
                } else {
                    value
                };
                (name.as_str().to_owned(), value.into())
            })
            .collect();
        data.insert("headers".into(), Json::Object(headers));
        if let Some(body) = body_json(&self.request, self.request_type.as_deref(), c) {
            data.insert("request_body".into(), body);
        }
        if let Some(body) = body_json(&self.response, self.response_type.as_deref(), c) {
            data.insert("response_body".into(), body);
        }
        if !self.complete {
            data.insert("response_incomplete".into(), true.into());
        }
        let mut message = None;
        let mut actor = self.actor;
        let mut action = self
            .route
            .as_deref()
            .and_then(|route| {
                c.actions
                    .get(&format!("{} {route}", self.method))
                    .or_else(|| c.actions.get(route))
            })
            .cloned()
            .unwrap_or_else(|| action_for(&self.method));
        if let Some(note) = self.note {
            actor = actor.or(note.actor);
            action = note.action.unwrap_or(action);
            if let Some((entity_type, object_id)) = note.target {
                data.insert(
                    "target".into(),
                    json!({"entity_type": entity_type, "object_id": object_id}),
                );
            }
            message = note.message;
        }
        if let Some(reason) = self.reduced {
            data.insert("reduced".into(), reason.into());
        }
        if let Some(Enrich(f)) = &c.enrich {
            f(&mut data);
        }
        let action = match action {
            Action::Custom(name) => Action::Custom(limits::cap_chars(&name, limits::MAX_METHOD)),
            standard => standard,
        };
        let mut entry = NewEntry::new(API_ENTITY, self.request_id, action);
        entry.actor = actor.map(|a| limits::column(a, limits::MAX_ID));
        entry.tool = c.tool.clone().map(|t| limits::column(t, limits::MAX_ID));
        entry.status = if self.status < 400 {
            Status::Success
        } else {
            Status::Failed
        };
        let message = message.unwrap_or_else(|| format!("{method} {path} → {}", self.status));
        entry.message = Some(limits::cap_bytes(
            &limits::no_nul(message),
            limits::MAX_MESSAGE,
        ));
        entry.created_at = Some(self.created_at);
        let mut reduced = self.reduced.is_some();
        let texts = [&entry.message, &entry.actor, &entry.tool];
        let fixed = FIXED_BYTES
            + entry.object_id.len()
            + texts
                .iter()
                .map(|t| t.as_ref().map_or(0, String::len))
                .sum::<usize>();
        let mut bytes = limits::sanitize_map(&mut data, 0) + fixed;
        if bytes > limits::MAX_ENTRY_BYTES {
            bytes = limits::json_len(&data) + fixed;
            if bytes > limits::MAX_ENTRY_BYTES {
                reduced = true;
                data.insert("reduced".into(), ENTRY_TOO_LARGE.into());
                for key in ["request_body", "response_body"] {
                    if let Some(body) = data.get_mut(key) {
                        *body = json!({"omitted": true, "json_bytes": limits::json_len(&*body)});
                    }
                }
                bytes = limits::json_len(&data) + fixed;
            }
        }
        entry.data = data;
        if bytes > limits::MAX_ENTRY_BYTES {
            // Still too large without its bodies: context data or `enrich` did this.
            entry = limits::reduced(&entry, ENTRY_TOO_LARGE);
            bytes = limits::json_len(&entry.data) + fixed;
        }
        Prepared {
            entry,
            bytes,
            reduced,
        }
    }
}

/// Why an entry lost its bodies (or more) before it was written.
const ENTRY_TOO_LARGE: &str = "entry larger than 256 KiB";

/// About the size of a JSON value in memory (level by level: context data may be deep).
fn json_size(value: &Json) -> usize {
    let mut size = 0;
    let mut stack = vec![value];
    while let Some(v) = stack.pop() {
        size += 8;
        match v {
            Json::String(s) => size += s.len(),
            Json::Array(items) => stack.extend(items),
            Json::Object(map) => {
                size += map.keys().map(String::len).sum::<usize>();
                stack.extend(map.values());
            }
            _ => {}
        }
    }
    size
}

fn sensitive_header(name: &HeaderName, sensitive: &Sensitive) -> bool {
    matches!(
        name.as_str(),
        "authorization" | "proxy-authorization" | "cookie" | "set-cookie"
    ) || sensitive.matches(name.as_str())
}

/// A body as stored: masked JSON, a masked prefix of JSON text, or just its size.
fn body_json(capture: &Capture, content_type: Option<&str>, c: &Config) -> Option<Json> {
    if capture.total == 0 {
        return None;
    }
    if !capture.kept() {
        return Some(json!({"content_type": content_type, "bytes": capture.total}));
    }
    if !capture.truncated() && is_form(content_type) {
        // A form body as a JSON object of its fields (a repeated field: an array), masked
        // like JSON.
        let mut fields = Map::new();
        for (key, value) in form_urlencoded::parse(&capture.bytes) {
            let value = Json::String(value.into_owned());
            match fields.get_mut(key.as_ref()) {
                Some(Json::Array(items)) => items.push(value),
                Some(first) => *first = Json::Array(vec![first.take(), value]),
                None => {
                    fields.insert(key.into_owned(), value);
                }
            }
        }
        let mut value = Json::Object(fields);
        mask_value(&mut value, &c.sensitive);
        return Some(value);
    }
    if !capture.truncated()
        && let Ok(mut value) = serde_json::from_slice::<Json>(&capture.bytes)
    {
        mask_value(&mut value, &c.sensitive);
        return Some(value);
    }
    // Cut short, or not valid JSON: keep the text, masked, and say so.
    let text = match std::str::from_utf8(&capture.bytes) {
        Ok(text) => text.to_owned(),
        Err(e) => {
            let valid = e.valid_up_to();
            String::from_utf8_lossy(&capture.bytes[..valid]).into_owned()
        }
    };
    let kind = if capture.truncated() {
        "truncated"
    } else {
        "invalid_json"
    };
    Some(json!({
        kind: true,
        "bytes": capture.total,
        "text": mask_json_text(&text, &c.sensitive),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_content_types() {
        assert!(is_json(Some("application/json")));
        assert!(is_json(Some("application/json; charset=utf-8")));
        assert!(is_json(Some("application/problem+json")));
        assert!(is_json(Some("Application/JSON")));
        assert!(!is_json(Some("text/html")));
        assert!(!is_json(Some("application/jsonp")));
        assert!(!is_json(Some("json")));
        assert!(!is_json(None));
    }

    #[test]
    fn methods_map_to_actions() {
        assert_eq!(action_for(&Method::GET), Action::Read);
        assert_eq!(action_for(&Method::POST), Action::Create);
        assert_eq!(action_for(&Method::PUT), Action::Update);
        assert_eq!(action_for(&Method::PATCH), Action::Update);
        assert_eq!(action_for(&Method::DELETE), Action::Delete);
        assert_eq!(
            action_for(&Method::OPTIONS),
            Action::Custom("options".into())
        );
    }
}
