#!/usr/bin/env bash
# Runs every benchmark once, then rewrites the figures in BENCHMARKS.md and BENCHMARKS.png
# from that run. Needs what the tests need (PostgreSQL's server binaries, and pgbench), starts
# its own throwaway server unless DATABASE_URL names one, and takes about 5 minutes on 2 cores
# once built (8 with the build).
set -euo pipefail
cd "$(dirname "$0")/.."

out="$PWD/target/bench-run"
rm -rf "$out"
mkdir -p "$out"
export CRITERION_HOME="$out/criterion" TIERED_BENCH_RESULTS="$out"
timing=(--warm-up-time 1 --measurement-time 3)

cargo bench -p tiered-benches --no-run
cargo bench -p tiered-benches --bench l1_hit -- "${timing[@]}"
cargo bench -p tiered-benches --bench l2
cargo bench -p tiered-benches --bench footprint
cargo bench -p tiered-benches --bench hit_ratio

python3 -c 'import matplotlib' 2>/dev/null || python3 -m pip install --quiet matplotlib
python3 benches/report.py "$out"
