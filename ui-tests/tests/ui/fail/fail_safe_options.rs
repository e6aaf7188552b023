use tiered::tiered_cached;

#[derive(Debug)]
struct AppError;

impl From<tiered::TimedOut> for AppError {
    fn from(_: tiered::TimedOut) -> Self {
        AppError
    }
}

#[tiered_cached(fail_safe = "1h")]
async fn never_expires(id: u64) -> u64 {
    id
}

#[tiered_cached(ttl = "1m", fail_safe_throttle = "10s")]
async fn throttle_alone(id: u64) -> u64 {
    id
}

#[tiered_cached(ttl = "1m", timeout = "100ms")]
async fn timeout_alone(id: u64) -> Result<u64, AppError> {
    Ok(id)
}

#[tiered_cached(ttl = "1m", fail_safe = "1h", timeout = "2s", hard_timeout = "1s")]
async fn soft_after_hard(id: u64) -> Result<u64, AppError> {
    Ok(id)
}

#[tiered_cached(hard_timeout = "1s")]
async fn hard_timeout_plain(id: u64) -> u64 {
    id
}

fn main() {}
