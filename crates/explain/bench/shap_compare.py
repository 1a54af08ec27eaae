#!/usr/bin/env python3
"""Side-by-side TreeSHAP throughput: sidelight-explain vs the `shap` package's C++ TreeSHAP.

Reads the directory written by `cargo run --release -p sidelight-explain --example
shap_export -- DIR` (the ensemble, rows and background of `benches/shap.rs`, our
attributions and our single-thread timings), loads the SAME ensemble into
`shap.TreeExplainer` as a custom tree model, checks that shap predicts it identically and
that both sides' SHAP values agree to 1e-6, times shap on one thread, and prints rows/s
for both sides and the ratio.

Usage: python3 shap_compare.py DIR   (or run shap_compare.sh, which does everything)
Needs: pip install shap numpy
"""

import json
import os
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import shap  # noqa: E402


def read_csv(path):
    rows = []
    with open(path) as f:
        for line in f:
            rows.append([float(c) if c else np.nan for c in line.rstrip("\n").split(",")])
    return np.array(rows, dtype=np.float64)


def shap_model(ens):
    trees = []
    for t in ens["trees"]:
        trees.append(
            {
                "children_left": np.array(t["children_left"], dtype=np.int32),
                "children_right": np.array(t["children_right"], dtype=np.int32),
                "children_default": np.array(t["children_default"], dtype=np.int32),
                # shap wants -2 ("undefined") rather than -1 as the feature of a leaf
                "features": np.array([f if f >= 0 else -2 for f in t["feature"]], dtype=np.int32),
                "thresholds": np.array(t["threshold"], dtype=np.float64),
                "values": np.array(t["value"], dtype=np.float64).reshape(-1, 1),
                "node_sample_weight": np.array(t["cover"], dtype=np.float64),
            }
        )
    return {"trees": trees, "base_offset": ens["base_offset"], "input_dtype": np.float64, "internal_dtype": np.float64}


def our_predict(ens, X):
    out = np.full(len(X), ens["base_offset"])
    for t in ens["trees"]:
        for r, x in enumerate(X):
            n = 0
            while t["children_left"][n] != -1:
                v = x[t["feature"][n]]
                if np.isnan(v):
                    n = t["children_default"][n]
                elif v <= t["threshold"][n]:
                    n = t["children_left"][n]
                else:
                    n = t["children_right"][n]
            out[r] += t["value"][n]
    return out


def timed(fn, X, min_secs=2.0):
    done, start, out = 0, time.perf_counter(), None
    while True:
        res = fn(X)
        if out is None:
            out = res
        done += len(X)
        secs = time.perf_counter() - start
        if secs >= min_secs:
            return done / secs, out


def main():
    d = sys.argv[1]
    ens = json.load(open(os.path.join(d, "ensemble.json")))
    X = read_csv(os.path.join(d, "rows.csv"))
    B = read_csv(os.path.join(d, "background.csv"))
    ours = json.load(open(os.path.join(d, "ours_timing.json")))
    ours_path = read_csv(os.path.join(d, "ours_path.csv"))
    ours_int = read_csv(os.path.join(d, "ours_interventional.csv"))
    model = shap_model(ens)

    # Same routing? (x <= t goes left, NaN goes to children_default.)
    path_expl = shap.TreeExplainer(model, feature_perturbation="tree_path_dependent")
    mine = our_predict(ens, X[:50])
    theirs = path_expl.model.predict(X[:50])
    assert np.max(np.abs(mine - theirs)) < 1e-9, "shap routes rows differently"

    path_rps, path_vals = timed(path_expl.shap_values, X)
    base = float(np.ravel(path_expl.expected_value)[0])
    n_check = 100
    diff_base = abs(base - ours_path[0, 0])
    diff_vals = np.max(np.abs(path_vals[:n_check] - ours_path[:n_check, 1:]))

    int_expl = shap.TreeExplainer(model, data=B, feature_perturbation="interventional")
    Xi = X[: len(ours_int)]
    int_rps, int_vals = timed(int_expl.shap_values, Xi[:100])
    int_base = float(np.ravel(int_expl.expected_value)[0])
    diff_int_base = abs(int_base - ours_int[0, 0])
    diff_int = np.max(np.abs(int_vals[:n_check] - ours_int[:n_check, 1:]))

    print(f"shap {shap.__version__}, numpy {np.__version__}; {len(ens['trees'])} trees, {X.shape[1]} features, "
          f"{len(X)} rows, {len(B)} background rows, 1 thread")
    print(f"agreement on the first {n_check} rows: path-dependent max |Δφ| = {diff_vals:.2e} "
          f"(base {diff_base:.2e}); interventional max |Δφ| = {diff_int:.2e} (base {diff_int_base:.2e})")
    ok = max(diff_vals, diff_base, diff_int, diff_int_base) <= 1e-6
    print("values agree to 1e-6" if ok else "VALUES DIFFER beyond 1e-6")
    print(f"{'method':<34}{'sidelight rows/s':>18}{'shap C++ rows/s':>18}{'ratio':>8}")
    rows = [
        ("path-dependent (fast, default)", ours["path_dependent_fast_rows_per_s"], path_rps),
        ("path-dependent (original alg.)", ours["path_dependent_reference_rows_per_s"], path_rps),
        ("interventional, 100 background", ours["interventional_rows_per_s"], int_rps),
    ]
    for name, a, b in rows:
        print(f"{name:<34}{a:>18.0f}{b:>18.0f}{a / b:>7.1f}x")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
