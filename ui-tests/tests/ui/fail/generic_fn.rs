use std::fmt::Display;

use tiered::tiered_cached;

#[tiered_cached]
async fn render<'a, T: Display, const N: usize>(value: &'a T) -> String {
    format!("{value:N$}")
}

fn main() {}
