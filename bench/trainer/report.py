"""Merges the benchmark runs into a ratio table (markdown) and results.json."""
import json, sys

runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
results = {}
print("| dataset | implementation | fit s | F1 | ROC AUC | batch rows/s | single p50 µs | single p99 µs |")
print("|---|---|---|---|---|---|---|---|")
for r in runs:
    results.setdefault(r["dataset"], {})["sklearn" if r["impl"] == "sklearn" else r["impl"]] = r
    print(f"| {r['dataset']} | {r['impl']} | {r['fit_s']:.3f} | {r['f1']:.4f} | {r['roc_auc']:.4f} | "
          f"{r['batch_rows_per_s']:,.0f} | {r['single_p50_us']:.1f} | {r['single_p99_us']:.1f} |")
print()
print("| dataset | Rust learner | fit time sk/rust (≥1 wins) | F1 rust − sk (≥ −0.01) | batch rows/s rust/sk (target ≥5) | single p99 µs (target ≤20) |")
print("|---|---|---|---|---|---|")
for ds, d in results.items():
    sk = d.get("sklearn")
    for name, r in d.items():
        if name == "sklearn" or sk is None:
            continue
        print(f"| {ds} | {name} | {sk['fit_s'] / r['fit_s']:.2f}× | {r['f1'] - sk['f1']:+.4f} | "
              f"{r['batch_rows_per_s'] / sk['batch_rows_per_s']:.1f}× | {r['single_p99_us']:.1f} |")
json.dump(results, open(sys.argv[2], "w"), indent=1)
print()
print("Scorer before/after on the same forest in the same run (before = the stored-node walk, "
      "`predict_proba_reference`; after = the quantised form):")
print()
print("| dataset | Rust learner | batch rows/s before → after | rust/sk before → after | single p50 µs before → after | single p99 µs before → after | bit-identical |")
print("|---|---|---|---|---|---|---|")
for ds, d in results.items():
    sk = d.get("sklearn")
    for name, r in d.items():
        if name == "sklearn" or sk is None or "reference_batch_rows_per_s" not in r:
            continue
        b0, b1 = r["reference_batch_rows_per_s"], r["batch_rows_per_s"]
        print(f"| {ds} | {name} | {b0:,.0f} → {b1:,.0f} | {b0 / sk['batch_rows_per_s']:.1f}× → "
              f"{b1 / sk['batch_rows_per_s']:.1f}× | {r['reference_single_p50_us']:.1f} → {r['single_p50_us']:.1f} | "
              f"{r['reference_single_p99_us']:.1f} → {r['single_p99_us']:.1f} | {r['bit_identical_to_reference']} |")
