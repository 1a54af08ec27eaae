#!/usr/bin/env python3
"""Monitoring benchmark: what a full monitoring window of 1,000,000 explained rows over
the German credit data's 20 features costs, and what it does to the proxy's p99.

Run from the repository root:

    python3 bench/monitoring.py            # about 6 minutes
    python3 bench/monitoring.py --rows 100000 --rounds 1   # a quick check of the set-up

Needs oha (cargo install oha). Two explaining proxies stand in front of the demo model,
the same surrogate config on both (100 trees of depth 6, trained from the 1,000 replayed
applications): "explaining" has no monitor; "explaining + monitoring" has
`[routes.monitor]` with a window of --rows rows, two protected attributes (age in bands,
personal status and sex) and `every = "1s"`. The monitored proxy's window is filled
first (batches of 100 applications); from then on every measurement request adds a row,
so the monitor recomputes over the full window back to back while the latency is
measured.

The load is oha at a fixed rate (default 500 requests/s, 4 connections, one application
per request), as interleaved rounds (explaining, monitoring, explaining, ...), medians
per target. Reported: the time one computation over the full window takes (from
GET /api/v1/monitoring's `compute_ms`, and `proxy_sweep_ms` for the sweep of the
columns that finds possible proxies, which runs at most every 100 times its cost), both
p99s and their ratio (goal: at most 1.10), and the monitored proxy's resident memory.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from passthrough import (ROOT, BODY, applications, body_of, need, oha, rss_kib,  # noqa: E402
                         stop, wait_port)

MODEL_PORT = 18100
PLAIN_PORT, PLAIN_ADMIN = 18101, 19201
MONITORED_PORT, MONITORED_ADMIN = 18102, 19202


def config(port, admin, state, monitor_rows):
    text = (f'[server]\nlisten = "127.0.0.1:{port}"\nadmin_listen = "127.0.0.1:{admin}"\n'
            f'[upstream]\nurl = "http://127.0.0.1:{MODEL_PORT}"\n[log]\nlevel = "warn"\n'
            f'[state]\ndir = "{state}"\n'
            '[[routes]]\nname = "credit"\npath_prefix = "/v1/models/credit"\n'
            '[routes.explain]\nprotocol = "kserve_v1"\noutput = "probability"\n'
            '[routes.explain.decision]\nthreshold = 0.5\n'
            # 900 of the 1,000 replayed rows: the first requests only settle the
            # route's inferred columns (limits.column_agreement) and are not learnt from.
            '[routes.explain.surrogate]\nwarm_up_rows = 900\nwindow_rows = 5000\n'
            'retrain_every_rows = 100000000\nretrain_interval = "24h"\nmin_r2 = 0.0\n'
            'trees = 100\ndepth = 6\ncpu_share = 1.0\n')
    if monitor_rows:
        text += (f'[routes.monitor]\nwindow_rows = {monitor_rows}\nevery = "1s"\n'
                 '[[routes.monitor.protected]]\nfeature = "age_years"\nbands = [25]\n'
                 'privileged = ">=25"\nunprivileged = ["<25"]\n'
                 '[[routes.monitor.protected]]\nfeature = "personal_status_sex"\n'
                 'privileged = "male : single"\n'
                 'unprivileged = ["female : divorced/separated/married"]\n')
    return text


def admin_json(admin, path):
    token = os.environ["BENCH_ADMIN_TOKEN"]
    request = urllib.request.Request(f"http://127.0.0.1:{admin}{path}",
                                     headers={"authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request) as answer:
        return json.load(answer)


def train(port, admin, apps):
    """Replays the data set until the proxy's surrogate is in service."""
    for start in range(0, len(apps), 10):
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/models/credit:predict",
            data=body_of(apps[start:start + 10]).encode(),
            headers={"content-type": "application/json"})
        urllib.request.urlopen(request).read()
    deadline = time.time() + 180
    while time.time() < deadline:
        routes = admin_json(admin, "/api/v1/surrogates")["routes"]
        if routes and routes[0]["in_service"]:
            return
        time.sleep(0.5)
    sys.exit("bench: the surrogate was not trained in time")


def latest(admin):
    routes = admin_json(admin, "/api/v1/monitoring")["routes"]
    return routes[0]["latest"] if routes else None


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000, help="monitoring window")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--rate", type=int, default=500, help="requests/s")
    args = parser.parse_args()

    subprocess.run(["cargo", "build", "--release", "--quiet", "-p", "sidelight",
                    "-p", "sidelight-demo-model"], cwd=ROOT, check=True)
    need("oha")
    token = subprocess.run([ROOT / "target/release/sidelight", "token", "new", "--name",
                            "bench", "--role", "viewer"], capture_output=True, text=True,
                           check=True).stdout
    # stdout: the token on the first line, then its config entry.
    secret, _, entry = token.partition("\n")
    os.environ["BENCH_ADMIN_TOKEN"] = secret.strip()
    work = Path(tempfile.mkdtemp(prefix="sidelight-bench-monitoring-"))
    procs = {}
    # Every SIDELIGHT_* variable is a config key to the proxy: keep the bench's own out.
    env = {k: v for k, v in os.environ.items() if k != "RUST_LOG"}
    try:
        procs["model"] = subprocess.Popen(
            [ROOT / "target/release/demo-model", "--listen", f"127.0.0.1:{MODEL_PORT}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(MODEL_PORT)
        tokens = entry
        for name, port, admin, rows in [("explaining", PLAIN_PORT, PLAIN_ADMIN, 0),
                                        ("explaining + monitoring", MONITORED_PORT,
                                         MONITORED_ADMIN, args.rows)]:
            path = work / f"{port}.toml"
            path.write_text(config(port, admin, work / f"state-{port}", rows) + tokens)
            procs[name] = subprocess.Popen(
                [ROOT / "target/release/sidelight", "serve", "--config", path],
                stdout=subprocess.DEVNULL, stderr=open(work / f"{port}.log", "w"), env=env)
            wait_port(port)
        apps = applications()
        train(PLAIN_PORT, PLAIN_ADMIN, apps)
        train(MONITORED_PORT, MONITORED_ADMIN, apps)
        idle_rss = rss_kib(procs["explaining + monitoring"].pid)

        # Fill the window: batches of 100 distinct applications.
        started = time.time()
        batches = [body_of(apps[i:i + 100]) for i in range(0, 1000, 100)]
        sent = 0
        while True:
            report = latest(MONITORED_ADMIN) or {}
            # Rows that came while a computation copied the window are skipped, not
            # monitored: fill until the window itself holds them all.
            have = report.get("window_rows", 0)
            if have >= args.rows:
                break
            requests = max(1, min(2000, (args.rows - have + 99) // 100))
            body = batches[sent % len(batches)]
            sent += 1
            subprocess.run(
                [need("oha"), "-n", str(requests), "-c", "4", "--no-tui", "--output-format",
                 "json", "-m", "POST", "-H", "content-type: application/json", "-d", body,
                 f"http://127.0.0.1:{MONITORED_PORT}/v1/models/credit:predict"],
                capture_output=True, check=True)
            time.sleep(1.5)
        print(f"window of {args.rows:,} rows filled in {time.time() - started:.0f} s",
              file=sys.stderr)
        # Wait for a computation over the full window.
        deadline = time.time() + 300
        while True:
            report = latest(MONITORED_ADMIN) or {}
            if report.get("window_rows", 0) >= args.rows and "compute_ms" in report:
                break
            if time.time() > deadline:
                sys.exit(f"bench: no computation over the full window: {report}")
            time.sleep(1)

        targets = {"explaining": PLAIN_PORT, "explaining + monitoring": MONITORED_PORT}
        for port in targets.values():
            oha(port, 2, args.rate, 4, BODY)
        results = {t: [] for t in targets}
        computes, sweeps = [], []
        for r in range(args.rounds):
            for name, port in targets.items():
                results[name].append(oha(port, args.seconds, args.rate, 4, BODY))
                if name == "explaining + monitoring":
                    report = latest(MONITORED_ADMIN)
                    computes.append(report["compute_ms"])
                    sweeps.append(report.get("proxy_sweep_ms") or 0)
            print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
        loaded_rss = rss_kib(procs["explaining + monitoring"].pid)

        def med(name, key):
            return statistics.median(row[key] for row in results[name])

        print(f"\n{args.rounds} interleaved round(s) of {args.seconds} s at {args.rate} "
              f"requests/s, medians; {os.cpu_count()} cores shared by load generator, "
              "proxies and model.\n")
        print("| target | p50 ms | p99 ms | errors |")
        print("|---|---:|---:|---:|")
        for name in targets:
            errors = sum(row["errors"] for row in results[name])
            print(f"| {name} | {med(name, 'p50_ms'):.3f} | {med(name, 'p99_ms'):.3f} "
                  f"| {errors} |")
        ratio = med("explaining + monitoring", "p99_ms") / med("explaining", "p99_ms")
        print(f"\none computation over {args.rows:,} rows x 20 features: "
              f"{statistics.median(computes)} ms reading the summaries (median of "
              f"{len(computes)}); a sweep for possible proxies "
              f"{statistics.median(sweeps)} ms, at most every 100x that (goal: a computation "
              "<= 0.5 s)")
        print(f"p99 while monitoring: {ratio:.2f}x of explaining without a monitor "
              "(goal <= 1.10x)")
        print(f"monitored proxy RSS: {idle_rss / 1024:.0f} MiB before the window, "
              f"{loaded_rss / 1024:.0f} MiB with it full")
    finally:
        stop(procs)
        if sys.exc_info()[0] is None:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"bench: logs kept in {work}", file=sys.stderr)


if __name__ == "__main__":
    main()
