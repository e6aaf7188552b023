use tiered::tiered_cached;

#[derive(Debug)]
struct AppError;

#[tiered_cached(on_failure = "error")]
async fn profile(id: u64) -> Result<String, AppError> {
    Ok(id.to_string())
}

fn main() {}
