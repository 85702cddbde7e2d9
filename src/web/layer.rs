//! The tower layer: an audit context per request, and its activity entry.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath, OriginalUri};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use http::request::Parts;
use http::{Method, Request, StatusCode, header};
use serde_json::Value as Json;
use tower::{Layer, Service};
use tower_http::request_id::MakeRequestId;

use super::activity::{
    ActivityLog, ActivityNote, Captured, Overflow, PathStyle, capture_headers, is_form, is_json,
};
use super::actor::{Actor, ResolveActor};
use super::body::{self, Capture, Tee};
use super::ip::{Cidr, client_ip};
use super::limits;
use super::request_id::{self, FastRequestUuid};
use crate::context::AuditContext;

/// What the [`AuditLayer`] found out about the request, in its extensions (and an extractor:
/// handlers can take a `RequestContext` argument).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RequestContext {
    /// The caller, if the resolver found one.
    pub actor: Option<Actor>,
    /// The request id (echoed in the `x-request-id` response header; see
    /// [`AuditLayer::request_id`]).
    pub request_id: String,
    /// The client address (see [`client_ip`]); `None` when the server was not started with
    /// `into_make_service_with_connect_info::<SocketAddr>()`.
    pub ip: Option<IpAddr>,
    /// The method.
    pub method: Method,
    /// The matched route template (`/posts/{id}`), if any.
    pub route: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for RequestContext {
    type Rejection = (StatusCode, &'static str);

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<RequestContext>().cloned().ok_or((
            StatusCode::INTERNAL_SERVER_ERROR,
            "sea-orm-audit: the AuditLayer is not installed on this route",
        ))
    }
}

/// A tower layer for axum routers: every request runs inside an
/// [`AuditContext`](crate::AuditContext) carrying its actor, client IP, request id, method and
/// route, so every audited write and event in the handler records them; optionally each
/// request becomes an API activity entry ([`ActivityLog`]).
///
/// Apply it with `Router::layer` (so the matched route is known). Start the server with
/// `into_make_service_with_connect_info::<SocketAddr>()` so the client address is known.
#[derive(Debug)]
#[must_use]
pub struct AuditLayer<R, M = FastRequestUuid> {
    resolver: Arc<R>,
    make_id: M,
    config: Arc<Config>,
}

impl<R, M: Clone> Clone for AuditLayer<R, M> {
    fn clone(&self) -> Self {
        AuditLayer {
            resolver: self.resolver.clone(),
            make_id: self.make_id.clone(),
            config: self.config.clone(),
        }
    }
}

#[derive(Debug, Clone, Default)]
struct Config {
    proxies: Vec<Cidr>,
    copy_claims: Vec<String>,
    activity: Option<ActivityLog>,
}

impl<R: ResolveActor> AuditLayer<R> {
    /// A layer finding each request's actor with `resolver`.
    pub fn new(resolver: R) -> Self {
        AuditLayer {
            resolver: Arc::new(resolver),
            make_id: FastRequestUuid,
            config: Arc::new(Config::default()),
        }
    }
}

impl<R: ResolveActor, M> AuditLayer<R, M> {
    /// Where request ids come from, for requests that arrive without one: any tower-http
    /// [`MakeRequestId`] (default [`FastRequestUuid`], random UUIDs).
    ///
    /// A request's id is the first acceptable (1 to 128 characters of letters, digits and
    /// `-_.:/+=@`) of: tower-http's [`RequestId`](tower_http::request_id::RequestId) extension,
    /// which its `SetRequestIdLayer` sets when it runs outside this layer (whatever header it
    /// reads); the `x-request-id` header; the id `make` gives; a new UUID. The audit entries,
    /// the `x-request-id` response header and [`RequestContext::request_id`] carry it, and the
    /// request goes on with it as its `x-request-id` header and `RequestId` extension, so
    /// tower-http's `PropagateRequestIdLayer` and the handler see the same id.
    ///
    /// ```
    /// use sea_orm_audit::web::{Actor, AuditLayer};
    /// use tower_http::request_id::MakeRequestUuid;
    ///
    /// let layer = AuditLayer::new(|_: &http::request::Parts| None::<Actor>)
    ///     .request_id(MakeRequestUuid);
    /// # let _ = layer;
    /// ```
    pub fn request_id<M2: MakeRequestId>(self, make: M2) -> AuditLayer<R, M2> {
        AuditLayer {
            resolver: self.resolver,
            make_id: make,
            config: self.config,
        }
    }

    /// Proxies whose `Forwarded` / `X-Forwarded-For` headers are believed (default: none, so
    /// the client IP is the socket's peer address). See [`client_ip`].
    pub fn trusted_proxies(mut self, proxies: impl IntoIterator<Item = Cidr>) -> Self {
        Arc::make_mut(&mut self.config).proxies = proxies.into_iter().collect();
        self
    }

    /// Claims of the [`Actor`] copied into the context data of every entry written during the
    /// request (`tenant`, `company_id`, a token id).
    pub fn copy_claims<S: Into<String>>(mut self, keys: impl IntoIterator<Item = S>) -> Self {
        Arc::make_mut(&mut self.config).copy_claims = keys.into_iter().map(Into::into).collect();
        self
    }

    /// Records each request as an API activity entry.
    pub fn activity(mut self, activity: ActivityLog) -> Self {
        Arc::make_mut(&mut self.config).activity = Some(activity);
        self
    }
}

impl<S, R, M: Clone> Layer<S> for AuditLayer<R, M> {
    type Service = AuditService<S, R, M>;

    fn layer(&self, inner: S) -> Self::Service {
        AuditService {
            inner,
            resolver: self.resolver.clone(),
            make_id: self.make_id.clone(),
            config: self.config.clone(),
        }
    }
}

/// The service [`AuditLayer`] wraps around each route.
#[derive(Debug)]
pub struct AuditService<S, R, M = FastRequestUuid> {
    inner: S,
    resolver: Arc<R>,
    make_id: M,
    config: Arc<Config>,
}

impl<S: Clone, R, M: Clone> Clone for AuditService<S, R, M> {
    fn clone(&self) -> Self {
        AuditService {
            inner: self.inner.clone(),
            resolver: self.resolver.clone(),
            make_id: self.make_id.clone(),
            config: self.config.clone(),
        }
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, R, M> Service<Request<Body>> for AuditService<S, R, M>
where
    S: Service<Request<Body>, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    R: ResolveActor,
    M: MakeRequestId,
{
    type Response = Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        let started = Instant::now();
        let started_at = Utc::now();
        let request_id = request_id::assign(&mut req, &mut self.make_id);
        // The clone is not ready; the instance that `poll_ready` prepared is used.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let resolver = self.resolver.clone();
        let config = self.config.clone();
        Box::pin(async move {
            let (mut parts, body) = req.into_parts();
            let peer = parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(addr)| addr.ip());
            let ip = client_ip(&parts.headers, peer, &config.proxies);
            let route = parts
                .extensions
                .get::<MatchedPath>()
                .map(|m| m.as_str().to_owned());
            let actor = resolver.resolve(&parts).await;
            let context = context(
                &config,
                actor.as_ref(),
                &request_id,
                ip,
                &parts.method,
                route.as_deref(),
            );
            parts.extensions.insert(RequestContext {
                actor: actor.clone(),
                request_id: request_id.clone(),
                ip,
                method: parts.method.clone(),
                route: route.clone(),
            });

            let mut recording = None;
            if let Some(activity) = &config.activity {
                let path = original_path(&parts);
                if activity.wants(&parts.method, &path, route.as_deref(), actor.is_none()) {
                    match activity.reserve() {
                        Some(permit) => recording = Some((activity, permit, path)),
                        None => {
                            activity.count_dropped();
                            if activity.config.overflow == Overflow::Reject {
                                return Ok(rejected(&request_id));
                            }
                        }
                    }
                }
            }

            let Some((activity, permit, path)) = recording else {
                let req = Request::from_parts(parts, body);
                let mut response = context.scope(inner.call(req)).await?;
                request_id::echo(response.headers_mut(), &request_id);
                return Ok(response);
            };

            let c = &activity.config;
            let request_type = content_type(&parts.headers);
            let request_capture = Arc::new(Mutex::new(Capture::new(
                c.body_limit,
                is_json(request_type.as_deref()) || is_form(request_type.as_deref()),
            )));
            let path = match c.path_style {
                PathStyle::PathAndQuery => path,
                PathStyle::Absolute => absolute(&parts, &path, peer, &config.proxies),
            };
            let path = if path.len() > limits::MAX_PATH {
                limits::cap_bytes(&path, limits::MAX_PATH)
            } else {
                path
            };
            // Only the recorded headers are kept, capped (not cookies and the rest).
            let headers = capture_headers(&parts.headers, &c.headers);
            let method = parts.method.clone();
            // The entry carries what every change of this request carries.
            let context_data = context.data.clone();
            let body = Tee::wrap(body, request_capture.clone(), None);
            let req = Request::from_parts(parts, body);
            // Filled in when the handler returns; as it stands, the entry of a handler that
            // panicked.
            let mut captured = Captured {
                config: c.clone(),
                created_at: started_at,
                request_id: request_id.clone(),
                actor: actor.map(|a| a.id),
                context: context_data,
                method,
                path,
                route,
                status: 500,
                duration_ms: 0.0,
                ip,
                headers,
                request: Capture::default(),
                request_type,
                response: Capture::default(),
                response_type: None,
                complete: false,
                note: None,
                reduced: None,
            };
            let mut response = match catch_panic(context.scope(inner.call(req))).await {
                Ok(result) => result?,
                Err(panic) => {
                    // Recorded as failed with status 500; the panic then goes on, to whatever
                    // the application does with it (tower-http's CatchPanicLayer answers 500).
                    captured.duration_ms = started.elapsed().as_secs_f64() * 1000.0;
                    captured.request = body::take(&request_capture);
                    permit.send(captured);
                    std::panic::resume_unwind(panic);
                }
            };
            captured.duration_ms = started.elapsed().as_secs_f64() * 1000.0;
            request_id::echo(response.headers_mut(), &request_id);

            let response_type = content_type(response.headers());
            captured.note = response.extensions_mut().remove::<ActivityNote>();
            captured.status = response.status().as_u16();
            captured.response_type = response_type.clone();
            captured.complete = true;
            let omit = captured.note.as_ref().is_some_and(|n| n.omit_response_body);
            let keep = !omit && is_json(response_type.as_deref());
            let (parts, body) = response.into_parts();
            let response_capture = Arc::new(Mutex::new(Capture::new(c.body_limit, keep)));
            let on_end = {
                let response_capture = response_capture.clone();
                Box::new(move |complete| {
                    captured.request = body::take(&request_capture);
                    captured.response = body::take(&response_capture);
                    captured.complete = complete;
                    permit.send(captured);
                })
            };
            let body = Tee::wrap(body, response_capture, Some(on_end));
            Ok(Response::from_parts(parts, body))
        })
    }
}

/// Runs `fut`, catching a panic in it as an `Err` (no unsafe: the future is boxed, so it is
/// `Unpin`).
async fn catch_panic<F: Future>(fut: F) -> Result<F::Output, Box<dyn std::any::Any + Send>> {
    let mut fut = Box::pin(fut);
    std::future::poll_fn(move |cx| {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| fut.as_mut().poll(cx))) {
            Ok(std::task::Poll::Ready(output)) => std::task::Poll::Ready(Ok(output)),
            Ok(std::task::Poll::Pending) => std::task::Poll::Pending,
            Err(panic) => std::task::Poll::Ready(Err(panic)),
        }
    })
    .await
}

fn context(
    config: &Config,
    actor: Option<&Actor>,
    request_id: &str,
    ip: Option<IpAddr>,
    method: &Method,
    route: Option<&str>,
) -> AuditContext {
    let mut ctx = AuditContext::current().unwrap_or_default();
    if let Some(actor) = actor {
        ctx.actor = Some(actor.id.clone());
        for key in &config.copy_claims {
            if let Some(value) = actor.claims.get(key) {
                ctx.data.insert(key.clone(), value.clone());
            }
        }
    }
    ctx.data.insert("request_id".into(), request_id.into());
    if let Some(ip) = ip {
        ctx.data.insert("ip".into(), ip.to_string().into());
    }
    ctx.data.insert("method".into(), method.as_str().into());
    if let Some(route) = route {
        ctx.data.insert("route".into(), Json::from(route));
    }
    ctx
}

fn content_type(headers: &http::HeaderMap) -> Option<String> {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// The path and query as the client asked (before `Router::nest` stripped a prefix).
fn original_path(parts: &Parts) -> String {
    let uri = parts
        .extensions
        .get::<OriginalUri>()
        .map_or(&parts.uri, |o| &o.0);
    uri.path_and_query()
        .map_or_else(|| uri.path().to_owned(), |pq| pq.as_str().to_owned())
}

fn absolute(parts: &Parts, path: &str, peer: Option<IpAddr>, proxies: &[Cidr]) -> String {
    let from_proxy = peer.is_some_and(|p| proxies.iter().any(|net| net.contains(p)));
    let forwarded_proto = from_proxy
        .then(|| {
            parts
                .headers
                .get("x-forwarded-proto")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(',').next())
                .map(|v| v.trim().to_ascii_lowercase())
        })
        .flatten()
        .filter(|p| p == "http" || p == "https");
    let scheme = forwarded_proto
        .or_else(|| parts.uri.scheme_str().map(str::to_owned))
        .unwrap_or_else(|| "http".to_owned());
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| parts.uri.authority().map(|a| a.as_str()))
        .unwrap_or("localhost");
    format!("{scheme}://{host}{path}")
}

fn rejected(request_id: &str) -> Response {
    let mut response = (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, "1")],
        axum::Json(serde_json::json!({
            "error": "the audit log cannot record this request now; try again shortly"
        })),
    )
        .into_response();
    request_id::echo(response.headers_mut(), request_id);
    response
}
