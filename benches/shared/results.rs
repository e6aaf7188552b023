//! Figures of the benchmarks that criterion does not time (counts, ratios, throughput), written
//! as JSON for `benches/report.py`, next to criterion's own output.

use std::path::PathBuf;

/// `$TIERED_BENCH_RESULTS`, else `target/bench-results` in the workspace.
fn directory() -> PathBuf {
    std::env::var_os("TIERED_BENCH_RESULTS").map_or_else(
        || PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target/bench-results")),
        PathBuf::from,
    )
}

/// Prints `figures` and writes them to `<directory>/<name>.json`.
pub fn record(name: &str, figures: serde_json::Value) {
    println!("{name}: {figures:#}");
    let directory = directory();
    let path = directory.join(format!("{name}.json"));
    let written = std::fs::create_dir_all(&directory)
        .and_then(|()| std::fs::write(&path, serde_json::to_vec_pretty(&figures).expect("JSON")));
    if let Err(err) = written {
        panic!("cannot write {}: {err}", path.display());
    }
}
