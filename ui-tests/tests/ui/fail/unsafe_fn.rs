use tiered::tiered_cached;

#[tiered_cached]
async unsafe fn f(id: u64) -> u64 {
    id
}

fn main() {}
