use tiered::tiered_cached;

#[tiered_cached(backend = "none")]
async fn f<'a>(name: &'a str) -> Result<&'a str, std::io::Error> {
    Ok(name)
}

fn main() {}
