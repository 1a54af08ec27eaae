#!/usr/bin/env python3
"""Proxy benchmark: the demo model direct, through nginx, through Sidelight as a plain
proxy, and through Sidelight explaining every response.

Run from the repository root:

    python3 bench/passthrough.py            # about 10 minutes
    python3 bench/passthrough.py --only audit   # the audit log rows, about 6 minutes
    python3 bench/passthrough.py --quick    # one short round, to check the set-up
    python3 bench/passthrough.py --only baseline --baseline OLD/target/release/sidelight
        # this build against another one (say, before a refactor), side by side


Needs wrk, nginx (Debian: apt-get install wrk nginx-light) and oha (cargo install oha).
Everything runs on this machine, on loopback, in one run, so the three targets share
the same conditions; figures are reported as ratios against the direct and nginx rows.

Sidelight explaining uses a surrogate of 100 trees of depth 6 over the 20 features,
trained from 1,000 replayed applications before the measurement, and attaches the
route's default explanation (customer audience: attributions and the customer's text).
Requests carry one application (batch 1) or 32 (batch 32).

Sidelight explaining + audit is the same, restoring the same surrogate, with an audit
log on the local disk (payloads sealed with AES-256-GCM): "sync" releases each response
only after its record is committed (fsync'd), "async" queues it. The p99 that sync adds
is judged against explaining without an audit log.

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
EXPLAIN_PORT, EXPLAIN_ADMIN_PORT = 18082, 19101
AUDIT_SYNC_PORT, AUDIT_ASYNC_PORT = 18083, 18084
BASELINE_PORT, BASELINE_EXPLAIN_PORT = 18085, 18086
AUDIT_KEY = "5e" * 32
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


def applications():
    import csv
    with open(ROOT / "data/german-credit/german_credit.csv") as f:
        rows = list(csv.DictReader(f))
    numeric = {"duration_months", "credit_amount", "installment_rate_pct_income",
               "residence_since_years", "age_years", "existing_credits", "dependents"}
    out = []
    for row in rows:
        row.pop("credit_risk", None)
        out.append({k: (float(v) if k in numeric else v) for k, v in row.items()})
    return out


def body_of(apps):
    return json.dumps({"instances": apps})


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


def wrk(port, seconds, connections, body=BODY):
    out = subprocess.run(
        [need("wrk"), "-t1", f"-c{connections}", f"-d{seconds}s", "-s",
         str(ROOT / "bench/predict.lua"), f"http://127.0.0.1:{port}"],
        env={**os.environ, "BENCH_BODY": body}, capture_output=True, text=True, check=True)
    line = [l for l in out.stdout.splitlines() if l.startswith("{")][-1]
    return json.loads(line)


def oha(port, seconds, rate, connections, body=BODY):
    out = subprocess.run(
        [need("oha"), "-z", f"{seconds}s", "-q", str(rate), "-c", str(connections),
         "--no-tui", "--output-format", "json", "-m", "POST",
         "-H", "content-type: application/json", "-d", body,
         f"http://127.0.0.1:{port}/v1/models/credit:predict"],
        capture_output=True, text=True, check=True)
    data = json.loads(out.stdout)
    pct = data["latencyPercentiles"]
    codes = data.get("statusCodeDistribution", {})
    return {"rps": data["summary"]["requestsPerSec"], "p50_ms": pct["p50"] * 1000,
            "p99_ms": pct["p99"] * 1000, "errors": sum(v for k, v in codes.items() if k != "200")}


def stop(procs):
    """Asks every process to stop (SIGTERM), and kills the ones still there after 10 s."""
    for proc in procs.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs.values():
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def admin_token():
    """A viewer token and its config entry: the admin API answers only to tokens."""
    out = subprocess.run([ROOT / "target/release/sidelight", "token", "new", "--name", "bench",
                          "--role", "viewer"], capture_output=True, text=True, check=True).stdout
    secret, _, entry = out.partition("\n")
    return secret.strip(), entry


def train_surrogate(apps, token, port=EXPLAIN_PORT, admin_port=EXPLAIN_ADMIN_PORT):
    """Replays the data set through the explaining proxy until its surrogate is in service."""
    import urllib.request
    for start in range(0, len(apps), 10):
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/models/credit:predict",
            data=body_of(apps[start:start + 10]).encode(),
            headers={"content-type": "application/json"})
        urllib.request.urlopen(request).read()
    deadline = time.time() + 120
    while time.time() < deadline:
        with urllib.request.urlopen(urllib.request.Request(
                f"http://127.0.0.1:{admin_port}/api/v1/surrogates",
                headers={"authorization": f"Bearer {token}"})) as answer:
            routes = json.load(answer)["routes"]
        if routes and routes[0]["in_service"]:
            print(f"surrogate in service: R² {routes[0]['in_service']['r2']:.3f}",
                  file=sys.stderr)
            return
        time.sleep(0.5)
    sys.exit("bench: the surrogate was not trained in time")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="one short round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--rate", type=int, default=500, help="moderate load, requests/s")
    parser.add_argument("--only", default="",
                        help="measure only targets whose name contains this (plus direct and "
                             "sidelight explaining, which the ratios need)")
    parser.add_argument("--baseline", default="",
                        help="another sidelight binary (an older build) to measure side by "
                             "side, plain and explaining, as `baseline` rows")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.seconds = 1, 3

    subprocess.run(["cargo", "build", "--release", "--quiet", "-p", "sidelight",
                    "-p", "sidelight-demo-model"], cwd=ROOT, check=True)
    need("wrk"), need("oha"), need("nginx")
    token, token_entry = admin_token()
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
        explain_config = work / "explain.toml"
        explain_config.write_text(
            f'[server]\nlisten = "127.0.0.1:{EXPLAIN_PORT}"\n'
            f'admin_listen = "127.0.0.1:{EXPLAIN_ADMIN_PORT}"\n'
            f'[upstream]\nurl = "http://127.0.0.1:{MODEL_PORT}"\n[log]\nlevel = "warn"\n'
            f'[state]\ndir = "{work / "state"}"\n'
            '[[routes]]\nname = "credit"\npath_prefix = "/v1/models/credit"\n'
            '[routes.explain]\nprotocol = "kserve_v1"\noutput = "probability"\n'
            # 900 of the 1,000 replayed rows: the route's columns are inferred, and the
            # first requests only settle them (limits.column_agreement).
            '[routes.explain.surrogate]\nwarm_up_rows = 900\nwindow_rows = 5000\n'
            'retrain_every_rows = 1000000\nretrain_interval = "24h"\nmin_r2 = 0.0\n'
            'trees = 100\ndepth = 6\ncpu_share = 1.0\n' + token_entry)
        procs["explain"] = subprocess.Popen(
            [ROOT / "target/release/sidelight", "serve", "--config", explain_config],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env={k: v for k, v in os.environ.items() if k != "RUST_LOG"})
        wait_port(EXPLAIN_PORT)
        apps = applications()
        train_surrogate(apps, token)
        for name, port, durability in [("audit sync", AUDIT_SYNC_PORT, "sync"),
                                        ("audit async", AUDIT_ASYNC_PORT, "async")]:
            audit_config = work / f"{durability}.toml"
            audit_config.write_text(
                explain_config.read_text()
                .replace(f"127.0.0.1:{EXPLAIN_PORT}", f"127.0.0.1:{port}")
                .replace(f"127.0.0.1:{EXPLAIN_ADMIN_PORT}", f"127.0.0.1:{port + 1000}")
                + f'[audit]\npath = "{work / (durability + ".db")}"\n'
                  f'durability = "{durability}"\n')
            procs[name] = subprocess.Popen(
                [ROOT / "target/release/sidelight", "serve", "--config", audit_config],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                env={**{k: v for k, v in os.environ.items() if k != "RUST_LOG"},
                     "SIDELIGHT_AUDIT_KEY": AUDIT_KEY})
            wait_port(port)
        if args.baseline:
            for name, port, source in [("baseline", BASELINE_PORT, config),
                                       ("baseline explaining", BASELINE_EXPLAIN_PORT,
                                        explain_config)]:
                text = (source.read_text()
                        .replace(f"127.0.0.1:{SIDELIGHT_PORT}", f"127.0.0.1:{port}")
                        .replace(f"127.0.0.1:{ADMIN_PORT}", f"127.0.0.1:{port + 1000}")
                        .replace(f"127.0.0.1:{EXPLAIN_PORT}", f"127.0.0.1:{port}")
                        .replace(f"127.0.0.1:{EXPLAIN_ADMIN_PORT}", f"127.0.0.1:{port + 1000}")
                        .replace(str(work / "state"), str(work / "baseline-state")))
                baseline_config = work / f"{name.replace(' ', '-')}.toml"
                baseline_config.write_text(text)
                procs[name] = subprocess.Popen(
                    [args.baseline, "serve", "--config", baseline_config],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                    env={k: v for k, v in os.environ.items() if k != "RUST_LOG"})
                wait_port(port)
            train_surrogate(apps, token, BASELINE_EXPLAIN_PORT, BASELINE_EXPLAIN_PORT + 1000)
        nginx_conf = work / "nginx.conf"
        nginx_conf.write_text((ROOT / "bench/nginx.conf").read_text()
                              .replace("__PORT__", str(NGINX_PORT))
                              .replace("__UPSTREAM__", f"127.0.0.1:{MODEL_PORT}")
                              .replace("__DIR__", str(work)))
        procs["nginx"] = subprocess.Popen(
            [need("nginx"), "-c", str(nginx_conf), "-p", str(work), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(NGINX_PORT)

        batch32 = body_of(apps[:32])
        # name -> (port, body)
        targets = {
            "direct": (MODEL_PORT, BODY), "nginx": (NGINX_PORT, BODY),
            "sidelight": (SIDELIGHT_PORT, BODY), "sidelight explaining": (EXPLAIN_PORT, BODY),
            "direct, batch 32": (MODEL_PORT, batch32),
            "sidelight, batch 32": (SIDELIGHT_PORT, batch32),
            "sidelight explaining, batch 32": (EXPLAIN_PORT, batch32),
            "sidelight explaining + audit sync": (AUDIT_SYNC_PORT, BODY),
            "sidelight explaining + audit async": (AUDIT_ASYNC_PORT, BODY),
        }
        if args.baseline:
            targets["baseline"] = (BASELINE_PORT, BODY)
            targets["baseline explaining"] = (BASELINE_EXPLAIN_PORT, BODY)
        if args.only:
            targets = {name: t for name, t in targets.items()
                       if args.only in name or name in ("direct", "nginx", "sidelight",
                                                          "sidelight explaining")}
        idle_rss = rss_kib(procs["sidelight"].pid)
        for port, body in targets.values():  # warm pools and caches
            wrk(port, 1, 8, body)
        saturation = {t: [] for t in targets}
        moderate = {t: [] for t in targets}
        for r in range(args.rounds):
            for name, (port, body) in targets.items():
                saturation[name].append(wrk(port, args.seconds, 32, body))
            for name, (port, body) in targets.items():
                moderate[name].append(oha(port, args.seconds, args.rate, 4, body))
            print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
        loaded_rss = rss_kib(procs["sidelight"].pid)

        def med(rows, key):
            return statistics.median(row[key] for row in rows)

        print(f"\n{args.rounds} interleaved round(s) of {args.seconds} s per "
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
        for suffix in ["", ", batch 32"] if "direct, batch 32" in targets else [""]:
            explained = med(saturation["sidelight explaining" + suffix], "rps")
            plain = med(saturation["sidelight" + suffix], "rps")
            added = (med(moderate["sidelight explaining" + suffix], "p99_ms")
                     - med(moderate["direct" + suffix], "p99_ms"))
            goal = "<= 0.5 ms" if not suffix else "<= 1.5 ms"
            print(f"explaining{suffix or ', batch 1'}: throughput {explained / plain:.2f}x of "
                  f"pass-through (goal >= 0.60x at batch 1); p99 added over direct at "
                  f"{args.rate} req/s: {added:+.3f} ms (goal {goal})")
            if suffix:
                print(f"explaining, batch 32: {explained * 32:,.0f} rows/s explained at "
                      "saturation")
        explaining_p99 = med(moderate["sidelight explaining"], "p99_ms")
        for mode in ["sync", "async"]:
            name = f"sidelight explaining + audit {mode}"
            if name not in targets:
                continue
            print(f"audit {mode}: p99 added over explaining at {args.rate} req/s: "
                  f"{med(moderate[name], 'p99_ms') - explaining_p99:+.3f} ms"
                  f"{' (goal <= 1.5 ms)' if mode == 'sync' else ''}; throughput "
                  f"{med(saturation[name], 'rps') / med(saturation['sidelight explaining'], 'rps'):.2f}x "
                  "of explaining")
        if args.baseline:
            for this, base in [("sidelight", "baseline"),
                               ("sidelight explaining", "baseline explaining")]:
                print(f"{this} / {base}: throughput "
                      f"{med(saturation[this], 'rps') / med(saturation[base], 'rps'):.2f}x; "
                      f"p99 at {args.rate} req/s {med(moderate[this], 'p99_ms'):.3f} ms "
                      f"against {med(moderate[base], 'p99_ms'):.3f} ms")
        print(f"p99 added at {args.rate} req/s: sidelight {added_p99:+.3f} ms, "
              f"nginx {nginx_added:+.3f} ms (goal for sidelight: nginx's + 0.05 ms)")
        print(f"sidelight RSS: {idle_rss / 1024:.1f} MiB idle, "
              f"{loaded_rss / 1024:.1f} MiB after the load")
    finally:
        stop(procs)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
