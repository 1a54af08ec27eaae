#!/usr/bin/env python3
"""Fleet scale: what one Sidelight replica asks of a shared PostgreSQL database, per
request and per second, and how many replicas one database carries at a given rate.

Run from the repository root (about 2 minutes):

    python3 bench/fleet_scale.py                       # 2 replicas, 300 req/s each, 20 s
    python3 bench/fleet_scale.py --replicas 3 --rate 200 --seconds 30

Needs Debian's `postgresql` package (a throwaway server is initialised under a temporary
directory, as the tests do) and oha (cargo install oha). The replicas explain every
request of the demo model (one application per request) and record it in the shared
audit log (`durability = "async"`, the default). Measured, with the database's own
counters (pg_stat_database) and the CPU time of every PostgreSQL process (/proc):

- idle: transactions per second and replica when no request comes (surrogate and
  erasure polling, witness, housekeeping);
- under load: transactions, rows written and database CPU per request.

Then computed: how many replicas one database core carries at the given rate per replica
(database CPU per request x rate), and the transactions per second the database sees.
One machine runs everything (proxies, model, load, database), so the database's CPU per
request is what it spends on this traffic, measured, not its share of the machine.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from passthrough import (ROOT, BODY, applications, need, stop,  # noqa: E402
                         train_surrogate, wait_port)

MODEL_PORT = 18300
FIRST_PORT = 18310
AUDIT_KEY = "5e" * 32


def pg_bin():
    versions = sorted((int(p.name), p / "bin") for p in Path("/usr/lib/postgresql").iterdir()
                      if p.name.isdigit() and (p / "bin/initdb").exists())
    if not versions:
        sys.exit("bench: PostgreSQL is not installed (apt-get install postgresql)")
    return versions[-1][1]


def as_postgres(args):
    """Runs a PostgreSQL program as the `postgres` user when we are root (initdb refuses
    root)."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *args]
    return args


def psql(port, sql):
    out = subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-At",
                          "-c", sql], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def pg_cpu_seconds(data_dir):
    """User and system CPU of the server and every backend, from /proc."""
    pid = int((data_dir / "postmaster.pid").read_text().split()[0])
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    for p in [pid, *map(int, children.split())]:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total / tick


def counters(port):
    row = psql(port, "SELECT xact_commit, tup_inserted, tup_updated, tup_deleted "
                     "FROM pg_stat_database WHERE datname = 'postgres'")
    return [int(x) for x in row.split("|")]


def table_rows(port):
    """Rows inserted and deleted so far, per table."""
    out = psql(port, "SELECT relname, n_tup_ins, n_tup_del FROM pg_stat_user_tables")
    rows = {}
    for line in out.splitlines():
        name, ins, dele = line.split("|")
        rows[name] = (int(ins), int(dele))
    return rows


def oha(port, seconds, rate):
    out = subprocess.run(
        [need("oha"), "-z", f"{seconds}s", "-q", str(rate), "-c", "4", "--no-tui",
         "--output-format", "json", "-m", "POST", "-H", "content-type: application/json",
         "-d", BODY, f"http://127.0.0.1:{port}/v1/models/credit:predict"],
        capture_output=True, text=True, check=True)
    data = json.loads(out.stdout)
    return data.get("statusCodeDistribution", {}).get("200", 0)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--rate", type=int, default=300, help="requests/s per replica")
    parser.add_argument("--seconds", type=int, default=20)
    args = parser.parse_args()
    subprocess.run(["cargo", "build", "--release", "--quiet", "-p", "sidelight",
                    "-p", "sidelight-demo-model"], cwd=ROOT, check=True)
    need("oha"), need("psql")
    work = Path(tempfile.mkdtemp(prefix="sidelight-fleet-"))
    os.chmod(work, 0o755)
    data = work / "pg"
    procs = {}
    pg_port = FIRST_PORT - 1
    try:
        data.mkdir()
        if os.geteuid() == 0:
            shutil.chown(data, "postgres", "postgres")
        bin_dir = pg_bin()
        subprocess.run(as_postgres([bin_dir / "initdb", "-D", data, "-U", "postgres", "-A",
                                    "trust", "-E", "UTF8", "--locale=C", "--no-sync"]),
                       check=True, capture_output=True)
        subprocess.run(as_postgres([bin_dir / "pg_ctl", "start", "-w", "-D", data, "-l",
                                    data / "server.log", "-o",
                                    f"-c port={pg_port} -c listen_addresses=127.0.0.1 "
                                    f"-c unix_socket_directories='{data}'"]),
                       check=True, capture_output=True)
        procs["model"] = subprocess.Popen(
            [ROOT / "target/release/demo-model", "--listen", f"127.0.0.1:{MODEL_PORT}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(MODEL_PORT)
        token_out = subprocess.run([ROOT / "target/release/sidelight", "token", "new", "--name",
                                    "bench", "--role", "viewer"],
                                   capture_output=True, text=True, check=True).stdout
        token, _, token_entry = token_out.partition("\n")
        ports = []
        for i in range(args.replicas):
            port, admin = FIRST_PORT + 2 * i, FIRST_PORT + 2 * i + 1
            config = work / f"replica-{i}.toml"
            config.write_text(
                f'[server]\nlisten = "127.0.0.1:{port}"\nadmin_listen = "127.0.0.1:{admin}"\n'
                f'[upstream]\nurl = "http://127.0.0.1:{MODEL_PORT}"\n[log]\nlevel = "warn"\n'
                f'[state]\ndir = "{work / f"state-{i}"}"\n'
                f'[audit]\nbackend = "postgres"\nwriter = "replica-{i}"\n'
                f'url = "postgresql://postgres@127.0.0.1:{pg_port}/postgres?sslmode=disable"\n'
                '[[routes]]\nname = "credit"\npath_prefix = "/v1/models/credit"\n'
                '[routes.explain]\nprotocol = "kserve_v1"\noutput = "probability"\n'
                '[routes.explain.surrogate]\nwarm_up_rows = 900\nwindow_rows = 5000\n'
                'retrain_every_rows = 1000000\nretrain_interval = "24h"\nmin_r2 = 0.0\n'
                'trees = 100\ndepth = 6\ncpu_share = 1.0\n' + token_entry)
            procs[f"replica-{i}"] = subprocess.Popen(
                [ROOT / "target/release/sidelight", "serve", "--config", config],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                env={**{k: v for k, v in os.environ.items() if k != "RUST_LOG"},
                     "SIDELIGHT_AUDIT_KEY": AUDIT_KEY})
            wait_port(port)
            ports.append((port, admin))
        apps = applications()
        for port, admin in ports:
            train_surrogate(apps, token.strip(), port, admin)

        # Idle: what replicas write with no traffic.
        idle_seconds = 10
        before, cpu0 = counters(pg_port), pg_cpu_seconds(data)
        time.sleep(idle_seconds)
        after, cpu1 = counters(pg_port), pg_cpu_seconds(data)
        idle_tx = (after[0] - before[0]) / idle_seconds / args.replicas
        idle_cpu = (cpu1 - cpu0) / idle_seconds

        # Load: every replica at the same fixed rate, at once.
        before, cpu0 = counters(pg_port), pg_cpu_seconds(data)
        tables0 = table_rows(pg_port)
        started = time.time()
        loads = [subprocess.Popen(
            [sys.executable, "-c",
             "import sys; sys.path.insert(0, 'bench'); import fleet_scale as f; "
             f"print(f.oha({port}, {args.seconds}, {args.rate}))"],
            cwd=ROOT, stdout=subprocess.PIPE, text=True) for port, _ in ports]
        answered = sum(int(p.communicate()[0].strip() or 0) for p in loads)
        # Async records reach the database a moment after their responses.
        time.sleep(2)
        elapsed = time.time() - started
        after, cpu1 = counters(pg_port), pg_cpu_seconds(data)
        tables1 = table_rows(pg_port)
        tx, ins, upd, dele = (a - b for a, b in zip(after, before))
        cpu = (cpu1 - cpu0) - idle_cpu * elapsed
        records = int(psql(pg_port, "SELECT count(*) FROM audit_records"))
        per_request_cpu = cpu / answered if answered else float("nan")
        print(f"{args.replicas} replicas, {args.rate} req/s each for {args.seconds} s: "
              f"{answered} requests answered, {records} records in the shared log")
        print(f"idle: {idle_tx:.2f} transactions/s per replica")
        print(f"per request: {tx / answered:.3f} transactions, {ins / answered:.2f} rows "
              f"inserted, {upd / answered:.2f} updated, {dele / answered:.3f} deleted; "
              f"database CPU {per_request_cpu * 1e6:.0f} µs")
        for name in sorted(tables1):
            i0, d0 = tables0.get(name, (0, 0))
            i1, d1 = tables1[name]
            if i1 - i0 or d1 - d0:
                print(f"  {name}: {(i1 - i0) / answered:.2f} rows inserted, "
                      f"{(d1 - d0) / answered:.2f} deleted per request")
        per_replica_tx = tx / answered * args.rate + idle_tx
        cores_per_replica = per_request_cpu * args.rate
        print(f"per replica at {args.rate} req/s: {per_replica_tx:.0f} transactions/s, "
              f"{cores_per_replica:.3f} database cores")
        if cores_per_replica > 0:
            print(f"one database core carries about {1 / cores_per_replica:.0f} replicas "
                  f"at {args.rate} req/s each ({args.rate / cores_per_replica:,.0f} "
                  "requests/s in all)")
    finally:
        stop(procs)
        if (data / "postmaster.pid").exists():
            subprocess.run(as_postgres([pg_bin() / "pg_ctl", "stop", "-D", data, "-m", "fast"]),
                           capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
