"""Reference figures for sidelight-monitor, from Fairlearn and SciPy.

Run by tests/reference.rs with the virtualenv that tests/setup makes
(target/mlserver-venv/bin/python). Generates fixed data sets from a seeded NumPy
generator, computes the reference figures on them, and prints one JSON document with
both the data and the figures on stdout. NaN in the data is written as null.

What is compared, and with what:

- Fairness: Fairlearn's MetricFrame (selection_rate, true_positive_rate,
  false_positive_rate per group), demographic_parity_difference / _ratio,
  equalized_odds_difference and equal_opportunity_difference. Fairlearn reports
  differences as max - min over the groups (never negative) and ratios as min / max;
  the Rust side compares absolute values and min(DI, 1/DI) accordingly. SciPy's
  binomtest(...).proportion_ci(method="wilson") for the Wilson intervals.
- KS: scipy.stats.ks_2samp(method="asymp") for D, and two p-values: ks_2samp's own
  (which evaluates kstwo.sf(D, round(n*m/(n+m))), the exact one-sample distribution)
  and kstwobign.sf(D * sqrt(n*m/(n+m))), the limiting Kolmogorov distribution that
  sidelight-monitor uses. NaN is dropped first (ks_2samp would propagate it).
- Chi-square: scipy.stats.chi2_contingency(table, correction=False) on the 2 x k table
  (reference, current) x levels; missing levels dropped.
- PSI: no library defines it, so this is an independent NumPy re-implementation of the
  documented definition (cut points np.quantile(method="inverted_cdf"), bins by
  searchsorted, shares raised to epsilon).
- Associations: scipy.stats.pearsonr (|r|) and scipy.stats.contingency.association
  (method="cramer") for Cramer's V.
"""

import json
import math
import sys

import numpy as np
import pandas as pd
from fairlearn.metrics import (
    MetricFrame,
    demographic_parity_difference,
    demographic_parity_ratio,
    equal_opportunity_difference,
    equalized_odds_difference,
    false_positive_rate,
    selection_rate,
    true_positive_rate,
)
from scipy import stats
from scipy.stats.contingency import association

rng = np.random.default_rng(20240608)


def floats(xs):
    return [None if math.isnan(x) else float(x) for x in xs]


def fairness_case(name, groups, shares, tpr, fpr, base, n):
    """Decisions for `groups` (the first privileged): group g with probability
    shares[g], outcome ~ Bernoulli(base[g]), decision favourable with probability
    tpr[g] when the outcome is positive and fpr[g] when it is negative."""
    g = rng.choice(len(groups), size=n, p=shares)
    y_true = (rng.random(n) < np.take(base, g)).astype(int)
    p_fav = np.where(y_true == 1, np.take(tpr, g), np.take(fpr, g))
    y_pred = (rng.random(n) < p_fav).astype(int)
    sf = pd.Series(np.take(groups, g), name="group")
    mf = MetricFrame(
        metrics={
            "selection_rate": selection_rate,
            "tpr": true_positive_rate,
            "fpr": false_positive_rate,
        },
        y_true=y_true,
        y_pred=y_pred,
        sensitive_features=sf,
    )
    by = mf.by_group
    wilson = {}
    for label in groups:
        mask = sf.to_numpy() == label
        k, m = int(y_pred[mask].sum()), int(mask.sum())
        ci = stats.binomtest(k, m).proportion_ci(confidence_level=0.95, method="wilson")
        wilson[label] = [float(ci.low), float(ci.high)]
    kw = dict(y_true=y_true, y_pred=y_pred, sensitive_features=sf)
    return {
        "name": name,
        "privileged": groups[0],
        "unprivileged": list(groups[1:]),
        "group": [str(x) for x in sf],
        "y_true": y_true.tolist(),
        "y_pred": y_pred.tolist(),
        "selection_rate": {k: float(v) for k, v in by["selection_rate"].items()},
        "tpr": {k: float(v) for k, v in by["tpr"].items()},
        "fpr": {k: float(v) for k, v in by["fpr"].items()},
        "wilson": wilson,
        "demographic_parity_difference": float(demographic_parity_difference(**kw)),
        "demographic_parity_ratio": float(demographic_parity_ratio(**kw)),
        "equalized_odds_difference": float(equalized_odds_difference(**kw)),
        "equal_opportunity_difference": float(equal_opportunity_difference(**kw)),
    }


def with_nan(x, rate):
    x = x.copy()
    x[rng.random(len(x)) < rate] = np.nan
    return x


def ks_case(name, a, b):
    a_ok, b_ok = a[~np.isnan(a)], b[~np.isnan(b)]
    res = stats.ks_2samp(a_ok, b_ok, method="asymp")
    n, m = len(a_ok), len(b_ok)
    en = n * m / (n + m)
    return {
        "name": name,
        "a": floats(a),
        "b": floats(b),
        "statistic": float(res.statistic),
        "pvalue_asymp": float(res.pvalue),
        "pvalue_kstwobign": float(stats.kstwobign.sf(res.statistic * math.sqrt(en))),
        "en": en,
    }


def psi_case(name, ref, cur, bins, eps):
    r, c = ref[~np.isnan(ref)], cur[~np.isnan(cur)]
    r_sorted = np.sort(r)
    qs = [k / bins for k in range(1, bins)]
    edges = np.unique(np.quantile(r_sorted, qs, method="inverted_cdf"))
    # Bin index = number of cut points strictly below the value: bins (e_{i-1}, e_i].
    rc = np.bincount(np.searchsorted(edges, r, side="left"), minlength=len(edges) + 1)
    cc = np.bincount(np.searchsorted(edges, c, side="left"), minlength=len(edges) + 1)
    rs = np.maximum(rc / rc.sum(), eps)
    cs = np.maximum(cc / cc.sum(), eps)
    return {
        "name": name,
        "reference": floats(ref),
        "current": floats(cur),
        "bins": bins,
        "epsilon": eps,
        "edges": edges.tolist(),
        "psi": float(np.sum((cs - rs) * np.log(cs / rs))),
    }


def chi2_case(name, ref, cur):
    levels = sorted({x for x in ref + cur if x is not None})
    table = np.array(
        [[sum(1 for x in ref if x == lv) for lv in levels],
         [sum(1 for x in cur if x == lv) for lv in levels]]
    )
    res = stats.chi2_contingency(table, correction=False)
    return {
        "name": name,
        "reference": ref,
        "current": cur,
        "statistic": float(res.statistic),
        "pvalue": float(res.pvalue),
        "dof": int(res.dof),
    }


def draw_levels(levels, p, n, missing):
    out = [str(x) for x in rng.choice(levels, size=n, p=p)]
    return [None if rng.random() < missing else x for x in out]


fair = [
    fairness_case(
        "two_groups", ["m", "f"], [0.55, 0.45],
        tpr=[0.85, 0.70], fpr=[0.30, 0.20], base=[0.6, 0.5], n=6000,
    ),
    fairness_case(
        "three_groups", ["25-60", "<25", ">60"], [0.6, 0.25, 0.15],
        tpr=[0.8, 0.75, 0.6], fpr=[0.25, 0.3, 0.1], base=[0.55, 0.4, 0.5], n=4000,
    ),
]

ks = [
    ks_case("small_shift", rng.normal(0, 1, 60), rng.normal(0.4, 1, 90)),
    ks_case("ties_and_nan", with_nan(np.round(rng.normal(0, 2, 1500)), 0.03),
            with_nan(np.round(rng.normal(0.2, 2, 1100)), 0.05)),
    ks_case("large_scale", rng.normal(0, 1, 30000), rng.normal(0, 1.05, 20000)),
    ks_case("identical_law", rng.exponential(1.0, 5000), rng.exponential(1.0, 5000)),
]

psi = [
    psi_case("normal_shift", rng.normal(0, 1, 20000), rng.normal(0.3, 1.2, 15000), 10, 1e-4),
    psi_case("ties_nan_and_out_of_range",
             with_nan(np.round(rng.gamma(2.0, 2.0, 5000)), 0.02),
             with_nan(np.round(rng.gamma(2.0, 2.0, 4000)) + 3, 0.1), 10, 1e-4),
    psi_case("few_values_many_bins", rng.integers(0, 4, 300).astype(float),
             rng.integers(0, 6, 200).astype(float), 20, 1e-3),
]

chi = [
    chi2_case("with_unseen_level",
              draw_levels(["own", "rent", "free"], [0.6, 0.3, 0.1], 3000, 0.02),
              draw_levels(["own", "rent", "free", "other"], [0.5, 0.35, 0.1, 0.05], 2000, 0.05)),
    chi2_case("same_law",
              draw_levels(list("abcdef"), [0.3, 0.2, 0.2, 0.1, 0.1, 0.1], 4000, 0.0),
              draw_levels(list("abcdef"), [0.3, 0.2, 0.2, 0.1, 0.1, 0.1], 4000, 0.0)),
]

x = rng.normal(0, 1, 2000)
y = 0.6 * x + rng.normal(0, 1, 2000)
pear = [{"name": "linear", "x": floats(x), "y": floats(y),
         "abs_r": float(abs(stats.pearsonr(x, y).statistic))}]

g1 = draw_levels(["a", "b", "c"], [0.5, 0.3, 0.2], 3000, 0.0)
# g2 follows g1 (a -> p, b -> q, c -> r) four times in five, else a random level.
g2 = [{"a": "p", "b": "q", "c": "r"}[v] if rng.random() < 0.8 else str(rng.choice(["p", "q", "r"]))
      for v in g1]
lv1, lv2 = sorted(set(g1)), sorted(set(g2))
table = np.array([[sum(1 for a, b in zip(g1, g2) if a == u and b == v) for v in lv2] for u in lv1])
cramer = [{"name": "related", "a": g1, "b": g2,
           "v": float(association(table, method="cramer", correction=False))}]

json.dump(
    {"fairness": fair, "ks": ks, "psi": psi, "chi2": chi, "pearson": pear, "cramers_v": cramer},
    sys.stdout,
    allow_nan=False,
)
