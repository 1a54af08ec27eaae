"""Trains the scikit-learn model that the MLServer interoperability suite serves.

    python3 train.py DIR --http-port N --grpc-port M

writes into DIR, for `mlserver start DIR`:

- model.joblib: a GradientBoostingClassifier of credit risk (1 = bad) on the seven
  numeric columns of the German credit data, trained deterministically;
- model-settings.json: the model `credit`, served by mlserver_sklearn.SKLearnModel;
- settings.json: the server on 127.0.0.1 with the given ports, metrics off, inference in
  the main process (no worker pool), so that the suite starts and stops one process;
- rows.json: the feature rows the model was trained on, for the suite to send;
- shop/: a second model, `shop`, a GradientBoostingRegressor that scores candidate
  products for a customer (a recommender): each row is the customer's context joined
  to one candidate, SHOP_FEATURES in order, and its answer one score per row. The
  customers and products are generated from a fixed seed (the suite sends its own);
  MLServer finds its model-settings.json under DIR.

The credit model takes one FP64 tensor of shape [batch, 7] with the columns in FEATURES
order; the shop model one of shape [batch, 6] in SHOP_FEATURES order.
"""

import argparse
import csv
import json
import pathlib

import joblib
import numpy as np
from sklearn.ensemble import GradientBoostingClassifier, GradientBoostingRegressor

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


SHOP_FEATURES = ["age", "outdoor_share", "budget", "price", "weight_kg", "rating"]


def shop_score(x):
    """What suits a customer: light, well-rated products within budget, more so for
    customers who buy outdoor gear often."""
    age, outdoor, budget, price, weight, rating = x.T
    over = np.maximum(price - budget, 0.0) / budget
    return 1.0 + 0.6 * (rating - 4.0) - 1.5 * over - 0.5 * weight * outdoor + 0.8 * outdoor


def shop_rows(n, seed):
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 75, n).astype(np.float64)
    outdoor = np.round(rng.random(n), 2)
    budget = np.round(40.0 + 5.0 * (age - 18.0) + 160.0 * rng.random(n))
    price = np.round(40.0 + 260.0 * rng.random(n))
    weight = np.round(0.3 + 2.5 * rng.random(n), 2)
    rating = np.round(3.0 + 2.0 * rng.random(n), 1)
    return np.column_stack([age, outdoor, budget, price, weight, rating])


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
    shop_x = shop_rows(4000, 0)
    shop = GradientBoostingRegressor(n_estimators=150, max_depth=3, random_state=0)
    shop.fit(shop_x, shop_score(shop_x))
    (args.dir / "shop").mkdir(parents=True, exist_ok=True)
    joblib.dump(shop, args.dir / "shop" / "model.joblib")
    (args.dir / "shop" / "model-settings.json").write_text(
        json.dumps(
            {
                "name": "shop",
                "implementation": "mlserver_sklearn.SKLearnModel",
                "parameters": {"uri": "./model.joblib", "version": "v1"},
            }
        )
        + "\n"
    )
    for name, content in [
        ("model-settings.json", model_settings),
        ("settings.json", settings),
        ("rows.json", x.tolist()),
    ]:
        (args.dir / name).write_text(json.dumps(content) + "\n")


if __name__ == "__main__":
    main()
