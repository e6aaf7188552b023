// Tags over the arguments (as references, like `key`), on free fns and methods, with
// `invalidate_tag` and `clear_all` reachable without a database.
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

use tiered::tiered_cached;

static RUNS: AtomicUsize = AtomicUsize::new(0);

#[tiered_cached(backend = "none", tags = "[format!(\"user:{id}\"), String::from(\"profiles\")]")]
async fn profile(id: u64, name: String) -> String {
    RUNS.fetch_add(1, SeqCst);
    format!("{id} {name}")
}

struct Repo;

impl Repo {
    #[tiered_cached(backend = "none", tags = "vec![team.as_str()]")]
    async fn members(&self, team: String) -> usize {
        RUNS.fetch_add(1, SeqCst);
        team.len()
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    profile(1, "a".into()).await;
    profile(1, "a".into()).await;
    Repo.members("core".into()).await;
    assert_eq!(RUNS.load(SeqCst), 2);
    // No L2 is installed: the error says so, and this process's L1 drops the entries anyway.
    assert!(tiered::invalidate_tag("user:1").await.is_err());
    profile(1, "a".into()).await;
    Repo.members("core".into()).await;
    assert_eq!(RUNS.load(SeqCst), 3);
    assert!(tiered::clear_all().await.is_err());
    Repo.members("core".into()).await;
    assert_eq!(RUNS.load(SeqCst), 4);
}
