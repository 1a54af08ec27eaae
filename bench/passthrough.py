#!/usr/bin/env python3
"""Pass-through benchmark: the demo model direct, through Sidelight, and through nginx.

Run from the repository root:

    python3 bench/passthrough.py            # about 3 minutes
    python3 bench/passthrough.py --quick    # one short round, to check the set-up

Needs wrk, nginx (Debian: apt-get install wrk nginx-light) and oha (cargo install oha).
Everything runs on this machine, on loopback, in one run, so the three targets share
the same conditions; figures are reported as ratios against the direct and nginx rows.

Two loads, each as interleaved rounds (direct, sidelight, nginx, direct, ...) with the
median taken per target:
  - saturation: wrk with 32 connections as fast as they go -> throughput, p50, p99;
  - moderate:   oha at a fixed rate (default 500 requests/s, 4 connections) -> p50, p99,
                which is where "Sidelight adds at most 0.3 ms to p99" is judged.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODEL_PORT, SIDELIGHT_PORT, ADMIN_PORT, NGINX_PORT = 18000, 18080, 19100, 18081
BODY = json.dumps({"instances": [{
    "checking_account": "... < 0 DM", "duration_months": 6,
    "credit_history": "critical account/ other credits existing (not at this bank)",
    "purpose": "radio/television", "credit_amount": 1169,
    "savings": "unknown/ no savings account", "employed_since": ".. >= 7 years",
    "installment_rate_pct_income": 4, "personal_status_sex": "male : single",
    "other_debtors": "none", "residence_since_years": 4, "property": "real estate",
    "age_years": 67, "other_installment_plans": "none", "housing": "own",
    "existing_credits": 2, "job": "skilled employee/ official", "dependents": 1,
    "telephone": "yes", "foreign_worker": "yes"}]})


def need(tool):
    path = shutil.which(tool) or (shutil.which(tool, path=str(Path.home() / ".cargo/bin")))
    if not path:
        sys.exit(f"bench: `{tool}` is not installed (see the top of {__file__})")
    return path


def wait_port(port, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"bench: nothing listens on port {port}")


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def wrk(port, seconds, connections):
    out = subprocess.run(
        [need("wrk"), "-t1", f"-c{connections}", f"-d{seconds}s", "-s",
         str(ROOT / "bench/predict.lua"), f"http://127.0.0.1:{port}"],
        env={**os.environ, "BENCH_BODY": BODY}, capture_output=True, text=True, check=True)
    line = [l for l in out.stdout.splitlines() if l.startswith("{")][-1]
    return json.loads(line)


def oha(port, seconds, rate, connections):
    out = subprocess.run(
        [need("oha"), "-z", f"{seconds}s", "-q", str(rate), "-c", str(connections),
         "--no-tui", "--output-format", "json", "-m", "POST",
         "-H", "content-type: application/json", "-d", BODY,
         f"http://127.0.0.1:{port}/v1/models/credit:predict"],
        capture_output=True, text=True, check=True)
    data = json.loads(out.stdout)
    pct = data["latencyPercentiles"]
    codes = data.get("statusCodeDistribution", {})
    return {"rps": data["summary"]["requestsPerSec"], "p50_ms": pct["p50"] * 1000,
            "p99_ms": pct["p99"] * 1000, "errors": sum(v for k, v in codes.items() if k != "200")}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="one short round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--rate", type=int, default=500, help="moderate load, requests/s")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.seconds = 1, 3

    subprocess.run(["cargo", "build", "--release", "--quiet", "-p", "sidelight",
                    "-p", "sidelight-demo-model"], cwd=ROOT, check=True)
    need("wrk"), need("oha"), need("nginx")
    work = Path(tempfile.mkdtemp(prefix="sidelight-bench-"))
    procs = {}
    try:
        procs["model"] = subprocess.Popen(
            [ROOT / "target/release/demo-model", "--listen", f"127.0.0.1:{MODEL_PORT}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(MODEL_PORT)
        config = work / "sidelight.toml"
        config.write_text(
            f'[server]\nlisten = "127.0.0.1:{SIDELIGHT_PORT}"\n'
            f'admin_listen = "127.0.0.1:{ADMIN_PORT}"\n'
            f'[upstream]\nurl = "http://127.0.0.1:{MODEL_PORT}"\n[log]\nlevel = "warn"\n'
            '[[routes]]\nname = "credit"\npath_prefix = "/v1/models/credit"\n')
        procs["sidelight"] = subprocess.Popen(
            [ROOT / "target/release/sidelight", "serve", "--config", config],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env={k: v for k, v in os.environ.items() if k != "RUST_LOG"})
        wait_port(SIDELIGHT_PORT)
        nginx_conf = work / "nginx.conf"
        nginx_conf.write_text((ROOT / "bench/nginx.conf").read_text()
                              .replace("__PORT__", str(NGINX_PORT))
                              .replace("__UPSTREAM__", f"127.0.0.1:{MODEL_PORT}")
                              .replace("__DIR__", str(work)))
        procs["nginx"] = subprocess.Popen(
            [need("nginx"), "-c", str(nginx_conf), "-p", str(work), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(NGINX_PORT)

        targets = {"direct": MODEL_PORT, "sidelight": SIDELIGHT_PORT, "nginx": NGINX_PORT}
        idle_rss = rss_kib(procs["sidelight"].pid)
        for port in targets.values():  # warm pools and caches
            wrk(port, 1, 8)
        saturation = {t: [] for t in targets}
        moderate = {t: [] for t in targets}
        for r in range(args.rounds):
            for name, port in targets.items():
                saturation[name].append(wrk(port, args.seconds, 32))
            for name, port in targets.items():
                moderate[name].append(oha(port, args.seconds, args.rate, 4))
            print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
        loaded_rss = rss_kib(procs["sidelight"].pid)

        def med(rows, key):
            return statistics.median(row[key] for row in rows)

        print(f"\nPass-through, {args.rounds} interleaved round(s) of {args.seconds} s per "
              f"target and load, medians; {os.cpu_count()} cores shared by load generator, "
              "proxy and model.\n")
        print("| target | saturation req/s | p50 ms | p99 ms | "
              f"at {args.rate} req/s: p50 ms | p99 ms | errors |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for name in targets:
            s, m = saturation[name], moderate[name]
            errors = sum(row["errors"] for row in s + m)
            print(f"| {name} | {med(s, 'rps'):,.0f} | {med(s, 'p50_ms'):.3f} | "
                  f"{med(s, 'p99_ms'):.3f} | {med(m, 'p50_ms'):.3f} | {med(m, 'p99_ms'):.3f} "
                  f"| {errors} |")
        side_rps, nginx_rps = med(saturation["sidelight"], "rps"), med(saturation["nginx"], "rps")
        added_p99 = med(moderate["sidelight"], "p99_ms") - med(moderate["direct"], "p99_ms")
        nginx_added = med(moderate["nginx"], "p99_ms") - med(moderate["direct"], "p99_ms")
        print(f"\nsidelight / nginx throughput: {side_rps / nginx_rps:.2f}x "
              f"(goal >= 1.00x)")
        print(f"p99 added at {args.rate} req/s: sidelight {added_p99:+.3f} ms, "
              f"nginx {nginx_added:+.3f} ms (goal for sidelight <= 0.3 ms)")
        print(f"sidelight RSS: {idle_rss / 1024:.1f} MiB idle, "
              f"{loaded_rss / 1024:.1f} MiB after the load")
    finally:
        for proc in procs.values():
            proc.send_signal(signal.SIGTERM)
        for proc in procs.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
