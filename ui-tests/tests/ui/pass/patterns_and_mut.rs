// Pattern and `mut` arguments: the body keeps them; the cached fn and its helpers take plain
// names, and a pattern argument is keyed as a whole.
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

use tiered::tiered_cached;

#[derive(serde::Serialize)]
struct Point {
    x: i64,
    y: i64,
}

static RUNS: AtomicUsize = AtomicUsize::new(0);

#[tiered_cached(backend = "none")]
async fn area((w, h): (u32, u32), mut scale: u32, Point { x, y }: &Point, _: u8) -> u64 {
    RUNS.fetch_add(1, SeqCst);
    scale += 1;
    u64::from(w * h * scale) + x.unsigned_abs() + y.unsigned_abs()
}

// Raw identifiers: the helpers are `invalidate_type`, `refresh_type`, ...
#[tiered_cached(backend = "none", key = "r#ref")]
async fn r#type(r#ref: u8, _ignored: u8) -> u8 {
    r#ref
}

#[tokio::main]
async fn main() {
    let origin = Point { x: -1, y: 2 };
    assert_eq!(area((2, 3), 1, &origin, 0).await, 15);
    assert_eq!(area((2, 3), 1, &origin, 0).await, 15);
    assert_eq!(RUNS.load(SeqCst), 1);
    assert_eq!(area((3, 2), 1, &origin, 0).await, 15);
    assert_eq!(area((2, 3), 1, &origin, 1).await, 15);
    assert_eq!(RUNS.load(SeqCst), 3, "each pattern argument is part of the key");

    invalidate_area((2, 3), 1, &origin, 0).await.unwrap();
    assert_eq!(refresh_area((2, 3), 2, &origin, 0).await, 21);
    assert_eq!(RUNS.load(SeqCst), 4);

    assert_eq!(r#type(1, 2).await, 1);
    invalidate_type(1, 0).await.unwrap();
    assert_eq!(refresh_type(1, 0).await, 1);
}
