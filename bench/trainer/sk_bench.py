"""scikit-learn side of the trainer benchmark: same CSVs, trees, depth and threads as Rust."""
import argparse, json, time

import numpy as np
import pandas as pd
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import f1_score, roc_auc_score

p = argparse.ArgumentParser()
p.add_argument("--train"); p.add_argument("--test")
p.add_argument("--trees", type=int); p.add_argument("--depth", type=int); p.add_argument("--threads", type=int)
p.add_argument("--repeat", type=int, default=3)
a = p.parse_args()
tr, te = pd.read_csv(a.train), pd.read_csv(a.test)
xtr, ytr = tr.drop(columns="label").to_numpy(np.float64), tr["label"].to_numpy()
xte, yte = te.drop(columns="label").to_numpy(np.float64), te["label"].to_numpy()

fit_s, rf = float("inf"), None
for _ in range(a.repeat):
    m = RandomForestClassifier(n_estimators=a.trees, max_depth=a.depth, n_jobs=a.threads, random_state=42)
    t0 = time.perf_counter(); m.fit(xtr, ytr); fit_s = min(fit_s, time.perf_counter() - t0); rf = m
batch_s = float("inf")
for _ in range(5):
    t0 = time.perf_counter(); proba = rf.predict_proba(xte)[:, 1]; batch_s = min(batch_s, time.perf_counter() - t0)
# Single event: one row per call, as a detector would score it (a subset: each call is slow).
rf.set_params(n_jobs=1)
lat = []
for r in range(min(1000, len(xte))):
    row = xte[r:r + 1]
    t0 = time.perf_counter(); rf.predict_proba(row); lat.append((time.perf_counter() - t0) * 1e6)
lat.sort()
print(json.dumps({
    "impl": "sklearn", "fit_s": fit_s, "f1": f1_score(yte, proba >= 0.5), "roc_auc": roc_auc_score(yte, proba),
    "batch_rows_per_s": len(yte) / batch_s, "single_p50_us": lat[len(lat) // 2], "single_p99_us": lat[int(0.99 * (len(lat) - 1))],
    "sklearn_version": __import__("sklearn").__version__,
}))
