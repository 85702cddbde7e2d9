//! axum integration (feature `axum`): who made each change, what the API was asked, and a
//! history API to read it all back.
//!
//! - [`AuditLayer`]: a tower layer that opens an [`AuditContext`](crate::AuditContext) for every
//!   request, so each model change and event inside the handler carries the actor (from your
//!   [`ResolveActor`]), the client IP (forwarding headers honoured only from
//!   [trusted proxies](AuditLayer::trusted_proxies)), the request id (reused from tower-http's
//!   request-id layers or `x-request-id`, or made by any tower-http [`MakeRequestId`], and
//!   echoed in the response), the method and the route.
//! - [`ActivityLog`]: optionally, the same layer records every request as an `audit_log` entry
//!   (entity type [`API_ENTITY`], object id the request id), masking sensitive JSON keys, through
//!   an [`ActivityWriter`]: a bounded queue flushed in multi-row INSERTs by a background task.
//! - [`HistoryApi`]: a router with the log as JSON (filters, pages, per object, "my history"),
//!   guarded by a [`Permission`] you supply, and a viewer page.
//!
//! ```no_run
//! # async fn demo(db: sea_orm::DatabaseConnection) -> Result<(), Box<dyn std::error::Error>> {
//! use axum::{Router, routing::get};
//! use sea_orm_audit::web::{ActivityLog, ActivityWriter, Actor, AuditLayer, Batching, HistoryApi};
//!
//! let writer = ActivityWriter::spawn(db.clone(), Batching::new());
//! let app: Router = Router::new()
//!     .route("/posts", get(|| async { "[]" }))
//!     .nest("/audit", HistoryApi::new(db.clone())
//!         .permission(|actor: &Actor, _: &sea_orm_audit::web::Scope<'_>| actor.id == "admin")
//!         .into_router())
//!     .layer(
//!         AuditLayer::new(|parts: &http::request::Parts| {
//!             // Your auth layer ran first and left the user in the extensions.
//!             parts.extensions.get::<Actor>().cloned()
//!         })
//!         .trusted_proxies(["10.0.0.0/8".parse()?])
//!         .activity(ActivityLog::new(&writer).skip_prefix("/health")),
//!     );
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>())
//!     .with_graceful_shutdown(async { let _ = tokio::signal::ctrl_c().await; })
//!     .await?;
//! writer.shutdown().await; // flushes everything queued
//! # Ok(()) }
//! ```

mod activity;
mod actor;
mod api;
mod batch;
mod body;
mod ip;
mod layer;
mod limits;
mod mask;
mod params;
mod request_id;
mod writer;

pub use activity::{API_ENTITY, ActivityLog, ActivityNote, Overflow, PathStyle};
pub use actor::{Actor, ResolveActor, from_extension};
pub use api::{HistoryApi, Permission, Scope};
pub use ip::{Cidr, client_ip};
pub use layer::{AuditLayer, AuditService, RequestContext};
pub use mask::{DEFAULT_SENSITIVE_KEYS, is_sensitive_key, mask_json};
pub use request_id::{FastRequestUuid, REQUEST_ID};
/// tower-http's request-id trait and id, for [`AuditLayer::request_id`].
pub use tower_http::request_id::{MakeRequestId, RequestId};
pub use writer::{ActivityWriter, Batching, WriterStats};
