use tiered::tiered_cached;

#[derive(Debug)]
struct AppError;

#[tiered_cached(hard_timeout = "1s")]
async fn report(id: u64) -> Result<u64, AppError> {
    Ok(id)
}

fn main() {}
