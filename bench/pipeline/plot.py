#!/usr/bin/env python3
"""Plots target/bench-pipeline/results.json (written by the pipeline-bench driver):
throughput and publish → alert latency against the offered rate, ProAct next to the Python design.
Usage: plot.py results.json out.png"""

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(src, dst):
    r = json.load(open(src))
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    # One line per system: each ProAct variant (`proact-json-single`, …) and the Python design.
    every = (r.get("proact") or []) + (r.get("python") or [])
    systems = sorted({s["system"] for s in every}, key=lambda n: (n == "python", n))
    palette = ["tab:blue", "tab:green", "tab:purple", "tab:red", "tab:brown", "tab:cyan"]
    for i, system in enumerate(systems):
        steps = sorted([s for s in every if s["system"] == system], key=lambda s: s["rate"])
        c = "tab:orange" if system == "python" else palette[i % len(palette)]
        label = "Python design" if system == "python" else system.replace("proact-", "ProAct ")
        # Throughput: rows stored over the publishing time plus the time it took to drain.
        for s in steps:
            eff = s["rows"] / (s["secs"] + s["drain_secs"])
            left.scatter(s["rate"], eff, color=c, marker="o", facecolors=c if s["sustained"] else "none", zorder=3)
        xs = [s["rate"] for s in steps]
        left.plot(xs, [s["rows"] / (s["secs"] + s["drain_secs"]) for s in steps], color=c, label=label, alpha=0.6)
        lat = [s for s in steps if s.get("latency_p50_ms") is not None]
        right.plot([s["rate"] for s in lat], [s["latency_p50_ms"] for s in lat], "o-", color=c, label=f"{label} p50")
        right.plot([s["rate"] for s in lat], [s["latency_p99_ms"] for s in lat], "s--", color=c, label=f"{label} p99")
    top = max([s["rate"] for k in ("proact", "python") for s in r.get(k) or []] + [1000])
    left.plot([100, top], [100, top], ":", color="grey", label="stored = offered")
    left.axhline(35_000, color="tab:red", lw=0.8, ls="--", label="target 35,000/s single")
    left.axhline(200_000, color="tab:red", lw=0.8, ls=":", label="target 200,000/s batched")
    left.set(xscale="log", yscale="log", xlabel="offered rate (readings/s, QoS 1)", ylabel="stored rows / s (publish + drain time)",
             title="Throughput (filled: sustained, zero loss)")
    left.legend(fontsize=8)
    right.axhline(20, color="tab:red", lw=0.8, ls="--", label="target p99 20 ms")
    right.set(xscale="log", yscale="log", xlabel="offered rate (readings/s)", ylabel="publish → WebSocket alert (ms)",
              title="Alert latency")
    right.legend(fontsize=8)
    m = r["machine"]
    fig.suptitle(f"Whole pipeline, {m['nproc']} cores {m['cpu']}, {m['date'][:10]}", fontsize=10)
    fig.tight_layout()
    fig.savefig(dst, dpi=110)
    print(f"plot: {dst}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
