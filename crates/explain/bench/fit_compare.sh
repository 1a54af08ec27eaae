#!/usr/bin/env bash
# Fits the same 100,000 × 20 rows with sidelight-explain's boosted trees (criterion bench
# `fit`) and with LightGBM (bench/fit_lightgbm.py), then prints both times and the ratio.
# Needs: python3 with `pip install lightgbm numpy`.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here/../../.."

cargo bench -p sidelight-explain --bench fit
target_dir="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
estimates="$target_dir/criterion/fit/gbt_100000x20_100trees_depth6/new/estimates.json"

python3 "$here/fit_lightgbm.py" 5 > "$target_dir/fit_lightgbm.jsonl"

python3 - "$estimates" "$target_dir/fit_lightgbm.jsonl" <<'PY'
import json, sys
ours = json.load(open(sys.argv[1]))["median"]["point_estimate"] / 1e9
print(f"sidelight-explain (1 thread): {ours:.3f} s  (criterion median)")
for line in open(sys.argv[2]):
    r = json.loads(line)
    print(f"LightGBM {r['lightgbm']} (threads={r['threads']}): {r['median_s']:.3f} s  "
          f"-> sidelight / LightGBM = {ours / r['median_s']:.2f}x")
PY
