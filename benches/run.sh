#!/usr/bin/env bash
# Runs every benchmark once, then rewrites the figures in BENCHMARKS.md and BENCHMARKS.png
# from that run. Needs what the tests need (PostgreSQL's server binaries, and pgbench) and
# redis-server (installed from Debian's packages when missing); starts its own throwaway
# servers unless DATABASE_URL names one (many_processes always starts its own). Took 25
# minutes on 2 cores with the build, 16 of them in large_l2 (a 10M-row table and ten sweeps
# of 1M rows).
set -euo pipefail
cd "$(dirname "$0")/.."

out="$PWD/target/bench-run"
rm -rf "$out"
mkdir -p "$out"
export CRITERION_HOME="$out/criterion" TIERED_BENCH_RESULTS="$out"
timing=(--warm-up-time 1 --measurement-time 3)

if ! command -v redis-server >/dev/null; then
    sudo=$([ "$(id -u)" = 0 ] || echo sudo)
    $sudo apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server
fi

cargo bench -p tiered-benches --no-run
cargo bench -p tiered-benches --bench l1_hit -- "${timing[@]}"
cargo bench -p tiered-benches --bench l2
cargo bench -p tiered-benches --bench footprint
cargo bench -p tiered-benches --bench hit_ratio
cargo bench -p tiered-benches --bench contended
cargo bench -p tiered-benches --bench against_redis
cargo bench -p tiered-benches --bench many_processes
cargo bench -p tiered-benches --bench large_l2

python3 -c 'import matplotlib' 2>/dev/null || python3 -m pip install --quiet matplotlib
python3 benches/report.py "$out"
