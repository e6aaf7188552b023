use tiered::tiered_cached;

#[derive(Debug)]
struct AppError;

impl From<tiered::TimedOut> for AppError {
    fn from(_: tiered::TimedOut) -> Self {
        AppError
    }
}

#[tiered_cached(hard_timeout = "1s")]
async fn by_name(name: &str) -> Result<usize, AppError> {
    Ok(name.len())
}

struct Repo;

impl Repo {
    #[tiered_cached(ttl = "1m", eager_refresh = 0.8)]
    async fn count(&self, id: u64) -> u64 {
        id
    }
}

fn main() {}
