//! tiered in an axum web service: reads of a `users` table cached by a `#[tiered_cached]`
//! method, updates that invalidate in every instance, an `X-Cache` header from the call's
//! outcome, `/stats` and Prometheus `/metrics`.
//!
//! `cargo run -p axum_service [PORT]` (default port 3000; or the `PORT` variable). It uses
//! `DATABASE_URL` when set, otherwise starts a throwaway PostgreSQL of its own and prints the
//! command that starts a second instance on it.
//!
//! ```text
//! GET  /users/{id}                  the user, as JSON; X-Cache: L1, L2, COALESCED or MISS
//! POST /users/{id}  {"name": "…"}   creates or renames the user, then invalidates it everywhere
//! GET  /stats                       tiered::stats() as JSON
//! GET  /metrics                     Prometheus text
//! ```

use std::error::Error;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde::{Deserialize, Serialize};
use tiered::deadpool_postgres::{Manager, Pool, PoolError};
use tiered::{tiered_cached, Outcome};
use tiered_testkit::PgServer;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct User {
    id: i64,
    name: String,
}

#[derive(Debug, Deserialize)]
struct Rename {
    name: String,
}

#[derive(Debug, thiserror::Error)]
enum AppError {
    #[error("database: {0}")]
    Query(#[from] tokio_postgres::Error),
    #[error("database pool: {0}")]
    Pool(#[from] PoolError),
    #[error("cache: {0}")]
    Cache(#[from] tiered::BackendError),
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        (StatusCode::SERVICE_UNAVAILABLE, self.to_string()).into_response()
    }
}

/// The source of truth: the `users` table, through the application's own pool.
struct Users {
    pool: Pool,
}

impl Users {
    /// One user, or `None`; both are cached for five minutes, in this process and in
    /// PostgreSQL for the other instances, until [`Users::rename`] invalidates them.
    #[tiered_cached(ttl = "5m")]
    async fn find(&self, id: i64) -> Result<Option<User>, AppError> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt("SELECT name FROM users WHERE id = $1", &[&id])
            .await?;
        Ok(row.map(|row| User { id, name: row.get(0) }))
    }

    async fn rename(&self, id: i64, name: &str) -> Result<User, AppError> {
        let client = self.pool.get().await?;
        client
            .execute(
                "INSERT INTO users (id, name) VALUES ($1, $2) \
                 ON CONFLICT (id) DO UPDATE SET name = excluded.name",
                &[&id, &name],
            )
            .await?;
        // After the write: from now on no instance answers with the old name.
        Self::invalidate_find(id).await?;
        Ok(User {
            id,
            name: name.to_owned(),
        })
    }
}

struct App {
    users: Users,
    prometheus: PrometheusHandle,
}

async fn get_user(State(app): State<Arc<App>>, Path(id): Path<i64>) -> Result<Response, AppError> {
    let (found, outcome) = tiered::with_outcome(app.users.find(id)).await;
    let x_cache = match outcome {
        Outcome::L1Hit => "L1",
        Outcome::L2Hit => "L2",
        Outcome::Coalesced => "COALESCED",
        Outcome::Computed => "MISS",
        _ => "ERROR",
    };
    let headers = [("x-cache", x_cache)];
    Ok(match found? {
        Some(user) => (headers, Json(user)).into_response(),
        None => (StatusCode::NOT_FOUND, headers).into_response(),
    })
}

async fn post_user(
    State(app): State<Arc<App>>,
    Path(id): Path<i64>,
    Json(rename): Json<Rename>,
) -> Result<Json<User>, AppError> {
    Ok(Json(app.users.rename(id, &rename.name).await?))
}

async fn stats() -> impl IntoResponse {
    Json(tiered::stats())
}

async fn metrics(State(app): State<Arc<App>>) -> String {
    tiered::export_metrics();
    app.prometheus.render()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let port: u16 = match std::env::args().nth(1).or_else(|| std::env::var("PORT").ok()) {
        Some(port) => port.parse().map_err(|_| format!("not a port number: {port}"))?,
        None => 3000,
    };
    let own_server = match std::env::var("DATABASE_URL") {
        Ok(_) => None,
        Err(_) => Some(PgServer::start()?),
    };
    let url = match &own_server {
        Some(server) => server.url().to_owned(),
        None => std::env::var("DATABASE_URL")?,
    };

    let prometheus = PrometheusBuilder::new().install_recorder()?;
    tiered::Runtime::builder().postgres_url(&url).install().await?;
    let config: tokio_postgres::Config = url.parse()?;
    let pool = Pool::builder(Manager::new(config, tokio_postgres::NoTls)).build()?;
    pool.get()
        .await?
        .batch_execute(
            "SET client_min_messages = warning;
             CREATE TABLE IF NOT EXISTS users (id bigint PRIMARY KEY, name text NOT NULL);
             INSERT INTO users VALUES (1, 'Ada'), (2, 'Grace') ON CONFLICT DO NOTHING;",
        )
        .await?;

    let app = Arc::new(App {
        users: Users { pool },
        prometheus,
    });
    let router = Router::new()
        .route("/users/{id}", get(get_user).post(post_user))
        .route("/stats", get(stats))
        .route("/metrics", get(metrics))
        .with_state(app);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("listening on http://127.0.0.1:{port}");
    if own_server.is_some() {
        println!(
            "a second instance on the same database:\n  DATABASE_URL='{url}' cargo run -p axum_service 3001"
        );
    }
    axum::serve(listener, router)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    tiered::shutdown().await;
    Ok(())
}
