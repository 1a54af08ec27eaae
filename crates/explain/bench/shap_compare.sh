#!/usr/bin/env bash
# TreeSHAP side by side: sidelight-explain (release, one thread) vs shap's C++ TreeSHAP on
# the same synthetic ensemble (100 trees, depth 6, 20 features). Needs `pip install shap numpy`.
# Usage: crates/explain/bench/shap_compare.sh [ROWS]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT
cd "$root"
cargo build --release -q -p sidelight-explain --example shap_export
"$root/target/release/examples/shap_export" "$dir" "${1:-1000}" >/dev/null
OMP_NUM_THREADS=1 python3 "$here/shap_compare.py" "$dir"
