//! What the L2 benchmarks share: the function whose calls are all L2 hits, a raw prepared
//! `SELECT` of its rows as the baseline, the server, and call-by-call alternating timing.

use std::future::Future;
use std::hint::black_box;
use std::pin::Pin;
use std::time::{Duration, Instant};

use serde_json::json;
use tiered::deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tiered::tiered_cached;

use super::profile::Profile;

/// `$DATABASE_URL` if set, else a throwaway cluster, kept as long as this is.
pub struct Server {
    url: String,
    _started: Option<tiered_testkit::PgServer>,
}

impl Server {
    pub fn start() -> Server {
        match std::env::var("DATABASE_URL") {
            Ok(url) if !url.is_empty() => Server { url, _started: None },
            _ => {
                let server = tiered_testkit::PgServer::start().expect("a PostgreSQL server");
                Server {
                    url: server.url().to_owned(),
                    _started: Some(server),
                }
            }
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }
}

/// With room for one entry and calls rotating over [`HOT_KEYS`] keys, every call misses L1
/// and is answered from L2.
#[tiered_cached(l1_capacity = 1)]
pub async fn profile_from_l2(id: u64) -> Profile {
    Profile::new(id)
}

/// A pool of `size` connections to `url`, as a user builds one.
pub fn pool(url: &str, size: usize) -> Pool {
    let config: tokio_postgres::Config = url.parse().expect("a PostgreSQL URL");
    let manager = Manager::from_config(
        config,
        tokio_postgres::NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager).max_size(size).build().expect("a pool")
}

/// The L2 ids of [`profile_from_l2`]'s rows, for the raw `SELECT`.
pub async fn row_ids(pool: &Pool, table: &str) -> Vec<Vec<u8>> {
    let client = pool.get().await.expect("a connection");
    let rows = client
        .query(
            &format!("SELECT id FROM {table} WHERE function LIKE '%profile_from_l2'"),
            &[],
        )
        .await
        .expect("the row ids");
    rows.iter().map(|row| row.get(0)).collect()
}

/// The baseline: one prepared `SELECT` of the row's value through the pool.
pub async fn raw_select(pool: &Pool, sql: &str, id: &[u8]) -> Vec<u8> {
    let client = pool.get().await.expect("a connection");
    let statement = client.prepare_cached(sql).await.expect("a prepared statement");
    let row = client.query_one(&statement, &[&id]).await.expect("the row");
    row.get(0)
}

/// The raw `SELECT` of [`profile_from_l2`]'s rows: the statement and the rows' ids.
pub struct RawRows {
    pub sql: String,
    pub ids: Vec<Vec<u8>>,
}

/// One way of making a call, timed by [`alternating`].
pub type Call<'a> = Box<dyn FnMut(usize) -> Pin<Box<dyn Future<Output = ()> + 'a>> + 'a>;

/// The median time of each call, made in turn (each once per round, for `rounds` rounds), so
/// that drift of the machine during the run (other load, frequency) affects all alike. After
/// each call `settle` passes untimed.
pub fn alternating(
    runtime: &tokio::runtime::Runtime,
    rounds: usize,
    settle: Duration,
    calls: Vec<(&str, Call<'_>)>,
) -> serde_json::Value {
    let (names, mut calls): (Vec<&str>, Vec<Call<'_>>) = calls.into_iter().unzip();
    let mut times = vec![Vec::with_capacity(rounds); calls.len()];
    runtime.block_on(async {
        for round in 0..rounds {
            for (call, times) in calls.iter_mut().zip(&mut times) {
                let start = Instant::now();
                call(round).await;
                times.push(start.elapsed());
                std::thread::sleep(settle);
            }
        }
    });
    let medians = names.into_iter().zip(times).map(|(name, mut times)| {
        times.sort_unstable();
        (name.to_owned(), json!(times[times.len() / 2].as_nanos() as f64))
    });
    json!({ "rounds": rounds, "median_ns": serde_json::Map::from_iter(medians) })
}

/// `call` as a [`Call`], its output dropped after the clock stops.
pub fn boxed<'a, F: Future + 'a>(call: impl FnMut(usize) -> F + 'a) -> Call<'a> {
    let mut call = call;
    Box::new(move |i| {
        let future = call(i);
        Box::pin(async move {
            black_box(future.await);
        })
    })
}

/// An L2 hit against the raw `SELECT` of the same rows, call by call, over `rounds` rounds.
pub fn l2_hit(
    runtime: &tokio::runtime::Runtime,
    pool: &Pool,
    rows: &RawRows,
    rounds: usize,
) -> serde_json::Value {
    alternating(
        runtime,
        rounds,
        Duration::ZERO,
        vec![
            ("tiered", boxed(|i| profile_from_l2(super::profile::hot_id(i)))),
            (
                "raw_select",
                boxed(|i| raw_select(pool, &rows.sql, &rows.ids[i % super::profile::HOT_KEYS])),
            ),
        ],
    )
}
