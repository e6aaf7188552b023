// Methods: helpers are associated fns of the same impl; `self` is not part of the key
// unless `key` names it.
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;

use tiered::tiered_cached;

struct Repo {
    tenant: String,
    loads: AtomicUsize,
}

impl Repo {
    #[tiered_cached(backend = "none")]
    async fn user(&self, id: u64) -> Option<String> {
        self.loads.fetch_add(1, SeqCst);
        (id != 0).then(|| format!("user {id}"))
    }

    #[tiered_cached(backend = "none", key = "(&self.tenant, id)")]
    async fn tenant_user(&self, id: u64) -> String {
        self.loads.fetch_add(1, SeqCst);
        format!("{}/{id}", self.tenant)
    }

    #[tiered_cached(backend = "none")]
    async fn bump(&mut self, by: usize) -> usize {
        *self.loads.get_mut() += by;
        by
    }

    #[tiered_cached]
    async fn shared(self: Arc<Self>, id: u64) -> Result<String, std::fmt::Error> {
        self.loads.fetch_add(1, SeqCst);
        Ok(format!("shared {id}"))
    }

    async fn forget(&self, id: u64) {
        Self::invalidate_user(id).await.unwrap();
        self.invalidate_tenant_user(id).await.unwrap();
    }
}

struct Other;

impl Other {
    // Same method name as `Repo::user`: a separate cache, named after `Other`.
    #[tiered_cached(backend = "none")]
    async fn user(&self, id: u64) -> Option<String> {
        Some(format!("other {id}"))
    }
}

#[tokio::main]
async fn main() {
    let repo = Repo {
        tenant: "acme".into(),
        loads: AtomicUsize::new(0),
    };
    let loads = || repo.loads.load(SeqCst);
    assert_eq!(repo.user(1).await.as_deref(), Some("user 1"));
    assert_eq!(repo.user(1).await.as_deref(), Some("user 1"));
    assert_eq!(Other.user(1).await.as_deref(), Some("other 1"));
    assert_eq!(loads(), 1);

    let other_repo = Repo {
        tenant: "globex".into(),
        loads: AtomicUsize::new(0),
    };
    assert_eq!(
        other_repo.user(1).await.as_deref(),
        Some("user 1"),
        "`self` is not part of the key"
    );
    assert_eq!(other_repo.loads.load(SeqCst), 0);

    assert_eq!(repo.tenant_user(1).await, "acme/1");
    assert_eq!(
        other_repo.tenant_user(1).await,
        "globex/1",
        "this key names `self`"
    );

    repo.forget(1).await;
    Repo::invalidate_all_user().await.unwrap();
    let before = loads();
    repo.user(1).await;
    repo.tenant_user(1).await;
    assert_eq!(loads(), before + 2);

    assert_eq!(repo.refresh_user(2).await.as_deref(), Some("user 2"));
    repo.user(2).await;
    assert_eq!(loads(), before + 3, "refresh stored its result");

    let mut repo = repo;
    assert_eq!(repo.bump(5).await, 5);
    assert_eq!(repo.bump(5).await, 5);
    assert_eq!(repo.loads.load(SeqCst), before + 8, "the second bump is cached");
    repo.refresh_bump(1).await;
    Repo::invalidate_bump(1).await.unwrap();

    let repo = Arc::new(repo);
    assert_eq!(repo.clone().shared(4).await.unwrap(), "shared 4");
    assert_eq!(repo.clone().refresh_shared(4).await.unwrap(), "shared 4");
    Repo::invalidate_shared(4).await.unwrap();

    let names: Vec<String> = tiered::stats().into_keys().collect();
    assert!(names.iter().any(|name| name.ends_with("Repo::user")), "{names:?}");
    assert!(
        names.iter().any(|name| name.ends_with("Other::user")),
        "{names:?}"
    );
}
