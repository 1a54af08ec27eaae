#!/usr/bin/env python3
"""LightGBM's fit time on the data and settings of `benches/fit.rs`.

Data: 100,000 x 20 uniforms in [0, 1) drawn row-major from SplitMix64 with seed 42 (the
same stream as the Rust bench, so both sides fit identical rows); y is Friedman #1 on
x0..x4 plus 4*x5*x6. Settings: 100 rounds, max_depth 6, num_leaves 63, learning rate 0.1,
max_bin 255, min_data_in_leaf 20, lambda_l2 1.0, no bagging, no early stopping.

The timed region builds the binned Dataset and trains, as `fit_dense` bins and trains.
Prints one JSON line per thread setting: {"threads": ..., "median_s": ..., ...}.

Needs: pip install lightgbm numpy
"""

import json
import statistics
import sys
import time

import lightgbm as lgb
import numpy as np

ROWS, FEATURES, SEED = 100_000, 20, 42
REPEATS = int(sys.argv[1]) if len(sys.argv) > 1 else 5


def splitmix64_uniforms(n, seed):
    with np.errstate(over="ignore"):
        state = np.uint64(seed) + np.arange(1, n + 1, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        z = state
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def bench_data():
    x = splitmix64_uniforms(ROWS * FEATURES, SEED).reshape(ROWS, FEATURES)
    y = (
        10.0 * np.sin(np.pi * x[:, 0] * x[:, 1])
        + 20.0 * (x[:, 2] - 0.5) ** 2
        + 10.0 * x[:, 3]
        + 5.0 * x[:, 4]
        + 4.0 * x[:, 5] * x[:, 6]
    )
    return x, y


def params(threads):
    p = {
        "objective": "regression",
        "max_depth": 6,
        "num_leaves": 63,
        "learning_rate": 0.1,
        "max_bin": 255,
        "min_data_in_leaf": 20,
        "lambda_l2": 1.0,
        "bagging_fraction": 1.0,
        "feature_fraction": 1.0,
        "verbosity": -1,
        "seed": SEED,
    }
    if threads is not None:
        p["num_threads"] = threads
    return p


def fit(x, y, threads):
    ds = lgb.Dataset(x, y, params={"max_bin": 255, "verbosity": -1}, free_raw_data=False)
    return lgb.train(params(threads), ds, num_boost_round=100)


def main():
    x, y = bench_data()
    for threads in (1, None):
        fit(x, y, threads)  # warm-up
        times = []
        for _ in range(REPEATS):
            t0 = time.perf_counter()
            booster = fit(x, y, threads)
            times.append(time.perf_counter() - t0)
        pred = booster.predict(x)
        r2 = 1.0 - np.sum((pred - y) ** 2) / np.sum((y - y.mean()) ** 2)
        print(
            json.dumps(
                {
                    "threads": threads if threads is not None else "default",
                    "median_s": statistics.median(times),
                    "min_s": min(times),
                    "repeats": REPEATS,
                    "trees": booster.num_trees(),
                    "train_r2": round(float(r2), 5),
                    "lightgbm": lgb.__version__,
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
