use async_trait::async_trait;
use axum::Router as AxumRouter;
use loco_rs::{
    app::{AppContext, Hooks, Initializer},
    bgworker::{BackgroundWorker, Queue},
    boot::{create_app, BootResult, StartMode},
    config::Config,
    controller::AppRoutes,
    db::{self, truncate_table},
    environment::Environment,
    task::Tasks,
    Result,
};
use migration::Migrator;
use sea_orm_audit::web::{
    ActivityLog, ActivityWriter, Actor, AuditLayer, Batching, HistoryApi, Scope,
};
use std::path::Path;

#[allow(unused_imports)]
use crate::{controllers, models::_entities::users, tasks, workers::downloader::DownloadWorker};

pub struct App;
#[async_trait]
impl Hooks for App {
    fn app_name() -> &'static str {
        env!("CARGO_CRATE_NAME")
    }

    fn app_version() -> String {
        format!(
            "{} ({})",
            env!("CARGO_PKG_VERSION"),
            option_env!("BUILD_SHA")
                .or(option_env!("GITHUB_SHA"))
                .unwrap_or("dev")
        )
    }

    async fn boot(
        mode: StartMode,
        environment: &Environment,
        config: Config,
    ) -> Result<BootResult> {
        create_app::<Self, Migrator>(mode, environment, config).await
    }

    async fn initializers(_ctx: &AppContext) -> Result<Vec<Box<dyn Initializer>>> {
        Ok(vec![])
    }

    fn routes(_ctx: &AppContext) -> AppRoutes {
        AppRoutes::with_default_routes() // controller routes below
            .add_route(controllers::notes::routes())
            .add_route(controllers::auth::routes())
    }
    async fn after_routes(router: AxumRouter, ctx: &AppContext) -> Result<AxumRouter> {
        let writer = ActivityWriter::spawn(ctx.db.clone(), Batching::new());
        ctx.shared_store.insert(writer.clone()); // for on_shutdown
        let jwt = loco_rs::auth::jwt::JWT::new(&ctx.config.get_jwt_config()?.secret);
        let history = HistoryApi::new(ctx.db.clone())
            .permission(|_: &Actor, scope: &Scope<'_>| matches!(scope, Scope::Object { .. }));
        Ok(router.nest("/api/audit", history.into_router()).layer(
            AuditLayer::new(move |parts: &axum::http::request::Parts| {
                // The same check as loco's auth::JWT extractor; a token that fails it is anonymous.
                let header = parts.headers.get("authorization")?.to_str().ok()?;
                let claims = jwt.validate(header.strip_prefix("Bearer ")?).ok()?.claims;
                let name = claims.claims.get("name").cloned().unwrap_or_default();
                Some(Actor::new(claims.pid).claim("name", name))
            })
            .copy_claims(["name"])
            .activity(
                ActivityLog::new(&writer)
                    .record_anonymous_writes()
                    .action("/api/auth/login", sea_orm_audit::Action::Login),
            ),
        ))
    }
    async fn on_shutdown(ctx: &AppContext) {
        if let Some(writer) = ctx.shared_store.get::<ActivityWriter>() {
            writer.shutdown().await; // after the requests in flight: writes what is queued
        }
    }
    async fn connect_workers(ctx: &AppContext, queue: &Queue) -> Result<()> {
        queue.register(DownloadWorker::build(ctx)).await?;
        Ok(())
    }

    #[allow(unused_variables)]
    fn register_tasks(tasks: &mut Tasks) {
        // tasks-inject (do not remove)
        tasks.register(tasks::user_create::UserCreate);
        tasks.register(tasks::user_delete::UserDelete);
    }
    async fn truncate(ctx: &AppContext) -> Result<()> {
        truncate_table(&ctx.db, users::Entity).await?;
        Ok(())
    }
    async fn seed(ctx: &AppContext, base: &Path) -> Result<()> {
        db::seed::<users::ActiveModel>(&ctx.db, &base.join("users.yaml").display().to_string())
            .await?;
        Ok(())
    }
}
