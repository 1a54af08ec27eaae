"""Trains the scikit-learn model that the MLServer interoperability suite serves.

    python3 train.py DIR --http-port N --grpc-port M

writes into DIR, for `mlserver start DIR`:

- model.joblib: a GradientBoostingClassifier of credit risk (1 = bad) on the seven
  numeric columns of the German credit data, trained deterministically;
- model-settings.json: the model `credit`, served by mlserver_sklearn.SKLearnModel;
- settings.json: the server on 127.0.0.1 with the given ports, metrics off, inference in
  the main process (no worker pool), so that the suite starts and stops one process;
- rows.json: the feature rows the model was trained on, for the suite to send.

The model takes one FP64 tensor of shape [batch, 7] with the columns in FEATURES order.
"""

import argparse
import csv
import json
import pathlib

import joblib
import numpy as np
from sklearn.ensemble import GradientBoostingClassifier

FEATURES = [
    "duration_months",
    "credit_amount",
    "installment_rate_pct_income",
    "residence_since_years",
    "age_years",
    "existing_credits",
    "dependents",
]

DATA = pathlib.Path(__file__).resolve().parents[2] / "data" / "german-credit" / "german_credit.csv"


def load(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    x = np.array([[float(r[c]) for c in FEATURES] for r in rows], dtype=np.float64)
    y = np.array([1 if r["credit_risk"] == "bad" else 0 for r in rows], dtype=np.int64)
    return x, y


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", type=pathlib.Path)
    parser.add_argument("--http-port", type=int, default=8080)
    parser.add_argument("--grpc-port", type=int, default=8081)
    parser.add_argument("--data", type=pathlib.Path, default=DATA)
    args = parser.parse_args()

    x, y = load(args.data)
    model = GradientBoostingClassifier(
        n_estimators=60, max_depth=2, learning_rate=0.1, random_state=0
    )
    model.fit(x, y)

    args.dir.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, args.dir / "model.joblib")
    model_settings = {
        "name": "credit",
        "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": "./model.joblib", "version": "v1"},
    }
    settings = {
        "host": "127.0.0.1",
        "http_port": args.http_port,
        "grpc_port": args.grpc_port,
        "metrics_endpoint": None,
        "parallel_workers": 0,
        "debug": False,
    }
    for name, content in [
        ("model-settings.json", model_settings),
        ("settings.json", settings),
        ("rows.json", x.tolist()),
    ]:
        (args.dir / name).write_text(json.dumps(content) + "\n")


if __name__ == "__main__":
    main()
