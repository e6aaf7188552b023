use tiered::tiered_cached;

#[derive(Clone)]
struct Profile {
    name: String,
}

#[tiered_cached(backend = "pg")]
async fn profile(id: u64) -> Result<Profile, std::io::Error> {
    Ok(Profile { name: id.to_string() })
}

fn main() {}
