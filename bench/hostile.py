#!/usr/bin/env python3
"""Hostile clients: a normal client's latency and Sidelight's memory while other clients
send the most expensive requests the data port accepts, back to back.

Run from the repository root:

    python3 bench/hostile.py                # about 2 minutes
    python3 bench/hostile.py --seconds 10   # shorter phases

Needs oha (cargo install oha). Everything runs on this machine: the demo model, one
Sidelight explaining its credit route (features inferred from the traffic, customer
audience, decisions at 0.5, so declined customers get next steps), and the clients.

Two phases of --seconds each, measured in one run:
  - calm:    the normal client alone: oha at --rate single-application requests/s;
  - hostile: the same normal client while --hostile threads loop over the attacks of
             issue 17: 1,000-row batches of declined customers (the row cap; the most
             explaining and next-step search one request may ask for), requests of
             60,000 keys, rows with 900 KB text cells, and bursts of outcome reports.

A third phase keeps the attack on Sidelight while the normal client asks the model
directly: on one shared machine it says how much of the slowdown is the machine's.

Printed side by side: the normal client's p50 and p99 in each phase and the ratios
(the goal: hostile p99 within 2x of calm p99), the proxy's peak RSS in each phase
against its configured memory budgets, and the limits that bit (from /metrics). The exit
status is 1 when the p99 ratio is above --max-ratio or the peak RSS above --rss-cap-mib.
"""

import argparse
import http.client
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from passthrough import (ROOT, admin_token, applications, body_of, oha, rss_kib,  # noqa: E402
                         train_surrogate, wait_port)

MODEL_PORT, PORT, ADMIN = 18400, 18401, 19401
ROUTE = "/v1/models/credit:predict"


def config(state, token_entry):
    return (f'[server]\nlisten = "127.0.0.1:{PORT}"\nadmin_listen = "127.0.0.1:{ADMIN}"\n'
            f'[upstream]\nurl = "http://127.0.0.1:{MODEL_PORT}"\n[log]\nlevel = "warn"\n'
            f'[state]\ndir = "{state}"\n{token_entry}\n'
            '[[routes]]\nname = "credit"\npath_prefix = "/v1/models/credit"\n'
            '[routes.explain]\nprotocol = "kserve_v1"\noutput = "probability"\n'
            '[routes.explain.decision]\nthreshold = 0.5\n'
            '[routes.explain.surrogate]\nwarm_up_rows = 300\nretrain_every_rows = 100000\n'
            'retrain_interval = "1h"\nmin_r2 = 0.0\n')


def declined(apps):
    """The applications the demo model declines most surely: long, large loans."""
    ranked = sorted(apps, key=lambda a: -(a["duration_months"] * a["credit_amount"]))
    return ranked[:200]


class Attacker(threading.Thread):
    def __init__(self, kind, body, stop, counts):
        super().__init__(daemon=True)
        self.kind, self.body, self.stop, self.counts = kind, body, stop, counts

    def run(self):
        conn = None
        while not self.stop.is_set():
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=60)
                path = "/v1/feedback" if self.kind.startswith("feedback") else ROUTE
                conn.request("POST", path, self.body, {"content-type": "application/json"})
                answer = conn.getresponse()
                answer.read()
                status = answer.getheader("x-sidelight-status") or str(answer.status)
                key = (self.kind, status.split(";")[0])
                self.counts[key] = self.counts.get(key, 0) + 1
            except (OSError, http.client.HTTPException):
                conn = None
                self.counts[(self.kind, "broken")] = self.counts.get((self.kind, "broken"), 0) + 1


def attacks(apps):
    bad = declined(apps)
    batch = body_of([bad[i % len(bad)] for i in range(1000)])
    wide_row = dict(apps[0])
    wide_row.update({f"k{k}": k for k in range(60_000)})
    wide = body_of([wide_row])
    long_cells = body_of([{**apps[i], "purpose": "x" * 900_000} for i in range(1)])
    feedback = json.dumps({"id": "guess", "outcome": 1})
    return [("batch_1000_declined", batch), ("60000_keys", wide),
            ("900kb_text_cell", long_cells), ("feedback_flood", feedback)]


def sample_rss(pid, stop, peak):
    while not stop.is_set():
        peak[0] = max(peak[0], rss_kib(pid))
        time.sleep(0.1)


def phase(pid, seconds, rate, attackers, port=PORT):
    stop, peak = threading.Event(), [rss_kib(pid)]
    sampler = threading.Thread(target=sample_rss, args=(pid, stop, peak), daemon=True)
    sampler.start()
    for a in attackers:
        a.start()
    time.sleep(1 if attackers else 0)
    result = oha(port, seconds, rate, 4, body_of([applications()[5]]))
    for a in attackers:
        a.stop.set()
    stop.set()
    sampler.join()
    for a in attackers:
        a.join(timeout=60)
    return result, peak[0] / 1024


def limit_hits():
    import urllib.request
    text = urllib.request.urlopen(f"http://127.0.0.1:{ADMIN}/metrics").read().decode()
    return {line.split('"')[1]: float(line.split()[-1]) for line in text.splitlines()
            if line.startswith("sidelight_limit_hits_total{")}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--rate", type=int, default=200)
    parser.add_argument("--hostile", type=int, default=2,
                        help="threads per attack sending back to back")
    parser.add_argument("--max-ratio", type=float, default=2.0)
    parser.add_argument("--rss-cap-mib", type=float, default=400.0)
    args = parser.parse_args()

    subprocess.run(["cargo", "build", "--release", "--quiet", "-p", "sidelight",
                    "-p", "sidelight-demo-model"], cwd=ROOT, check=True)
    token, token_entry = admin_token()
    work = Path(tempfile.mkdtemp(prefix="sidelight-hostile-"))
    apps = applications()
    procs = []
    try:
        procs.append(subprocess.Popen(
            [ROOT / "target/release/demo-model", "--listen", f"127.0.0.1:{MODEL_PORT}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_port(MODEL_PORT)
        path = work / "sidelight.toml"
        path.write_text(config(work / "state", token_entry))
        proxy = subprocess.Popen(
            [ROOT / "target/release/sidelight", "serve", "--config", path],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env={k: v for k, v in os.environ.items() if k != "RUST_LOG"})
        procs.append(proxy)
        wait_port(PORT)
        train_surrogate(apps, token, port=PORT, admin_port=ADMIN)

        calm, calm_rss = phase(proxy.pid, args.seconds, args.rate, [])
        counts = {}
        stop = threading.Event()
        attackers = [Attacker(kind, body, stop, counts)
                     for kind, body in attacks(apps) for _ in range(args.hostile)]
        for a in attackers:
            a.stop = stop
        hostile, hostile_rss = phase(proxy.pid, args.seconds, args.rate, attackers)
        # The same attack through Sidelight while the normal client asks the model
        # directly: what the attack costs a request that never meets Sidelight's
        # workers, i.e. the machine's share of the slowdown (everything here shares
        # its cores: the model, the attackers, the load generator).
        stop = threading.Event()
        again = [Attacker(kind, body, stop, {})
                 for kind, body in attacks(apps) for _ in range(args.hostile)]
        for a in again:
            a.stop = stop
        direct, _ = phase(proxy.pid, args.seconds, args.rate, again, port=MODEL_PORT)

        ratio = hostile["p99_ms"] / calm["p99_ms"] if calm["p99_ms"] else float("inf")
        print(f"\nnormal client, {args.rate} single-row requests/s, {args.seconds} s per phase\n")
        print(f"| phase   | p50 ms | p99 ms | errors | peak RSS MiB |")
        print(f"|---------|--------|--------|--------|--------------|")
        for name, r, rss in [("calm", calm, calm_rss), ("hostile", hostile, hostile_rss)]:
            print(f"| {name:7} | {r['p50_ms']:6.2f} | {r['p99_ms']:6.2f} | {r['errors']:6} "
                  f"| {rss:12.0f} |")
        print(f"| direct  | {direct['p50_ms']:6.2f} | {direct['p99_ms']:6.2f} | "
              f"{direct['errors']:6} |  (the model) |")
        print(f"\np99 hostile / calm: {ratio:.2f}x (goal: at most {args.max_ratio}x)")
        if direct["p99_ms"]:
            print(f"p99 hostile through Sidelight / hostile straight to the model: "
                  f"{hostile['p99_ms'] / direct['p99_ms']:.2f}x")
        print("memory budgets configured: training window 64 MiB, explanation store 64 MiB")
        print("\nhostile requests answered, by attack and x-sidelight-status:")
        for (kind, status), n in sorted(counts.items()):
            print(f"  {kind:22} {status:28} {n}")
        print("\nlimits that bit (sidelight_limit_hits_total):")
        for limit, n in sorted(limit_hits().items()):
            print(f"  {limit:22} {n:.0f}")
        failed = ratio > args.max_ratio or hostile_rss > args.rss_cap_mib
        sys.exit(1 if failed else 0)
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()


if __name__ == "__main__":
    main()
