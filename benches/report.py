#!/usr/bin/env python3
"""Turns one run of the benchmarks (benches/run.sh) into the figures of BENCHMARKS.md and
the chart BENCHMARKS.png.

Reads criterion's medians from <run>/criterion/<group>/<bench>/new/estimates.json and the
other benchmarks' figures from <run>/*.json, then replaces what lies between the two markers of
BENCHMARKS.md; the prose around them is left as it is.

Usage: python3 benches/report.py <run directory>
"""

import json
import os
import platform
import re
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCUMENT = ROOT / "BENCHMARKS.md"
CHART = ROOT / "BENCHMARKS.png"
BEGIN, END = "<!-- figures:begin -->", "<!-- figures:end -->"
# Timed by benches/l2.rs itself, call by call against their baselines.
L2_LATENCY_GROUPS = ("l2_hit", "miss_path")

# What each store is called in the tables.
IMPLEMENTATIONS = {
    "tiered": "`#[tiered_cached]`",
    "quick_cache": "by hand on `quick_cache::sync::Cache` (the L1's store)",
    "mini_moka": "by hand on `mini_moka::sync::Cache`",
    "mini_moka_foldhash": "by hand on `mini_moka::sync::Cache` + foldhash",
    "moka_future": "by hand on `moka::future::Cache`",
    "cached": "`cached`'s `#[cached(max_size = 10_000)]`",
}


class Run:
    def __init__(self, directory):
        self.directory = Path(directory)

    def median_ns(self, group, bench):
        """Criterion's median, or for the L2 groups the median of l2.rs's own alternating timing."""
        if group in L2_LATENCY_GROUPS:
            return self.figures("l2_latency")[group]["median_ns"][bench]
        path = self.directory / "criterion" / group / bench / "new" / "estimates.json"
        return json.loads(path.read_text())["median"]["point_estimate"]

    def finished(self):
        """When the last benchmark of the run wrote its figures."""
        return max(path.stat().st_mtime for path in self.directory.glob("*.json"))

    def figures(self, name):
        return json.loads((self.directory / f"{name}.json").read_text())


def duration(ns):
    if ns >= 1_000_000:
        return f"{ns / 1_000_000:.2f} ms"
    if ns >= 1_000:
        return f"{ns / 1_000:.1f} µs"
    return f"{ns:.1f} ns"


def verdict(ratio, limit, at_most=True):
    met = ratio <= limit if at_most else ratio >= limit
    return "met" if met else "**missed**"


def faster(ratio):
    """The verdict on "faster than": within 3 % either way is a tie, not a win."""
    if abs(ratio - 1) <= 0.03:
        return "tie (±3 %)"
    return "met" if ratio < 1 else "**missed**"


def command(*args):
    try:
        return subprocess.run(args, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def postgres_version():
    binaries = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"))
    return command(str(binaries[-1]), "--version") if binaries else command("postgres", "--version")


def machine(run):
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = re.search(r"model name\s*:\s*(.*)", cpuinfo)
    memory = re.search(r"MemTotal:\s*(\d+) kB", Path("/proc/meminfo").read_text())
    return [
        f"- CPU: {model.group(1) if model else platform.processor()}, {os.cpu_count()} cores "
        f"({platform.machine()}), {int(memory.group(1)) / 1024 / 1024:.0f} GiB",
        f"- OS: {platform.system()} {platform.release()}",
        f"- {command('rustc', '--version')}, release profile (`cargo bench`)",
        f"- {postgres_version()} on loopback (throwaway cluster, fsync off)",
        f"- run {datetime.fromtimestamp(run.finished(), timezone.utc):%Y-%m-%d %H:%M} UTC",
        "- load average at its end (1, 5, 15 min): " + ", ".join(f"{load:.1f}" for load in os.getloadavg())
        + f" on {os.cpu_count()} cores: other work shares this machine",
    ]


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines


def targets(run):
    """The issue's targets, each with its figure, its baseline and the ratio between them."""
    rows = []
    for group, key in [("l1_hit_u64", "u64"), ("l1_hit_string", "String"), ("l1_hit_three_args", "3 arguments")]:
        tiered = run.median_ns(group, "tiered")
        by_hand = run.median_ns(group, "quick_cache")
        cached = run.median_ns(group, "cached")
        rows.append([f"L1 hit, {key} key", duration(tiered), "by hand, same store", duration(by_hand),
                     f"{tiered / by_hand:.2f}×", "≤ 1.3×", verdict(tiered / by_hand, 1.3)])
        rows.append([f"L1 hit, {key} key", duration(tiered), "`#[cached]`", duration(cached),
                     f"{tiered / cached:.2f}×", "< 1×", faster(tiered / cached)])
    newtype = run.median_ns("l1_hit_newtype", "tiered_user_id")
    plain = run.median_ns("l1_hit_newtype", "tiered_u64")
    rows.append(["L1 hit, `UserId(u64)` key", duration(newtype), "`u64` key, same run", duration(plain),
                 f"{newtype / plain:.2f}×", "≤ 1.1×", verdict(newtype / plain, 1.1)])
    contended = run.figures("contended")
    rows.append([f"L1 hit, {contended['threads']} threads (median of {contended['rounds']} alternating rounds)",
                 duration(contended["tiered_ns"]), "by hand, same store, same rounds",
                 duration(contended["quick_cache_ns"]), f"{contended['ratio_median']:.2f}×", "≤ 1.3×",
                 verdict(contended["ratio_median"], 1.3)])
    tiered = run.median_ns("l1_hit_u64_contended", "tiered")
    cached = run.median_ns("l1_hit_u64_contended", "cached")
    rows.append(["L1 hit, 2 threads", duration(tiered), "`#[cached]`, 2 threads", duration(cached),
                 f"{tiered / cached:.2f}×", "≤ 0.5×", verdict(tiered / cached, 0.5)])
    allocations = run.figures("footprint")["allocations"]
    for group, argument in [("l1_hit_u64", 0), ("l1_hit_string", allocations["string_argument"]),
                            ("l1_hit_three_args", 0)]:
        extra = allocations["per_hit"][f"{group}/tiered"] - allocations["value_clone"] - argument
        rows.append([f"allocations per L1 hit beyond the clone ({group.removeprefix('l1_hit_')})",
                     f"{extra:.2f}", "value clone", f"{allocations['value_clone']:.0f}", "—", "0",
                     "met" if extra <= 0.001 else "**missed**"])
    tiered = run.median_ns("l2_hit", "tiered")
    raw = run.median_ns("l2_hit", "raw_select")
    rows.append(["L2 hit", duration(tiered), "raw prepared `SELECT`, same pool", duration(raw),
                 f"{tiered / raw:.2f}×", "≤ 1.15×", verdict(tiered / raw, 1.15)])
    throughput = run.figures("l2_throughput")
    hits = throughput["pool"]["tiered_l2_hits_per_second"]
    tps = throughput["pgbench"]["tps"]
    rows.append([f"L2 hits/s, {throughput['pool']['tasks']} tasks", f"{hits:,.0f}/s",
                 f"`pgbench -S -M prepared -c {throughput['pgbench']['clients']}`", f"{tps:,.0f}/s",
                 f"{hits / tps:.2f}×", "≥ 0.8×", verdict(hits / tps, 0.8, at_most=False)])
    floor = run.median_ns("miss_path", "body_and_raw_select")
    behind = run.median_ns("miss_path", "write_behind")
    rows.append(["miss, `write = \"behind\"`", duration(behind), "body, then raw `SELECT`", duration(floor),
                 f"{behind / floor:.2f}×", "≤ 1.05×", verdict(behind / floor, 1.05)])
    rows += scale_targets(run)
    return table(["figure", "tiered", "baseline", "baseline's", "ratio", "target", ""], rows)


def sweep_ratios(sweeps):
    return [sweep["sweeping"]["p99_ns"] / sweep["quiet"]["p99_ns"] for sweep in sweeps]


def median(values):
    return sorted(values)[len(values) // 2]


def scale_targets(run):
    """The targets of issue 14: a large L2, many processes, against Redis."""
    rows = []
    large = run.figures("large_l2_hit")
    big, small = large["large"]["median_ns"]["tiered"], large["small"]["median_ns"]["tiered"]
    rows.append([f"L2 hit, {large['large_rows']:,} rows", duration(big), f"{large['small_rows']:,} rows",
                 duration(small), f"{big / small:.2f}×", "≤ 1.2×", verdict(big / small, 1.2)])
    sweeps = run.figures("large_l2_sweeps")["sweeps"]
    if sweeps:
        ratios = sweep_ratios(sweeps)
        during = median([sweep["sweeping"]["p99_ns"] for sweep in sweeps])
        quiet = median([sweep["quiet"]["p99_ns"] for sweep in sweeps])
        rows.append([f"p99 of 64 readers while 1M expired rows are swept (median of {len(sweeps)} sweeps)",
                     duration(during), "p99 just before each sweep", duration(quiet),
                     f"{median(ratios):.2f}× (worst {max(ratios):.2f}×)", "≤ 2×", verdict(median(ratios), 2)])
    steps = run.figures("many_processes")["steps"]
    last = steps[-1]
    rows.append([f"invalidation seen by all {last['listeners']} other processes, median",
                 f"{last['all_evicted']['median_ms']:.2f} ms", "goal", "5 ms", "—", "< 5 ms",
                 "met" if last["all_evicted"]["median_ms"] < 5 else "**missed**"])
    rows.append([f"invalidation seen by all {last['listeners']} other processes, max",
                 f"{last['all_evicted']['max_ms']:.1f} ms", "goal", "100 ms", "—", "< 100 ms",
                 "met" if last["all_evicted"]["max_ms"] < 100 else "**missed**"])
    workload = run.figures("redis_workload")["median"]
    for half, when in [("cold", "from empty caches"), ("warm", "caches filled")]:
        tiered, cached = workload["tiered"][half]["mean_ns"], workload["cached_redis"][half]["mean_ns"]
        rows.append([f"workload mean per call, {when}", duration(tiered), "`cached` with Redis", duration(cached),
                     f"{tiered / cached:.2f}×", "≤ 0.5×", verdict(tiered / cached, 0.5)])
        ours, theirs = beyond_body(workload["tiered"][half]), beyond_body(workload["cached_redis"][half])
        rows.append([f"workload mean per call beyond the body, {when}", duration(ours), "`cached` with Redis",
                     duration(theirs), f"{ours / theirs:.2f}×", "(≤ 0.5×)", verdict(ours / theirs, 0.5)])
    return rows


def latencies(run):
    groups = [
        ("l1_hit_u64", "L1 hit, `u64` key, one thread"),
        ("l1_hit_string", "L1 hit, `String` key, one thread (the caller's `String` clone included everywhere)"),
        ("l1_hit_three_args", "L1 hit, `(u64, u32, u64)` key, one thread"),
        ("l1_hit_u64_contended", "L1 hit, `u64` key, 2 threads: wall time per hit"),
    ]
    rows = []
    for group, title in groups:
        tiered = run.median_ns(group, "tiered")
        for bench, name in IMPLEMENTATIONS.items():
            path = run.directory / "criterion" / group / bench
            if path.exists():
                ns = run.median_ns(group, bench)
                rows.append([title, name, duration(ns), f"{tiered / ns:.2f}×"])
    for group, bench, name in [("l1_hit_u64", "value_clone", "the value's clone alone"),
                               ("l1_hit_string", "argument_clone", "the `String` argument's clone alone")]:
        rows.append(["reference", name, duration(run.median_ns(group, bench)), "—"])
    tiered = run.median_ns("l2_hit", "tiered")
    for bench, name in [("tiered", "`#[tiered_cached(l1_capacity = 1)]`, L1 missed"),
                        ("raw_select", "raw prepared `SELECT value … WHERE id = $1`, same pool")]:
        rows.append(["L2 hit", name, duration(run.median_ns("l2_hit", bench)),
                     f"{tiered / run.median_ns('l2_hit', bench):.2f}×"])
    body = run.median_ns("miss_path", "body_alone")
    for bench, name in [("body_alone", "the body alone (spins 100 µs)"),
                        ("body_and_raw_select", "the body, then the raw `SELECT` (no cache)"),
                        ("write_through", "`write = \"through\"`"), ("write_behind", "`write = \"behind\"`")]:
        ns = run.median_ns("miss_path", bench)
        rows.append(["miss (fresh key, both tiers miss)", name, duration(ns), f"body + {duration(ns - body)}"])
    return table(["benchmark", "implementation", "median", "tiered ÷ this"], rows)


def stores(run):
    ratios = run.figures("hit_ratio")
    rows = []
    for bench, ratio_key in [("tiered", "tiered"), ("quick_cache", "quick_cache"), ("mini_moka", None),
                             ("mini_moka_foldhash", "mini_moka"), ("moka_future", None), ("cached", "cached_lru")]:
        single = run.median_ns("l1_hit_u64", bench)
        contended = run.median_ns("l1_hit_u64_contended", bench)
        hit_ratio = f"{ratios[ratio_key]:.1%}" if ratio_key else "(as above)"
        rows.append([IMPLEMENTATIONS[bench], duration(single), duration(contended), hit_ratio])
    lines = table(["store", "hit, 1 thread", "hit, 2 threads (wall/hit)",
                   f"hit ratio, Zipf({ratios['exponent']}) over {ratios['keys']:,} keys, "
                   f"{ratios['capacity']:,} entries"], rows)
    return lines


def footprint(run):
    figures = run.figures("footprint")
    allocations = figures["allocations"]
    rows = [[name, f"{count:.2f}"] for name, count in sorted(allocations["per_hit"].items())]
    rows += [["the value's clone alone", f"{allocations['value_clone']:.0f}"],
             ["the `String` argument's clone alone", f"{allocations['string_argument']:.0f}"]]
    lines = table(["allocations per call, hits only", "count"], rows)
    memory = figures["memory"]
    rows = [[name, f"{memory[key]['bytes_per_entry']:.0f} B", f"{memory[key]['resident']:,}"]
            for key, name in [("tiered", "`#[tiered_cached(l1_capacity = 100_000)]` (L1 of quick_cache)"),
                              ("quick_cache", "raw `quick_cache::sync::Cache<u64, Profile>`"),
                              ("mini_moka", "raw `mini_moka::sync::Cache<u64, Profile>`"),
                              ("value", "the values alone (`Vec<Profile>`)")]]
    lines += [""] + table([f"heap per entry, {memory['entries']:,} entries inserted", "bytes", "resident"], rows)
    return lines


def throughput(run):
    figures = run.figures("l2_throughput")
    pool, pgbench = figures["pool"], figures["pgbench"]
    rows = [
        [f"`#[tiered_cached]` L2 hits, {pool['tasks']} tasks, pool of {pool['connections']}",
         f"{pool['tiered_l2_hits_per_second']:,.0f}", f"backend errors: {pool['tiered_backend_errors']}"],
        [f"raw prepared `SELECT`, same tasks and pool", f"{pool['raw_selects_per_second']:,.0f}", ""],
        [f"`pgbench -S -M prepared -c {pgbench['clients']} -j {pgbench['threads']}`", f"{pgbench['tps']:,.0f}", ""],
    ]
    return table([f"throughput, {pool['seconds']} s each", "per second", ""], rows)


def large_l2(run):
    hit = run.figures("large_l2_hit")
    rows = []
    for size in ("small", "large"):
        medians = hit[size]["median_ns"]
        rows.append([f"{hit[size + '_rows']:,}", duration(medians["tiered"]), duration(medians["raw_select"]),
                     f"{medians['tiered'] / medians['raw_select']:.2f}×",
                     f"{hit[size + '_sizes']['table_bytes'] / 2**20:,.0f} MiB",
                     f"{hit[size + '_sizes']['index_bytes'] / 2**20:,.0f} MiB"])
    ratio = lambda name: hit["large"]["median_ns"][name] / hit["small"]["median_ns"][name]
    rows.append(["large ÷ small", f"{ratio('tiered'):.2f}×", f"{ratio('raw_select'):.2f}×", "", "", ""])
    lines = table(["rows in the table", "L2 hit (median of slice medians)", "raw prepared `SELECT`",
                   "tiered ÷ raw", "table", "indexes"], rows)
    lines += ["", f"Each table's process made {hit['large']['slices']} slices of "
              f"{hit['large']['rounds_per_slice']:,} rounds, the two taking turns. Writing the "
              f"{hit['large_rows']:,} rows took {hit['grow_seconds']:.0f} s."]
    figures = run.figures("large_l2_sweeps")
    if figures["sweeps"]:
        rows = []
        for number, sweep in enumerate(figures["sweeps"], 1):
            rows.append([number, duration(sweep["quiet"]["p99_ns"]), duration(sweep["sweeping"]["p99_ns"]),
                         f"{sweep['sweeping']['p99_ns'] / sweep['quiet']['p99_ns']:.2f}×",
                         duration(sweep["quiet"]["p50_ns"]), duration(sweep["sweeping"]["p50_ns"]),
                         f"{sweep['write_seconds']:.0f} s", f"{sweep['sweep_seconds']:.0f} s",
                         f"{sweep['after']['table_bytes'] / 2**20:,.0f} MiB",
                         f"{sweep['after']['index_bytes'] / 2**20:,.0f} MiB"])
        lines += [""] + table(["sweep", "p99, 5 s before", "p99 during", "ratio", "p50 before", "p50 during",
                               "1M expired rows written", "swept in", "table after", "indexes after"], rows)
        lines += ["", f"{figures['readers']} tasks reading L2 hits throughout; backend errors: "
                  f"{figures['backend_errors']}."]
    return lines


def against_redis(run):
    hit = run.figures("redis_l2_hit")["median_ns"]
    names = {"tiered": "`#[tiered_cached(l1_capacity = 1)]`, L1 missed (PostgreSQL)",
             "raw_get": "raw Redis `GET` of the same bytes (one multiplexed connection)",
             "cached_redis": "`cached`'s `AsyncRedisCache` behind `#[concurrent_cached]`",
             "raw_select": "raw prepared `SELECT`, same pool"}
    rows = [[names[name], duration(hit[name]), f"{hit['tiered'] / hit[name]:.2f}×"] for name in names]
    lines = table(["L2 hit, timed call by call in turn", "median", "tiered ÷ this"], rows)
    workload = run.figures("redis_workload")
    names = {"tiered": "`#[tiered_cached(l1_capacity = 10_000)]` (PostgreSQL L2)",
             "tiered_behind": "the same, `write = \"behind\"`",
             "cached_redis": "`cached`'s Redis store (no L1)",
             "moka_redis": "by hand: moka (10,000) in front of Redis"}
    rows = []
    for half, when in [("cold", "from empty caches"), ("warm", "caches filled")]:
        ours = workload["median"]["tiered"][half]
        for name, label in names.items():
            if name not in workload["median"]:
                continue
            figures = workload["median"][name][half]
            tiers = (f"{figures['l1_hits']:,.0f} / {figures['l2_hits']:,.0f}"
                     if name.startswith("tiered") and "l1_hits" in figures else "")
            rows.append([when, label, duration(figures["mean_ns"]), duration(figures["p99_ns"]),
                         f"{figures['origin_calls']:,.0f} of {figures['calls']:,.0f}", tiers,
                         duration(figures["origin_ns_per_call"]), duration(beyond_body(figures)),
                         f"{ours['mean_ns'] / figures['mean_ns']:.2f}×",
                         f"{beyond_body(ours) / beyond_body(figures):.2f}×"])
    lines += [""] + table([f"workload: {workload['processes']} processes × {workload['tasks_per_process']} tasks, "
                           f"Zipf({workload['exponent']}) over {workload['keys']:,} keys, body "
                           f"{workload['body_ms']} ms (median of {workload['repeats']} runs)",
                           "implementation", "mean per call", "p99", "body calls", "tiered's L1 / L2 hits",
                           "body's time per call",
                           "mean beyond the body", "tiered ÷ this, mean", "tiered ÷ this, beyond the body"], rows)
    return lines


def beyond_body(figures):
    """The mean per call less the body's own time per call: what the caching costs."""
    return figures["mean_ns"] - figures["origin_ns_per_call"]


def many_processes(run):
    figures = run.figures("many_processes")
    rows = [[step["listeners"], f"{step['all_evicted']['median_ms']:.2f} ms", f"{step['all_evicted']['p90_ms']:.2f} ms",
             f"{step['all_evicted']['max_ms']:.1f} ms", f"{step['each_evicted']['median_ms']:.2f} ms",
             f"{step['call']['median_ms']:.2f} ms", f"{step['call']['p90_ms']:.2f} ms", f"{step['call']['max_ms']:.1f} ms"]
            for step in figures["steps"]]
    return table(["listening processes", "all evicted: median", "p90", "max", "each process: median",
                  "invalidating call: median", "p90", "max"], rows)


def chart(run):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = {"quick_cache": "by hand, quick_cache", "cached": "#[cached]", "mini_moka": "by hand, mini-moka",
              "mini_moka_foldhash": "by hand, mini-moka+foldhash", "moka_future": "by hand, moka future",
              "value_clone": "value clone alone", "raw_select": "raw prepared SELECT",
              "write_behind": "tiered, write behind", "write_through": "tiered, write through",
              "body_alone": "body alone", "body_and_raw_select": "body, then raw SELECT",
              "tiered": "tiered"}
    # Each panel: title, unit, and (label, value, is tiered's) bars.
    panels = []
    for title, group, benches in [
        ("L1 hit, u64 key, 1 thread", "l1_hit_u64",
         ["tiered", "quick_cache", "cached", "mini_moka_foldhash", "mini_moka", "moka_future", "value_clone"]),
        ("L1 hit, u64 key, 2 threads (wall/hit)", "l1_hit_u64_contended",
         ["tiered", "quick_cache", "cached", "mini_moka_foldhash", "mini_moka", "moka_future"]),
        ("L2 hit", "l2_hit", ["tiered", "raw_select"]),
        ("miss path", "miss_path", ["write_behind", "write_through", "body_and_raw_select", "body_alone"]),
    ]:
        micro = group in ("l2_hit", "miss_path")
        panels.append((title, "µs (median)" if micro else "ns (median)",
                       [(labels[bench], run.median_ns(group, bench) / (1000 if micro else 1),
                         bench.startswith(("tiered", "write_"))) for bench in benches]))
    large = run.figures("large_l2_hit")
    panels.append(("L2 hit by table size", "µs (median)",
                   [(f"{name}, {large[size + '_rows']:,} rows", large[size]["median_ns"][bench] / 1000, bench == "tiered")
                    for bench, name in [("tiered", "tiered"), ("raw_select", "raw SELECT")]
                    for size in ("small", "large")]))
    hit = run.figures("redis_l2_hit")["median_ns"]
    panels.append(("L2 hit: PostgreSQL against Redis", "µs (median)",
                   [(name, hit[bench] / 1000, bench == "tiered")
                    for bench, name in [("tiered", "tiered (PostgreSQL)"), ("raw_select", "raw SELECT"),
                                        ("cached_redis", "cached's Redis store"), ("raw_get", "raw Redis GET")]]))
    workload = run.figures("redis_workload")["median"]
    panels.append(("workload, 2 processes, Zipf(0.99), 1 ms body: mean per call", "ms",
                   [(f"{name}, {when}", workload[bench][half]["mean_ns"] / 1e6, bench == "tiered")
                    for half, when in [("warm", "caches filled"), ("cold", "from empty")]
                    for bench, name in [("tiered", "tiered (L1 + PostgreSQL)"),
                                        ("tiered_behind", "tiered, write behind"), ("cached_redis", "cached + Redis"),
                                        ("moka_redis", "moka + Redis by hand")]
                    if bench in workload]))
    steps = run.figures("many_processes")["steps"]
    panels.append(("invalidation until all listening processes evicted", "ms",
                   [(f"{step['listeners']} processes, {which}", step["all_evicted"][key], True)
                    for step in steps for which, key in [("median", "median_ms"), ("max", "max_ms")]]))

    heights = [max(1.2, 0.28 * len(bars) + 0.6) for _, _, bars in panels]
    figure, axes = plt.subplots(len(panels), 1, figsize=(8, sum(heights) + 0.6), constrained_layout=True,
                                gridspec_kw={"height_ratios": heights})
    for axis, (title, unit, bars) in zip(axes, panels):
        values = [value for _, value, _ in bars]
        colours = ["#d95f02" if ours else "#7570b3" for _, _, ours in bars]
        drawn = axis.barh([label for label, _, _ in bars], values, color=colours)
        axis.bar_label(drawn, fmt="%.3g", padding=3, fontsize=8)
        axis.invert_yaxis()
        axis.set_title(title, fontsize=10, loc="left")
        axis.set_xlabel(unit, fontsize=8)
        axis.set_xlim(0, max(values) * 1.18)
        axis.tick_params(labelsize=8)
    figure.suptitle("tiered vs the baselines, one run (lower is better)", fontsize=11)
    figure.savefig(CHART, dpi=100)


def main():
    run = Run(sys.argv[1])
    sections = [
        "### Machine", *machine(run), "",
        "### Targets", *targets(run), "",
        "### Latency, every figure", *latencies(run), "",
        "### The L1 store", *stores(run), "",
        "### L2 throughput", *throughput(run), "",
        "### Heap", *footprint(run), "",
        "### A large L2", *large_l2(run), "",
        "### Against Redis", *against_redis(run), "",
        "### Many processes: invalidation (100 per step)", *many_processes(run), "",
        "![tiered vs the baselines](BENCHMARKS.png)",
    ]
    document = DOCUMENT.read_text()
    start, end = document.index(BEGIN) + len(BEGIN), document.index(END)
    DOCUMENT.write_text(document[:start] + "\n" + "\n".join(sections) + "\n" + document[end:])
    chart(run)
    print(f"wrote {DOCUMENT.name} and {CHART.name}")


if __name__ == "__main__":
    main()
