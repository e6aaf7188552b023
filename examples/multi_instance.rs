//! Two instances, one PostgreSQL: an invalidation in one process evicts the copy in the other's L1.
//!
//! `cargo run --example multi_instance` — uses `DATABASE_URL` when set, otherwise starts a
//! throwaway PostgreSQL cluster of its own (and removes it at the end).
//!
//! This process, the leader, starts a second instance of itself, the follower (`--follower`),
//! and drives it over the follower's stdin and stdout: one command a line, one answer a line.
//! Both cache a product's price read with SQL from a table, the source of truth. The leader
//! changes the truth and invalidates; the follower's next read returns the new price, and the
//! follower reports when its L1 copy was evicted.

use std::error::Error;
use std::future::Future;
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tiered::tiered_cached;
use tiered_testkit::PgServer;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

type Result<T, E = Box<dyn Error>> = std::result::Result<T, E>;

/// The cache table both instances share.
const TABLE: &str = "multi_instance_cache";
/// The source of truth: `(id, cents)`.
const PRODUCTS: &str = "multi_instance_products";
/// Starts each of the follower's answers; the leader skips any other output.
const ANSWER: &str = "follower> ";

/// Printed at the end: what the run showed holds in general, within these bounds.
const GUARANTEE: &str = "\
The guarantee, and its bounds:
- Once invalidate_*(..) returns Ok, this process never serves the invalidated value again.
  Other processes stop serving it when the notification reaches their listener (the delays
  above); the invalidating transaction sends it, so it is delivered only once that commits.
  (Under the default on_failure = \"l1_only\", an invalidation whose L2 step fails is only
  logged and applied here; use \"error\" where the other processes must be told.)
- A listener may lose its connection and miss notifications. While it is down, its process
  serves no L1 entry older than max_stale_while_disconnected (default 2 s); once it is back,
  it clears its L1. A closed connection is noticed at once, a silent one within about 6 s
  (a heartbeat every second must be answered within 5 s).";

/// This process's connection to the source of truth.
static DB: OnceLock<tokio_postgres::Client> = OnceLock::new();

/// A product's price in cents, read from the truth; cached 10 minutes in L1 and L2.
#[tiered_cached(name = "price", ttl = "10m")]
async fn price(product: i64) -> Result<i64, tokio_postgres::Error> {
    let sql = format!("SELECT cents FROM {PRODUCTS} WHERE id = $1");
    let row = DB.get().expect("connected").query_one(&sql, &[&product]).await?;
    Ok(row.get(0))
}

/// Calls `price(product)` and says which tier answered, from this process's counters.
async fn priced(product: i64) -> Result<String> {
    let before = price_stats();
    let cents = price(product).await?;
    let after = price_stats();
    let tier = if after.l1_hits > before.l1_hits {
        "L1 hit"
    } else if after.l2_hits > before.l2_hits {
        "L2 hit"
    } else {
        "miss: ran the SQL"
    };
    Ok(format!("{tier:<18} {}.{:02}", cents / 100, cents % 100))
}

fn price_stats() -> tiered::FunctionStats {
    tiered::stats().get("price").copied().unwrap_or_default()
}

async fn connect(url: &str) -> Result<()> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    DB.set(client).map_err(|_| "connected twice")?;
    Ok(())
}

async fn install(url: &str) -> Result<()> {
    connect(url).await?;
    tiered::Runtime::builder()
        .postgres_url(url)
        .table(TABLE)
        .install()
        .await?;
    Ok(())
}

async fn set_price(product: i64, cents: i64) -> Result<()> {
    let sql = format!("INSERT INTO {PRODUCTS} VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET cents = $2");
    DB.get()
        .expect("connected")
        .execute(&sql, &[&product, &cents])
        .await?;
    Ok(())
}

fn unix_nanos() -> i128 {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock");
    now.as_nanos() as i128
}

/// The follower: answers `price <id>`, `invalidations` and `await <n>` until its stdin ends.
async fn follower() -> Result<()> {
    install(&std::env::var("DATABASE_URL")?).await?;
    println!("{ANSWER}ready");
    let mut commands = BufReader::new(tokio::io::stdin()).lines();
    while let Some(command) = commands.next_line().await? {
        let answer = match command.split_whitespace().collect::<Vec<_>>()[..] {
            ["price", product] => priced(product.parse()?).await?,
            ["invalidations"] => price_stats().invalidations.to_string(),
            // When (ns since the epoch) this process's L1 applied its n-th invalidation.
            ["await", n] => {
                let n = n.parse()?;
                let deadline = Instant::now() + Duration::from_secs(5);
                while price_stats().invalidations < n && Instant::now() < deadline {
                    tokio::task::yield_now().await;
                }
                match price_stats().invalidations >= n {
                    true => unix_nanos().to_string(),
                    false => "timeout".to_owned(),
                }
            }
            _ => format!("unknown command {command:?}"),
        };
        println!("{ANSWER}{answer}");
    }
    tiered::shutdown().await;
    Ok(())
}

/// The leader's handle on the follower process.
struct Follower {
    process: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
}

impl Follower {
    async fn start(url: &str) -> Result<Follower> {
        let mut process = Command::new(std::env::current_exe()?)
            .arg("--follower")
            .env("DATABASE_URL", url)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true) // if the leader fails or panics before `stop`
            .spawn()?;
        let stdin = process.stdin.take().ok_or("no stdin")?;
        let stdout = BufReader::new(process.stdout.take().ok_or("no stdout")?).lines();
        let mut follower = Follower {
            process,
            stdin,
            stdout,
        };
        follower.answer().await?; // "ready": it has installed and is listening
        Ok(follower)
    }

    async fn send(&mut self, command: &str) -> Result<()> {
        self.stdin.write_all(format!("{command}\n").as_bytes()).await?;
        self.stdin.flush().await?;
        Ok(())
    }

    async fn answer(&mut self) -> Result<String> {
        while let Some(line) = self.stdout.next_line().await? {
            if let Some((_, answer)) = line.split_once(ANSWER) {
                return Ok(answer.to_owned());
            }
        }
        Err("the follower exited".into())
    }

    async fn price(&mut self, product: i64) -> Result<String> {
        self.send(&format!("price {product}")).await?;
        self.answer().await
    }

    /// Runs `invalidation` in the leader; returns how many ms after it returned the follower had
    /// applied it to its L1 (negative: before it returned).
    async fn observe(
        &mut self,
        invalidation: impl Future<Output = Result<(), tiered::BackendError>>,
    ) -> Result<f64> {
        self.send("invalidations").await?;
        let seen: u64 = self.answer().await?.parse()?;
        self.send(&format!("await {}", seen + 1)).await?;
        invalidation.await?;
        let returned = unix_nanos();
        let applied: i128 = self.answer().await?.parse()?;
        Ok((applied - returned) as f64 / 1e6)
    }

    /// Closes the follower's stdin, which ends it, and waits for it to exit.
    async fn stop(self) -> Result<()> {
        let Follower {
            mut process, stdin, ..
        } = self;
        drop(stdin);
        let exited = tokio::time::timeout(Duration::from_secs(10), process.wait());
        let status = exited.await.map_err(|_| "the follower did not exit")??;
        println!("\nfollower exited: {status}");
        Ok(())
    }
}

/// A delay in ms relative to an invalidation's return, as words.
fn relative(ms: f64) -> String {
    match ms < 0.0 {
        true => format!("{:.3} ms before", -ms),
        false => format!("{ms:.3} ms after"),
    }
}

fn row(who: &str, what: &str, answer: &str) {
    let line = format!("{who:<9} {what:<38} {answer}");
    println!("{}", line.trim_end());
}

#[tokio::main]
async fn main() -> Result<()> {
    if std::env::args().any(|arg| arg == "--follower") {
        return follower().await;
    }
    let (url, _server) = match std::env::var("DATABASE_URL") {
        Ok(url) => (url, None),
        Err(_) => {
            println!("DATABASE_URL is not set: starting a throwaway PostgreSQL…");
            let server = PgServer::start()?;
            (server.url().to_owned(), Some(server))
        }
    };
    install(&url).await?;
    let create =
        format!("CREATE TABLE IF NOT EXISTS {PRODUCTS} (id bigint PRIMARY KEY, cents bigint NOT NULL)");
    DB.get().expect("connected").batch_execute(&create).await?;
    set_price(1, 1000).await?;
    set_price(2, 2500).await?;
    invalidate_all_price().await?; // forget prices an earlier run left in L2
    let mut follower = Follower::start(&url).await?;
    let pids = (std::process::id(), follower.process.id().ok_or("no follower")?);
    println!(
        "two instances share {TABLE}: the leader (pid {}) and the follower (pid {})\n",
        pids.0, pids.1
    );

    println!("1. Both cache prices read with SQL from {PRODUCTS}:");
    row("leader", "price(1)", &priced(1).await?);
    row("follower", "price(1)", &follower.price(1).await?);
    row("follower", "price(1)", &follower.price(1).await?);
    row("follower", "price(2)", &follower.price(2).await?);

    println!("\n2. The leader changes the truth; the follower keeps its copy until an invalidation:");
    set_price(1, 1200).await?;
    row("leader", "UPDATE: product 1 now costs 12.00", "");
    row("follower", "price(1)", &follower.price(1).await?);
    let delay = follower.observe(invalidate_price(1)).await?;
    let evicted = format!("the follower evicted its copy {} it returned", relative(delay));
    row("leader", "invalidate_price(1)", &evicted);
    row("follower", "price(1)", &follower.price(1).await?);
    row("follower", "price(1)", &follower.price(1).await?);

    println!("\n3. The same for every entry of the function:");
    set_price(1, 1300).await?;
    set_price(2, 2600).await?;
    row("leader", "UPDATE: now 13.00 and 26.00", "");
    let delay = follower.observe(invalidate_all_price()).await?;
    let evicted = format!("the follower evicted its copies {} it returned", relative(delay));
    row("leader", "invalidate_all_price()", &evicted);
    row("follower", "price(1)", &follower.price(1).await?);
    row("follower", "price(2)", &follower.price(2).await?);

    let mut delays = Vec::new();
    for _ in 0..100 {
        delays.push(follower.observe(invalidate_price(1)).await?);
    }
    delays.sort_by(f64::total_cmp);
    println!("\n4. 100 more invalidate_price(1); the follower applied each, relative to its return:");
    println!("   median {}, max {}", relative(delays[50]), relative(delays[99]));

    println!("\n{GUARANTEE}");
    follower.stop().await?;
    tiered::shutdown().await;
    Ok(())
}
