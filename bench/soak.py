#!/usr/bin/env python3
"""Soak: Sidelight under minutes of mixed load with retraining, monitoring, review rules
and the audit log all active; checks that its memory stays bounded, that errors stay
rare, and ends by itself.

Run from the repository root:

    python3 bench/soak.py                 # 5 minutes
    python3 bench/soak.py --minutes 3

Not part of CI (too long). The demo model serves the German credit data; one Sidelight
explains its route with a surrogate that retrains every --retrain-rows rows, monitors
fairness and drift every 2 s, applies review rules and keeps a SQLite audit log. A pool
of client threads (Python, keep-alive) mixes: single and batch predictions (each with a
subject), feedback posts for recent records, admin reads, a probe check and an erasure
now and then. Every --sample seconds the proxy's RSS, /metrics and the admin API are
sampled. At the end a table is printed, and the exit status is 1 when the RSS after the
run is above --growth x the RSS after the warm-up or above --cap-mib, or when more than
--max-error-share of the calls failed (5xx or a broken connection).
"""

import argparse
import collections
import http.client
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from passthrough import ROOT, applications, rss_kib, stop, wait_port  # noqa: E402

MODEL_PORT, PORT, ADMIN = 18300, 18301, 19301
AUDIT_KEY = "a5" * 32
ROUTE = "/v1/models/credit:predict"


def config(state, db, retrain_rows):
    # The soak's few client threads stand for many customers, each reporting with its
    # record's feedback token: the per-address limit on reports is lifted.
    return (f'[server]\nlisten = "127.0.0.1:{PORT}"\nadmin_listen = "127.0.0.1:{ADMIN}"\n'
            '[server.trust]\nfeedback_per_minute = 1000000\n'
            f'[upstream]\nurl = "http://127.0.0.1:{MODEL_PORT}"\n[log]\nlevel = "warn"\n'
            f'[state]\ndir = "{state}"\n'
            f'[audit]\npath = "{db}"\ndurability = "sync"\n'
            '[[routes]]\nname = "credit"\npath_prefix = "/v1/models/credit"\n'
            '[routes.explain]\nprotocol = "kserve_v1"\noutput = "probability"\n'
            '[routes.explain.decision]\nthreshold = 0.5\n'
            '[routes.explain.surrogate]\nwarm_up_rows = 300\nwindow_rows = 3000\n'
            f'retrain_every_rows = {retrain_rows}\nretrain_interval = "1h"\nmin_r2 = 0.0\n'
            'trees = 50\ndepth = 5\n'
            '[routes.review]\nthreshold_margin = 0.05\nout_of_distribution = true\n'
            'sample_rate = 0.01\n'
            '[routes.monitor]\nwindow_rows = 5000\nevery = "2s"\n'
            '[[routes.monitor.protected]]\nfeature = "age_years"\nbands = [25]\n'
            'privileged = ">=25"\nunprivileged = ["<25"]\n')


class Client:
    """One keep-alive connection per port, reopened after a failure."""

    def __init__(self, token):
        self.token = token
        self.conns = {}

    def call(self, port, method, path, body=None, headers=None):
        """(status, headers, body bytes); status 0 for a broken connection."""
        headers = dict(headers or {})
        if port == ADMIN:
            headers["authorization"] = f"Bearer {self.token}"
        if body is not None:
            headers["content-type"] = "application/json"
        for attempt in range(2):
            conn = self.conns.get(port)
            if conn is None:
                conn = self.conns[port] = http.client.HTTPConnection("127.0.0.1", port,
                                                                     timeout=30)
            try:
                conn.request(method, path, body=body, headers=headers)
                answer = conn.getresponse()
                return answer.status, answer.headers, answer.read()
            except (OSError, http.client.HTTPException):
                conn.close()
                self.conns.pop(port, None)
                # A keep-alive connection the server closed while idle: retry once on a
                # fresh one; a second failure is a real one.
                if attempt == 1:
                    return 0, {}, b""
        return 0, {}, b""


class Tally:
    def __init__(self):
        self.lock = threading.Lock()
        self.by_kind = collections.defaultdict(collections.Counter)
        self.records = collections.deque(maxlen=500)
        self.request_ids = collections.deque(maxlen=50)
        self.subjects = collections.deque(maxlen=500)

    def count(self, kind, status):
        with self.lock:
            self.by_kind[kind][status] += 1


def worker(seed, token, apps, tally, stopping):
    rng = random.Random(seed)
    client = Client(token)
    n = 0
    while not stopping.is_set():
        n += 1
        roll = rng.random()
        if roll < 0.75:
            batch = 1 if roll < 0.60 else 16
            start = rng.randrange(len(apps) - batch)
            subject = f"soak-{seed}-{n}"
            status, headers, _ = client.call(
                PORT, "POST", ROUTE, json.dumps({"instances": apps[start:start + batch]}),
                {"x-sidelight-subject": subject})
            kind = "predict" if batch == 1 else "predict batch 16"
            tally.count(kind, status)
            if status == 200:
                with tally.lock:
                    if headers.get("x-sidelight-record-id"):
                        tally.records.append((headers["x-sidelight-record-id"],
                                              headers.get("x-sidelight-feedback-token", "")))
                    if batch == 1 and headers.get("x-request-id"):
                        tally.request_ids.append(headers["x-request-id"])
                    tally.subjects.append(subject)
        elif roll < 0.87:
            with tally.lock:
                record = rng.choice(tally.records) if tally.records else None
            if record is None:
                continue
            record, token = record
            status, _, _ = client.call(PORT, "POST", "/v1/feedback",
                                       json.dumps({"id": record, "token": token,
                                                   "outcome": rng.random() < 0.5}))
            tally.count("feedback", status)
        elif roll < 0.97:
            path = rng.choice(["/api/v1/surrogates", "/api/v1/monitoring",
                               "/api/v1/reviews?state=pending&limit=20",
                               "/api/v1/records?limit=20", "/readyz"])
            status, _, _ = client.call(ADMIN, "GET", path)
            tally.count("admin read", status)
        elif roll < 0.99:
            with tally.lock:
                request_id = rng.choice(tally.request_ids) if tally.request_ids else None
            if request_id is None:
                continue
            status, _, _ = client.call(
                ADMIN, "POST", f"/api/v1/probe/{request_id}?row=0&max_calls=40&background=10")
            tally.count("probe", status)
        else:
            with tally.lock:
                subject = tally.subjects.popleft() if tally.subjects else None
            if subject is None:
                continue
            status, _, _ = client.call(ADMIN, "POST", "/api/v1/erasure",
                                       json.dumps({"subject_id": subject}))
            tally.count("erasure", status)


def metric_sum(text, name):
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            try:
                total += float(line.rsplit(" ", 1)[1])
            except ValueError:
                pass
    return total


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--sample", type=float, default=5.0, help="seconds between samples")
    parser.add_argument("--warm-up", type=float, default=60.0,
                        help="seconds before the RSS reference is taken")
    parser.add_argument("--retrain-rows", type=int, default=2000)
    parser.add_argument("--growth", type=float, default=1.5)
    parser.add_argument("--cap-mib", type=float, default=512.0)
    parser.add_argument("--max-error-share", type=float, default=0.001)
    args = parser.parse_args()

    subprocess.run(["cargo", "build", "--release", "--quiet", "-p", "sidelight",
                    "-p", "sidelight-demo-model"], cwd=ROOT, check=True)
    out = subprocess.run([ROOT / "target/release/sidelight", "token", "new", "--name", "soak",
                          "--role", "admin"], capture_output=True, text=True, check=True).stdout
    # stdout: the token on the first line, then its config entry.
    secret, _, entry = out.partition("\n")
    token = secret.strip()
    work = Path(tempfile.mkdtemp(prefix="sidelight-soak-"))
    procs = {}
    env = {k: v for k, v in os.environ.items()
           if k != "RUST_LOG" and not k.startswith("SIDELIGHT_")}
    env["SIDELIGHT_AUDIT_KEY"] = AUDIT_KEY
    failed = True
    try:
        procs["model"] = subprocess.Popen(
            [ROOT / "target/release/demo-model", "--listen", f"127.0.0.1:{MODEL_PORT}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(MODEL_PORT)
        path = work / "sidelight.toml"
        path.write_text(config(work / "state", work / "audit.db", args.retrain_rows) + entry)
        proxy = procs["proxy"] = subprocess.Popen(
            [ROOT / "target/release/sidelight", "serve", "--config", path],
            stdout=subprocess.DEVNULL, stderr=open(work / "sidelight.log", "w"), env=env)
        wait_port(PORT)
        wait_port(ADMIN)

        apps = applications()
        tally = Tally()
        stopping = threading.Event()
        threads = [threading.Thread(target=worker, args=(i, token, apps, tally, stopping))
                   for i in range(args.workers)]
        started = time.time()
        deadline = started + args.minutes * 60
        for t in threads:
            t.start()

        sampler = Client(token)
        samples = []  # (seconds, rss KiB, requests so far)
        computations = set()
        versions = set()
        warm_rss = None
        next_sample = started + args.sample
        while time.time() < deadline:
            # The admin API is read every second, so that no monitor computation and no
            # trained surrogate (the history keeps the last 50) goes unseen.
            time.sleep(min(1.0, max(0.0, deadline - time.time())))
            if proxy.poll() is not None:
                sys.exit(f"soak: sidelight exited with {proxy.returncode}; logs in {work}")
            status, _, body = sampler.call(ADMIN, "GET", "/api/v1/monitoring")
            if status == 200:
                for route in json.loads(body).get("routes", []):
                    latest = route.get("latest") or {}
                    if "computed_at" in latest:
                        computations.add(latest["computed_at"])
            status, _, body = sampler.call(ADMIN, "GET", "/api/v1/surrogates")
            if status == 200:
                for route in json.loads(body).get("routes", []):
                    for trained in route.get("history") or []:
                        versions.add(json.dumps(trained.get("version"), sort_keys=True))
            if time.time() < next_sample and time.time() < deadline - 0.5:
                continue
            next_sample += args.sample
            now = time.time() - started
            status, _, body = sampler.call(ADMIN, "GET", "/metrics")
            requests = metric_sum(body.decode(), "sidelight_requests_total") if status == 200 else 0
            rss = rss_kib(proxy.pid)
            samples.append((now, rss, requests))
            if warm_rss is None and now >= args.warm_up:
                warm_rss = rss
            print(f"{now:6.0f} s  RSS {rss / 1024:6.1f} MiB  requests {requests:,.0f}",
                  file=sys.stderr)
        stopping.set()
        for t in threads:
            t.join()
        status, _, metrics = sampler.call(ADMIN, "GET", "/metrics")
        metrics = metrics.decode()
        proxy.send_signal(signal.SIGTERM)
        code = proxy.wait(timeout=60)

        rss = [s[1] for s in samples]
        warm_rss = warm_rss or rss[0]
        calls = sum(sum(c.values()) for c in tally.by_kind.values())
        errors = sum(n for c in tally.by_kind.values() for s, n in c.items() if s == 0 or s >= 500)
        elapsed = samples[-1][0]
        print(f"\nsoak: {elapsed / 60:.1f} min, {args.workers} client threads, "
              f"{os.cpu_count()} cores shared by clients, proxy and model\n")
        print("| calls | count | by status |")
        print("|---|---:|---|")
        for kind in sorted(tally.by_kind):
            counter = tally.by_kind[kind]
            by = ", ".join(f"{s or 'broken'}: {n:,}" for s, n in sorted(counter.items()))
            print(f"| {kind} | {sum(counter.values()):,} | {by} |")
        print()
        print("| figure | value |")
        print("|---|---:|")
        print(f"| RSS first / after warm-up / max / last | {rss[0] / 1024:.1f} / "
              f"{warm_rss / 1024:.1f} / {max(rss) / 1024:.1f} / {rss[-1] / 1024:.1f} MiB |")
        print(f"| data-port requests (sidelight_requests_total) | "
              f"{metric_sum(metrics, 'sidelight_requests_total'):,.0f} |")
        print(f"| failed calls (5xx or broken) | {errors:,} of {calls:,} |")
        print(f"| surrogates trained | {len(versions)} |")
        print(f"| monitor computations seen | {len(computations)} |")
        print(f"| audit records committed | "
              f"{metric_sum(metrics, 'sidelight_audit_committed_records_total'):,.0f} |")
        print(f"| audit failures | {metric_sum(metrics, 'sidelight_audit_failures_total'):,.0f} |")
        print(f"| exit status after SIGTERM | {code} |")

        problems = []
        if rss[-1] > args.growth * warm_rss:
            problems.append(f"RSS grew to {rss[-1] / 1024:.1f} MiB, over {args.growth}x the "
                            f"{warm_rss / 1024:.1f} MiB after the warm-up")
        if max(rss) > args.cap_mib * 1024:
            problems.append(f"RSS reached {max(rss) / 1024:.1f} MiB, over {args.cap_mib} MiB")
        if errors > args.max_error_share * max(calls, 1):
            problems.append(f"{errors} failed calls of {calls}")
        if len(versions) < 2:
            problems.append("the surrogate did not retrain during the run")
        if not computations:
            problems.append("the monitor never computed")
        if code != 0:
            problems.append(f"sidelight exited with {code} after SIGTERM")
        for p in problems:
            print(f"soak: FAIL: {p}", file=sys.stderr)
        failed = bool(problems)
        if not failed:
            print("\nsoak: pass", file=sys.stderr)
    finally:
        stop(procs)
        if failed:
            print(f"soak: logs kept in {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
