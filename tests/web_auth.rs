//! The actor in real auth setups, where no layer leaves the user in the request's extensions:
//! a bearer JWT verified inside the actor resolver (loco's per-handler JWT extractor, the
//! `jsonwebtoken` crate) and a cookie session (`tower-sessions`), each with a readable name
//! beside the id. A token or session that does not verify gives no actor, never a wrong one.

mod common;

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{Method, Request, StatusCode, header, request::Parts};
use axum::routing::post;
use common::TestDb;
use common::entities::post as posts;
use common::web::{PEER, send};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use sea_orm::ActiveValue::Set;
use sea_orm::{ActiveModelTrait, DatabaseConnection};
use sea_orm_audit::web::{Actor, AuditLayer, ResolveActor};
use serde::{Deserialize, Serialize};
use tower_sessions::{MemoryStore, Session, SessionManagerLayer};

const SECRET: &[u8] = b"the app's jwt secret";

/// loco's `UserClaims`: the user's `pid`, the expiry, and extra claims flattened beside them
/// (here the display name, put there at login).
#[derive(Serialize, Deserialize)]
struct Claims {
    pid: String,
    exp: u64,
    name: String,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn token(secret: &[u8], pid: &str, name: &str, exp: u64) -> String {
    let claims = Claims {
        pid: pid.into(),
        exp,
        name: name.into(),
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret),
    )
    .unwrap()
}

/// The resolver: the bearer token verified (signature, algorithm, expiry without leeway, as
/// loco's `JWT::validate` does); anything that does not verify is anonymous.
fn bearer(parts: &Parts) -> Option<Actor> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let token = value.strip_prefix("Bearer ")?;
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = 0;
    let data =
        jsonwebtoken::decode::<Claims>(token, &DecodingKey::from_secret(SECRET), &validation)
            .ok()?;
    Some(Actor::new(data.claims.pid).claim("name", data.claims.name))
}

/// A write handler that does not check authentication itself, so that a request the resolver
/// does not believe still writes: its entry must then have no actor.
async fn create(State(db): State<DatabaseConnection>, title: String) -> StatusCode {
    posts::ActiveModel {
        title: Set(title),
        body: Set("b".into()),
        views: Set(0),
        ..Default::default()
    }
    .insert(&db)
    .await
    .unwrap();
    StatusCode::CREATED
}

fn jwt_app(db: DatabaseConnection) -> Router {
    Router::new()
        .route("/posts", post(create))
        .with_state(db)
        .layer(AuditLayer::new(bearer).copy_claims(["name"]))
}

fn request(uri: &str, headers: &[(header::HeaderName, String)], body: &str) -> Request<Body> {
    let mut builder = Request::builder().method(Method::POST).uri(uri);
    for (name, value) in headers {
        builder = builder.header(name, value);
    }
    let mut req = builder.body(Body::from(body.to_owned())).unwrap();
    req.extensions_mut()
        .insert(ConnectInfo(PEER.parse::<SocketAddr>().unwrap()));
    req
}

/// `(actor, data.name)` of the `create` entry of the post titled `title`.
async fn who_created(db: &DatabaseConnection, title: &str) -> (Option<String>, Option<String>) {
    let logs = common::all_logs(db).await;
    let entry = logs
        .iter()
        .find(|l| l.changes.as_ref().unwrap()["new_value"]["title"] == title)
        .unwrap_or_else(|| panic!("no entry for {title}"));
    let name = entry
        .data
        .as_ref()
        .and_then(|d| d.get("name"))
        .and_then(|n| n.as_str())
        .map(str::to_owned);
    (entry.actor.clone(), name)
}

#[tokio::test]
async fn a_verified_bearer_token_names_the_actor_and_nothing_else_does() {
    let t = TestDb::new().await;
    let app = jwt_app(t.db.clone());
    let pid = "11111111-2222-4333-8444-555555555555";
    let auth = |token: String| vec![(header::AUTHORIZATION, format!("Bearer {token}"))];
    let cases: Vec<(&str, Vec<(header::HeaderName, String)>)> = vec![
        (
            "valid",
            auth(token(SECRET, pid, "Alice Liddell", now() + 600)),
        ),
        (
            "expired",
            auth(token(SECRET, pid, "Alice Liddell", now() - 5)),
        ),
        (
            "forged",
            auth(token(b"another secret", pid, "Mallory", now() + 600)),
        ),
        ("no token", vec![]),
        (
            "not bearer",
            vec![(header::AUTHORIZATION, format!("Basic {pid}"))],
        ),
        ("garbage", auth("not.a.token".into())),
    ];
    // The valid token's payload re-signed by nobody: the claims swapped, the signature kept.
    let valid = token(SECRET, pid, "Alice Liddell", now() + 600);
    let mut pieces: Vec<&str> = valid.split('.').collect();
    let other = token(SECRET, "someone-else", "Eve", now() + 600);
    let other_payload = other.split('.').nth(1).unwrap().to_owned();
    pieces[1] = &other_payload;
    let tampered = pieces.join(".");
    let mut cases = cases;
    cases.push(("tampered", auth(tampered)));
    // `alg: none`, unsigned.
    let none_header = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0";
    cases.push(("alg none", auth(format!("{none_header}.{}.", pieces[1]))));
    for (title, headers) in &cases {
        let (status, _, _) = send(&app, request("/posts", headers, title)).await;
        assert_eq!(status, StatusCode::CREATED, "{title}");
    }
    assert_eq!(
        who_created(&t.db, "valid").await,
        (Some(pid.to_owned()), Some("Alice Liddell".to_owned()))
    );
    for (title, _) in &cases[1..] {
        assert_eq!(who_created(&t.db, title).await, (None, None), "{title}");
    }
    t.finish().await;
}

/// What the session holds for a logged-in user.
#[derive(Clone, Serialize, Deserialize)]
struct SessionUser {
    id: i64,
    name: String,
}

/// The actor from the session the session layer (outside this one) loaded for the request.
struct FromSession;

impl ResolveActor for FromSession {
    async fn resolve(&self, parts: &Parts) -> Option<Actor> {
        let session = parts.extensions.get::<Session>()?;
        let user: SessionUser = session.get("user").await.ok()??;
        Some(Actor::new(user.id.to_string()).claim("name", user.name))
    }
}

async fn login(session: Session, name: String) -> StatusCode {
    // A real app checks a password here; the test logs in whoever it names.
    session.cycle_id().await.unwrap();
    session
        .insert("user", SessionUser { id: 42, name })
        .await
        .unwrap();
    StatusCode::OK
}

async fn logout(session: Session) -> StatusCode {
    session.flush().await.unwrap();
    StatusCode::OK
}

fn session_app(db: DatabaseConnection) -> Router {
    Router::new()
        .route("/posts", post(create))
        .route("/login", post(login))
        .route("/logout", post(logout))
        .with_state(db)
        .layer(AuditLayer::new(FromSession).copy_claims(["name"]))
        // Added last, so it runs first: the session is loaded before the resolver asks.
        .layer(SessionManagerLayer::new(MemoryStore::default()).with_secure(false))
}

#[tokio::test]
async fn a_cookie_session_names_the_actor_until_it_ends() {
    let t = TestDb::new().await;
    let app = session_app(t.db.clone());
    let (status, headers, _) = send(&app, request("/login", &[], "Bob Builder")).await;
    assert_eq!(status, StatusCode::OK);
    let set_cookie = headers[header::SET_COOKIE].to_str().unwrap();
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    let with = |c: &str| vec![(header::COOKIE, c.to_owned())];
    send(&app, request("/posts", &with(&cookie), "in session")).await;
    send(&app, request("/posts", &[], "no cookie")).await;
    // A session id nobody was given (right shape, unknown to the store).
    let forged = "id=AAAAAAAAAAAAAAAAAAAAAA";
    send(&app, request("/posts", &with(forged), "forged cookie")).await;
    send(&app, request("/logout", &with(&cookie), "")).await;
    send(&app, request("/posts", &with(&cookie), "after logout")).await;
    assert_eq!(
        who_created(&t.db, "in session").await,
        (Some("42".to_owned()), Some("Bob Builder".to_owned()))
    );
    for title in ["no cookie", "forged cookie", "after logout"] {
        assert_eq!(who_created(&t.db, title).await, (None, None), "{title}");
    }
    t.finish().await;
}
