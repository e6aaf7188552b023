//! Quickstart: one attribute, two tiers, and what happens when PostgreSQL goes away.
//!
//! `cargo run --example quickstart` — uses `DATABASE_URL` when set, otherwise starts a
//! throwaway PostgreSQL cluster of its own (and removes it at the end).

use std::error::Error;
use std::future::Future;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tiered::tiered_cached;
use tiered_testkit::PgServer;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Profile {
    id: u64,
    name: String,
}

#[derive(Debug, thiserror::Error)]
enum AppError {
    #[error("user {0} not found")]
    NotFound(u64),
}

/// The expensive function: 50 ms per call, cached in L1 and L2 for ten minutes.
#[tiered_cached(on_failure = "retry(3)", ttl = "10m")]
async fn user_profile(id: u64) -> Result<Profile, AppError> {
    tokio::time::sleep(Duration::from_millis(50)).await; // the slow query we are saving
    if id == 0 {
        return Err(AppError::NotFound(id));
    }
    Ok(Profile {
        id,
        name: format!("user-{id}"),
    })
}

/// Runs one call and says which tier answered, from the function's counters.
async fn show(what: &str, call: impl Future<Output = Result<Profile, AppError>>) {
    let counts = || tiered::stats().into_values().next().unwrap_or_default();
    let before = counts();
    let started = Instant::now();
    let result = call.await;
    let elapsed = started.elapsed();
    let after = counts();
    let tier = if after.l1_hits > before.l1_hits {
        "L1 hit"
    } else if after.l2_hits > before.l2_hits {
        "L2 hit"
    } else {
        "miss: the body ran"
    };
    let answer = match result {
        Ok(profile) => format!("{profile:?}"),
        Err(err) => format!("Err({err})"),
    };
    println!("{what:<46} {tier:<20} {elapsed:>10.2?}  {answer}");
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let own_server = match std::env::var("DATABASE_URL") {
        Ok(_) => None,
        Err(_) => {
            println!("DATABASE_URL is not set: starting a throwaway PostgreSQL…");
            Some(PgServer::start()?)
        }
    };
    let url = match &own_server {
        Some(server) => server.url().to_owned(),
        None => std::env::var("DATABASE_URL")?,
    };
    tiered::Runtime::builder().postgres_url(&url).install().await?;
    println!("installed: L1 in this process, L2 in PostgreSQL\n");

    show("user_profile(1), first call", user_profile(1)).await;
    show("user_profile(1) again", user_profile(1)).await;
    tiered::clear_l1(); // what another instance (or this one after a restart) sees
    show("user_profile(1) with an empty L1", user_profile(1)).await;
    invalidate_user_profile(1).await?;
    show("user_profile(1) after invalidate_user_profile", user_profile(1)).await;
    show("user_profile(0): errors are not cached", user_profile(0)).await;
    show("user_profile(0) again", user_profile(0)).await;

    match &own_server {
        Some(server) => {
            server.stop()?;
            println!("\nPostgreSQL stopped. on_failure = \"retry(3)\": three tries, then L1 alone:");
            show("user_profile(2), server gone", user_profile(2)).await;
            show("user_profile(2) again", user_profile(2)).await;
            show("user_profile(1), server gone", user_profile(1)).await;
        }
        None => println!("\n(not stopping your DATABASE_URL server to show the fallback)"),
    }

    for (name, counts) in tiered::stats() {
        println!("\n{name}: {counts:?}");
    }
    tiered::shutdown().await;
    Ok(())
}
