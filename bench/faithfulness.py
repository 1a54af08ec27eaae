#!/usr/bin/env python3
"""Faithfulness benchmark: how close Sidelight's live explanations come to the REAL
model's own attributions, with and without active distillation.

Run from the repository root:

    python3 bench/faithfulness.py [--dataset german|cancer|both] [--distill on|off|both]
                                  [--rows 2000] [--eval 200] [--probes 10]
                                  [--json PATH] [--binary PATH | --release] [--build]
                                  [--positional-names]

About 4 minutes for the default (both data sets, both modes) with the debug binary on 2
cores: under half a minute without distillation, about a minute with it (the distiller
spends its budget and the surrogate settles), per data set. The first run also builds
what is missing (target/debug/sidelight, two virtualenvs), which takes longer.

What it does, per data set:

  1. Trains a scikit-learn GradientBoostingClassifier (100 trees of depth 3,
     random_state=0) on the whole data set and serves it with MLServer 1.7
     (mlserver_sklearn) on 127.0.0.1: one FP64 tensor `input-0` of shape [batch, k].
       - german: data/german-credit/german_credit.csv, its 20 columns in file order;
         each categorical column is sent as the integer position of its label among the
         column's labels sorted by Python's string order (`sorted(set(...))`); target
         credit_risk, bad = 1.
       - cancer: scikit-learn's bundled breast-cancer data (load_breast_cancer), its 30
         correlated numeric measurements in sklearn's order; target as sklearn has it
         (1 = benign).
  2. Holds --eval distinct rows apart (seeded; at most a third of the data set, so 189 for
     breast cancer), then, per mode, starts a fresh Sidelight
     in front of MLServer (one Open Inference v2 route, the real column names as
     `[[routes.explain.features]]`, numeric, audience developer, output probability,
     explain_class 1, warm_up_rows 200, otherwise the route defaults: 100 trees of
     depth 6, min_r2 0.8) and drives --rows live rows through its data port, 8 per
     request, drawn with replacement from the rows not held apart (breast cancer has
     only 569 rows, so many repeat). Requests are written as MLServer's documentation
     and the Triton client (binary_data=False) write them, with plain urllib:
     {"inputs":[{"name":"input-0","shape":[n,k],"datatype":"FP64","data":[...]}],
      "outputs":[{"name":"predict_proba"}]}.
     retrain_interval is 5 s so that the surrogate that explains the evaluation was
     trained on all the live rows, whatever the timing: the script waits until a
     training that covered them all has finished, a surrogate is in service, and for
     8 s no version was added, no row distilled and the trainer thread used no CPU.
  3. Sends the held-apart rows one per request with `x-sidelight-audience: developer`
     and `x-sidelight-probe: 1` (explained, but not trained on: the evaluation rows stay
     out of the training window), except the last --probes of them, sent without it so
     that Sidelight keeps them for `POST /api/v1/probe/{x-request-id}?max_calls=200`.
  4. Compares each response's attributions (logit of class 1; the sign flipped when a
     row's `output` is class 0) with shap.TreeExplainer(model) on the same rows: the
     model's own path-dependent TreeSHAP of its log-odds, the same space. Per row:
     Spearman's rank correlation (scipy; two constant vectors agree fully, one
     constant vector against a varying one scores 0), whether the feature with the
     largest |attribution| is the same (top-1), and whether the top-3 sets by
     |attribution| are the same (top-3). Means over the rows that were explained.

Reported per data set, without and with `[routes.explain.distill] enabled = true`
(shown as "not available in this build" when Sidelight refuses the key):
  - held-out R² of the surrogate in service, from GET /api/v1/surrogates (goal >= 0.97),
    and, for reference, R² of its probabilities against the model's on the held-apart
    evaluation rows (the JSON also has it in logits);
  - mean Spearman (goal >= 0.95), top-1 (goal >= 85%) and top-3 agreement;
  - the share of probe verdicts that are "trustworthy" (goal >= 90%);
  - Sidelight's own faithfulness check of the version in service (its record's
    `faithfulness`: KernelSHAP on the real model for a few rows), when it has one;
  - extra upstream calls: the inference requests MLServer counted (its Prometheus
    metrics) beyond the client's requests and the probe's own calls, beside
    Sidelight's sidelight_distill_calls_total when the build has it.
Under each table, why a column has no figures (Sidelight's last gate reason and the
x-sidelight-status the evaluation answers carried), and a warning if the surrogate
changed during the evaluation. Last, one line per data set and mode in a fixed form,
which bench/suite reads.

--positional-names configures the features as `input-0[0]`, `input-0[1]`, ... (the names
Sidelight gives the columns of an unnamed [n, k] tensor) instead of the real names.
--json PATH also writes every figure, with Sidelight's surrogate records, to a file.
Every figure is from one run; nothing is cached between runs except the two virtualenvs
and the binary.

Needs: Rust (cargo builds target/debug/sidelight if absent); MLServer and scikit-learn in
target/mlserver-venv (tests/setup makes it; so does this script if it is missing); shap,
scikit-learn and SciPy from bench/requirements.txt in target/bench-venv (made here when
missing, as bench/suite does). The model is pickled in target/bench-venv and loaded by
MLServer in target/mlserver-venv, so both pin the same scikit-learn; the script refuses to
run when they differ. Everything listens on 127.0.0.1 only, on free ports; MLServer and
Sidelight are stopped on exit, on Ctrl-C and on errors (logs kept on failure).
"""

import argparse
import atexit
import csv
import ctypes
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH_VENV = ROOT / "target/bench-venv"
MLSERVER_VENV = ROOT / "target/mlserver-venv"
GERMAN_CSV = ROOT / "data/german-credit/german_credit.csv"
SEED = 0
BATCH = 8
GOALS = {"r2": 0.97, "spearman": 0.95, "top1": 0.85, "trustworthy": 0.90}


def log(message):
    print(f"faithfulness: {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------
# The two Pythons


def sklearn_version(python):
    out = subprocess.run([str(python), "-c", "import sklearn; print(sklearn.__version__)"],
                         capture_output=True, text=True)
    return out.stdout.strip() if out.returncode == 0 else None


def ensure_mlserver_venv():
    """target/mlserver-venv as tests/setup makes it. If its python exists but mlserver
    does not yet, tests/setup is probably installing it right now: wait for it rather
    than run a second pip into the same directory."""
    mlserver = MLSERVER_VENV / "bin/mlserver"
    if mlserver.exists():
        return mlserver
    if (MLSERVER_VENV / "bin/python").exists():
        log("waiting for target/mlserver-venv/bin/mlserver (tests/setup running?)")
        deadline = time.time() + 900
        while time.time() < deadline and not mlserver.exists():
            time.sleep(5)
        # pip writes the console script before it has finished the rest: let it end.
        time.sleep(10)
        if mlserver.exists():
            return mlserver
        sys.exit("faithfulness: target/mlserver-venv has no mlserver after 15 minutes; "
                 "run tests/setup")
    log("making target/mlserver-venv from tests/mlserver/requirements.txt (as tests/setup)")
    subprocess.run([sys.executable, "-m", "venv", str(MLSERVER_VENV)], check=True)
    subprocess.run([MLSERVER_VENV / "bin/python", "-m", "pip", "install", "--quiet",
                    "--disable-pip-version-check", "-r",
                    str(ROOT / "tests/mlserver/requirements.txt")], check=True)
    return mlserver


def ensure_python():
    """Runs this script in target/bench-venv with shap and the scikit-learn MLServer
    loads (re-executing itself there when started by another Python)."""
    ensure_mlserver_venv()
    wanted = sklearn_version(MLSERVER_VENV / "bin/python")
    python = BENCH_VENV / "bin/python"
    if not python.exists():
        log("making target/bench-venv from bench/requirements.txt")
        subprocess.run([sys.executable, "-m", "venv", str(BENCH_VENV)], check=True)
    check = subprocess.run([python, "-c", "import shap, scipy, sklearn"], capture_output=True)
    if check.returncode != 0 or sklearn_version(python) != wanted:
        subprocess.run([python, "-m", "pip", "install", "--quiet",
                        "--disable-pip-version-check", "-r",
                        str(ROOT / "bench/requirements.txt")], check=True)
    have = sklearn_version(python)
    if have != wanted:
        sys.exit(f"faithfulness: scikit-learn {have} in target/bench-venv but {wanted} in "
                 "target/mlserver-venv: MLServer could not load the pickled model reliably; "
                 "pin the same version in bench/requirements.txt and "
                 "tests/mlserver/requirements.txt")
    if Path(sys.prefix).resolve() != BENCH_VENV.resolve():
        os.execv(str(python), [str(python), __file__, *sys.argv[1:]])


# ---------------------------------------------------------------------------------------
# Processes: every one started is stopped on the way out, however the way out is taken


PROCESSES = []


def _die_with_parent():
    # Linux: the child gets SIGKILL if this script is killed outright (no cleanup runs).
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def start(command, log_path, cwd=None):
    out = open(log_path, "w")
    proc = subprocess.Popen([str(c) for c in command], cwd=cwd, stdin=subprocess.DEVNULL,
                            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                            preexec_fn=_die_with_parent,
                            # Every SIDELIGHT_* variable is a config key to the proxy.
                            env={k: v for k, v in os.environ.items()
                                 if not k.startswith("SIDELIGHT_") and k != "RUST_LOG"})
    PROCESSES.append(proc)
    return proc


def stop(proc, grace=10):
    """SIGTERM to the process group, SIGKILL after `grace` seconds."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # whatever it started, too
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()
    if proc in PROCESSES:
        PROCESSES.remove(proc)


def stop_all():
    for proc in list(PROCESSES):
        stop(proc, grace=5)


def on_signal(signum, _frame):
    raise SystemExit(128 + signum)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(path, lines=30):
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# ---------------------------------------------------------------------------------------
# HTTP (plain urllib; 127.0.0.1 only)


def http(method, url, body=None, headers=None, timeout=30):
    """(status, headers, body bytes); HTTP errors are answers too."""
    data = None if body is None else (body if isinstance(body, bytes) else body.encode())
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"content-type": "application/json",
                                              **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, answer.headers, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def wait_http(url, proc, log_path, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited ({proc.returncode}) before it was ready; its log "
                               f"ends:\n{tail(log_path)}")
        try:
            if http("GET", url, timeout=5)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{what} not ready on {url} after {timeout} s; its log ends:\n"
                       f"{tail(log_path)}")


def prometheus_sum(text, name, labels=None):
    """The sum of a metric's samples (those whose labels include `labels`); None when the
    metric is absent."""
    total, found = 0.0, False
    for line in text.splitlines():
        m = re.match(rf"^{re.escape(name)}(\{{[^}}]*\}})?\s+(\S+)", line)
        if m and all(f'{k}="{v}"' in (m.group(1) or "") for k, v in (labels or {}).items()):
            total += float(m.group(2))
            found = True
    return total if found else None


# ---------------------------------------------------------------------------------------
# Data sets and the model


def german():
    import numpy as np
    with open(GERMAN_CSV, newline="") as f:
        rows = list(csv.DictReader(f))
    columns = [c for c in rows[0] if c != "credit_risk"]

    def is_number(text):
        try:
            float(text)
            return True
        except ValueError:
            return False

    codes = {}
    for c in columns:
        if not all(is_number(r[c]) for r in rows):
            # The fixed, documented order: the labels sorted as Python sorts strings.
            codes[c] = {label: i for i, label in enumerate(sorted({r[c] for r in rows}))}
    x = np.array([[codes[c][r[c]] if c in codes else float(r[c]) for c in columns]
                  for r in rows], dtype=np.float64)
    y = np.array([1 if r["credit_risk"] == "bad" else 0 for r in rows])
    return {"key": "german", "title": "German credit", "names": columns, "x": x, "y": y,
            "note": f"{len(codes)} of the 20 columns categorical, sent as integer codes"}


def cancer():
    from sklearn.datasets import load_breast_cancer
    data = load_breast_cancer()
    return {"key": "cancer", "title": "Breast cancer (Wisconsin)",
            "names": [str(n) for n in data.feature_names], "x": data.data.astype("float64"),
            "y": data.target, "note": "30 correlated numeric measurements; class 1 = benign"}


def serve_model(data, work, mlserver):
    """Trains the model, writes its MLServer directory, starts MLServer; returns
    (model, base URL, metrics URL, process)."""
    import joblib
    from sklearn.ensemble import GradientBoostingClassifier
    model = GradientBoostingClassifier(n_estimators=100, max_depth=3, random_state=SEED)
    model.fit(data["x"], data["y"])
    directory = work / f"model-{data['key']}"
    directory.mkdir()
    joblib.dump(model, directory / "model.joblib")
    http_port, grpc_port, metrics_port = free_port(), free_port(), free_port()
    (directory / "model-settings.json").write_text(json.dumps({
        "name": data["key"], "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": "./model.joblib", "version": "v1"}}))
    (directory / "settings.json").write_text(json.dumps({
        "host": "127.0.0.1", "http_port": http_port, "grpc_port": grpc_port,
        # Metrics on, unlike tests/mlserver: its inference counter is how the upstream
        # calls Sidelight makes by itself are counted, independently of Sidelight.
        "metrics_endpoint": "/metrics", "metrics_port": metrics_port,
        "metrics_dir": str(directory / "metrics"), "parallel_workers": 0, "debug": False}))
    (directory / "metrics").mkdir()
    log_path = work / f"mlserver-{data['key']}.log"
    # MLServer keeps `.envs` and `.metrics` folders in its working directory.
    proc = start([mlserver, "start", directory], log_path, cwd=work)
    url = f"http://127.0.0.1:{http_port}"
    wait_http(f"{url}/v2/health/ready", proc, log_path, 120, "mlserver")
    return model, url, f"http://127.0.0.1:{metrics_port}/metrics", proc


def mlserver_requests(metrics_url, name):
    """Inference requests MLServer has answered for the model, successes and failures."""
    text = http("GET", metrics_url)[2].decode()
    return sum(prometheus_sum(text, f"model_infer_request_{kind}_total", {"model": name}) or 0
               for kind in ("success", "failure"))


# ---------------------------------------------------------------------------------------
# Sidelight


def sidelight_config(data, upstream, port, admin, state, token_entry, names, distill):
    features = "".join(f"[[routes.explain.features]]\nname = {json.dumps(n)}\n"
                       'kind = "numeric"\n' for n in names)
    # The evaluation client is this script, on loopback: trusted, so that its
    # x-sidelight-probe keeps the held-apart rows out of training.
    text = (f'[server]\nlisten = "127.0.0.1:{port}"\nadmin_listen = "127.0.0.1:{admin}"\n'
            '[server.trust]\nsources = ["127.0.0.0/8"]\n'
            f'[upstream]\nurl = "{upstream}"\n'
            f'[log]\nlevel = "info"\n'
            f'[state]\ndir = "{state}"\n'
            f"{token_entry}\n"
            f'[[routes]]\nname = "{data["key"]}"\npath_prefix = "/v2/models/{data["key"]}"\n'
            '[routes.explain]\nprotocol = "open_inference_v2"\naudience = "developer"\n'
            'output = "probability"\nexplain_class = 1\n'
            f"{features}"
            # A short retrain interval: the last training starts within 5 s of the last
            # live row, so the surrogate under test has learnt from all of them.
            '[routes.explain.surrogate]\nwarm_up_rows = 200\nretrain_interval = "5s"\n')
    if distill:
        text += "[routes.explain.distill]\nenabled = true\n"
    return text


def body(rows, k):
    return json.dumps({"inputs": [{"name": "input-0", "shape": [len(rows), k],
                                   "datatype": "FP64",
                                   "data": [float(v) for row in rows for v in row]}],
                       "outputs": [{"name": "predict_proba"}]})


def class1(answer):
    """P(class 1) per row from MLServer's predict_proba tensor."""
    output = next(o for o in answer["outputs"] if o["name"] == "predict_proba")
    return output["data"][1::2]


class Admin:
    def __init__(self, port, token):
        self.base = f"http://127.0.0.1:{port}"
        self.auth = {"authorization": f"Bearer {token}"}

    def get(self, path):
        status, _, raw = http("GET", self.base + path, headers=self.auth)
        if status != 200:
            raise RuntimeError(f"GET {path}: {status} {raw[:300]!r}")
        return json.loads(raw)

    def metrics(self):
        return http("GET", self.base + "/metrics")[2].decode()


def trainer_cpu_ticks(pid):
    """CPU time (clock ticks) of the process's trainer threads, named
    sidelight-trainer-<route> (the kernel keeps 15 characters): whether one is training."""
    total = 0
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            if not (task / "comm").read_text().startswith("sidelight-train"):
                continue
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except (OSError, IndexError, ValueError):
            continue
    return total


# Quiet this long (longer than retrain_interval, 5 s) before the surrogate counts as
# settled: a training due on the rows that arrived last has started by then.
QUIET = 8


def wait_for_surrogate(admin, route, rows_sent, proc, log_path, timeout, grace=30):
    """Until the surrogate has settled: a training that started after the last live row
    has finished (its record counts all the rows), a surrogate is in service, and for
    QUIET seconds no version was added, no synthetic row was distilled, distillation is
    not backing off, and the trainer thread used no CPU. Returns the route's record; with
    "rejected" when nothing is in service `grace` seconds after that, with "timeout"
    after `timeout` seconds."""
    deadline = time.time() + timeout
    record, last, changed = {}, None, time.time()
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sidelight exited ({proc.returncode}); its log ends:\n"
                               f"{tail(log_path)}")
        record = next((r for r in admin.get("/api/v1/surrogates")["routes"]
                       if r["route"] == route), {})
        metrics = admin.metrics()
        backoff = prometheus_sum(metrics, "sidelight_distill_backoff_seconds") or 0
        now = (len(record.get("history", [])),
               prometheus_sum(metrics, "sidelight_distill_rows_total"),
               trainer_cpu_ticks(proc.pid))
        if now != last or backoff > 0:
            last, changed = now, time.time()
        quiet = time.time() - changed
        covered = any(h.get("rows", 0) >= rows_sent for h in record.get("history", []))
        if covered and record.get("in_service") and quiet >= QUIET:
            return record
        if covered and not record.get("in_service") and quiet >= grace:
            return {"rejected": True, **record}
        time.sleep(1)
    return {"timeout": True, **record}


def run_mode(data, model_url, metrics_url, binary, work, token, token_entry, args,
             distill, train_idx, eval_idx, shap_values, space_check):
    import numpy as np
    from scipy.stats import spearmanr
    key, x, k = data["key"], data["x"], data["x"].shape[1]
    mode = "on" if distill else "off"
    names = ([f"input-0[{i}]" for i in range(k)] if args.positional_names
             else data["names"])
    result = {"mode": mode, "available": True}
    port, admin_port = free_port(), free_port()
    config = work / f"sidelight-{key}-{mode}.toml"
    config.write_text(sidelight_config(data, model_url, port, admin_port,
                                       work / f"state-{key}-{mode}", token_entry, names,
                                       distill))
    check = subprocess.run([binary, "config", "check", config], capture_output=True,
                           text=True)
    if check.returncode != 0:
        message = (check.stderr or check.stdout).strip()
        if distill and "distill" in message:
            log(f"{key}, distillation on: not available in this build: {message}")
            return {"mode": mode, "available": False,
                    "note": "not available in this build", "message": message}
        raise RuntimeError(f"sidelight config check failed: {message}")

    log_path = work / f"sidelight-{key}-{mode}.log"
    proc = start([binary, "serve", "--config", config], log_path)
    try:
        admin = Admin(admin_port, token)
        wait_http(f"{admin.base}/healthz", proc, log_path, 60, "sidelight")
        infer = f"http://127.0.0.1:{port}/v2/models/{key}/infer"
        upstream_before = mlserver_requests(metrics_url, key)
        phases = []

        def phase(name):
            # Where the upstream calls happened: MLServer's count and Sidelight's own.
            time.sleep(0.5)  # MLServer counts a request once it has answered it
            phases.append({"after": name, "client": client_requests,
                           "mlserver": mlserver_requests(metrics_url, key) - upstream_before,
                           "distill_calls": prometheus_sum(admin.metrics(),
                                                           "sidelight_distill_calls_total")})
        client_requests = 0
        statuses = {}

        def count(headers):
            # The status without its figures (rows=8/200, surrogate_version=2, ...).
            status = headers.get("x-sidelight-status", "(none)")
            label = re.sub(r"=\s*[\w./-]+", "=…", status)
            statuses[label] = statuses.get(label, 0) + 1
            return status

        # 1. Live traffic.
        started = time.time()
        rng = np.random.default_rng(SEED)
        draws = rng.choice(train_idx, size=args.rows, replace=True)
        first_status = None
        for i in range(0, args.rows, BATCH):
            status, headers, raw = http("POST", infer, body(x[draws[i:i + BATCH]], k))
            client_requests += 1
            if status != 200:
                raise RuntimeError(f"live request {i // BATCH}: {status} {raw[:300]!r}")
            first_status = first_status or headers.get("x-sidelight-status")
            count(headers)
        result["traffic_seconds"] = time.time() - started
        result["first_status"] = first_status
        log(f"{key}, distillation {mode}: {args.rows} live rows in "
            f"{result['traffic_seconds']:.0f} s; first x-sidelight-status: {first_status}")

        phase("live rows")
        # 2. The surrogate that learnt from them all.
        record = wait_for_surrogate(admin, key, args.rows, proc, log_path, args.timeout)
        result["surrogates"] = record
        in_service = record.get("in_service")
        result["wait_seconds"] = time.time() - started - result["traffic_seconds"]
        if record.get("timeout") or record.get("rejected"):
            why = (f"no training covering the {args.rows} rows after {args.timeout} s"
                   if record.get("timeout") else "nothing in service")
            result["note"] = why
            log(f"{key}, distillation {mode}: {why}: in_service={json.dumps(in_service)}, "
                f"rows_seen={record.get('rows_seen')}, columns={json.dumps(record.get('columns'))}"
                f", history={json.dumps(record.get('history'))}")
        result["r2_gate"] = in_service["r2"] if in_service else None
        result["surrogate_version"] = in_service["version"] if in_service else None

        phase("surrogate in service")
        # 3. The held-apart rows, one per request.
        probe_from = len(eval_idx) - min(args.probes, len(eval_idx))
        spearman, top1, top3, model_p, surrogate_p = [], [], [], [], []
        value_mismatches, unknown_features, classes, versions = 0, set(), {}, set()
        probe_ids = []
        eval_statuses = {}
        for j, row in enumerate(eval_idx):
            request_id = f"faithfulness-{key}-{mode}-{j}"
            headers = {"x-sidelight-audience": "developer", "x-request-id": request_id}
            if j < probe_from:
                headers["x-sidelight-probe"] = "1"
            status, answer_headers, raw = http("POST", infer, body(x[[row]], k), headers)
            client_requests += 1
            if status != 200:
                raise RuntimeError(f"evaluation request {j}: {status} {raw[:300]!r}")
            # Exact, for the report: the status values are what an operator reads.
            label = count(answer_headers)
            eval_statuses[label] = eval_statuses.get(label, 0) + 1
            answer = json.loads(raw)
            explanation = (answer.get("explanations") or [None])[0]
            if j >= probe_from and explanation:
                probe_ids.append(answer_headers.get("x-request-id", request_id))
            if not explanation:
                continue
            sign = 1.0 if explanation["output"] == 1 else -1.0
            classes[explanation["output"]] = classes.get(explanation["output"], 0) + 1
            versions.add(explanation.get("surrogate_version"))
            if explanation.get("space") != "logit":
                space_check.add(explanation.get("space"))
            ours = np.zeros(k)
            for a in explanation["attributions"]:
                if a["feature"] not in names:
                    unknown_features.add(a["feature"])
                    continue
                i = names.index(a["feature"])
                ours[i] = sign * a["contribution"]
                # Sidelight must have read the value the client sent for this column.
                if not isinstance(a.get("value"), (int, float)) or \
                        abs(a["value"] - x[row, i]) > 1e-9 * max(1.0, abs(x[row, i])):
                    value_mismatches += 1
            theirs = shap_values[j]
            if np.ptp(ours) == 0 or np.ptp(theirs) == 0:
                rho = 1.0 if np.ptp(ours) == np.ptp(theirs) == 0 else 0.0
            else:
                rho = spearmanr(ours, theirs).statistic
            spearman.append(rho)
            top1.append(np.argmax(np.abs(ours)) == np.argmax(np.abs(theirs)))
            top3.append(set(np.argsort(-np.abs(ours))[:3]) ==
                        set(np.argsort(-np.abs(theirs))[:3]))
            p = class1(answer)[0]
            sp = explanation["surrogate_prediction"]
            model_p.append(p)
            surrogate_p.append(sp if sign > 0 else 1.0 - sp)
        result.update({
            "eval_rows": len(eval_idx), "explained": len(spearman),
            "eval_statuses": eval_statuses,
            "spearman": float(np.mean(spearman)) if spearman else None,
            "top1": float(np.mean(top1)) if top1 else None,
            "top3": float(np.mean(top3)) if top3 else None,
            "explained_classes": {str(c): n for c, n in classes.items()},
            "explaining_versions": sorted(v for v in versions if v is not None),
            "value_mismatches": value_mismatches,
            "unknown_features": sorted(unknown_features),
        })
        def r2(y, f):
            return float(1 - ((y - f) ** 2).sum() / ((y - y.mean()) ** 2).sum())

        result["r2_eval"] = result["r2_eval_logit"] = None
        if len(model_p) >= 2:
            # In probabilities, as Sidelight reports fidelity; in logits (clipped as
            # Sidelight clips), the space the attributions add up in.
            y, f = np.array(model_p), np.array(surrogate_p)
            result["r2_eval"] = r2(y, f)
            y, f = (np.clip(v, 1e-6, 1 - 1e-6) for v in (y, f))
            result["r2_eval_logit"] = r2(np.log(y / (1 - y)), np.log(f / (1 - f)))

        phase("evaluation rows")
        # 4. The probe check of the last few.
        verdicts, probe_calls, probe_errors = [], 0, []
        for request_id in probe_ids:
            status, _, raw = http("POST", f"{admin.base}/api/v1/probe/{request_id}"
                                  "?max_calls=200", b"", admin.auth, timeout=600)
            if status != 200:
                probe_errors.append(f"{status} {raw[:200].decode(errors='replace')}")
                continue
            report = json.loads(raw)
            verdicts.append(report["verdict"])
            probe_calls += report.get("calls", 0)
        result.update({
            "probes": len(verdicts), "probe_errors": probe_errors,
            "trustworthy": (verdicts.count("trustworthy") / len(verdicts)) if verdicts
            else None,
            "probe_calls": probe_calls,
        })

        phase(f"probes ({probe_calls} calls)")
        result["phases"] = phases
        # 5. What Sidelight asked the model by itself.
        upstream = mlserver_requests(metrics_url, key) - upstream_before
        result["upstream_requests"] = upstream
        result["client_requests"] = client_requests
        result["extra_upstream_calls"] = upstream - client_requests - probe_calls
        metrics = admin.metrics()
        result["distill_calls_metric"] = prometheus_sum(metrics, "sidelight_distill_calls_total")
        result["distill_rows_metric"] = prometheus_sum(metrics, "sidelight_distill_rows_total")
        result["unmapped_metric"] = prometheus_sum(metrics, "sidelight_unmapped_requests_total")
        result["statuses"] = statuses
        # Sidelight's own faithfulness check of the version in service (distillation
        # measures it against the real model after each accepted version), if it has one.
        final = next((r for r in admin.get("/api/v1/surrogates")["routes"]
                      if r["route"] == key), {})
        result["final_in_service"] = final.get("in_service")
        result["self_check"] = next(
            (h.get("faithfulness") for h in final.get("history", [])
             if result["explaining_versions"] and h["version"] == result["explaining_versions"][-1]),
            None)
        if args.verbose:
            log(f"{key}, distillation {mode}: {json.dumps(result, default=str)}")
        return result
    except Exception:
        log(f"sidelight log ({log_path}) ends:\n{tail(log_path)}")
        raise
    finally:
        stop(proc)


# ---------------------------------------------------------------------------------------
# Report


def cell(value, kind, goal=None):
    if value is None:
        return "n.a."
    text = {"r2": f"{value:.3f}", "rho": f"{value:.3f}", "pct": f"{100 * value:.0f}%",
            "int": f"{value:,.0f}"}[kind]
    if goal is not None:
        text += " (met)" if value >= goal else " (not met)"
    return text


def table(data, results, args):
    lines = [f"### {data['title']}: {data['x'].shape[0]:,} rows x {data['x'].shape[1]} "
             f"features ({data['note']})", ""]
    n_pool = data["x"].shape[0] - data["eval"]
    lines.append(f"{args.rows:,} live rows drawn with replacement from the {n_pool:,} rows "
                 f"not held apart ({data['distinct']:,} distinct rows drawn); "
                 f"{data['eval']:,} distinct rows held apart for evaluation; features named "
                 + ("positionally (input-0[i])" if args.positional_names else "by column")
                 + ".")
    lines.append("")
    modes = [m for m in ("off", "on") if m in results]
    header = {"off": "without distillation", "on": "with distillation"}
    lines.append("| | " + " | ".join(header[m] for m in modes) + " | goal |")
    lines.append("|---|" + "---:|" * len(modes) + "---|")
    rows = [
        ("held-out R² (Sidelight's gate, real rows)", "r2_gate", "r2", GOALS["r2"], ">= 0.97"),
        ("R² on the held-apart rows (probabilities)", "r2_eval", "r2", None, ""),
        ("mean Spearman vs the model's TreeSHAP", "spearman", "rho", GOALS["spearman"],
         ">= 0.95"),
        ("top-1 agreement", "top1", "pct", GOALS["top1"], ">= 85%"),
        ("top-3 agreement (same set)", "top3", "pct", None, ""),
        ("probe verdicts trustworthy", "trustworthy", "pct", GOALS["trustworthy"], ">= 90%"),
        ("Sidelight's own check: Spearman", "self_spearman", "rho", None, ""),
        ("Sidelight's own check: top-1", "self_top1", "pct", None, ""),
        ("extra upstream calls (MLServer count)", "extra_upstream_calls", "int", None, ""),
        ("sidelight_distill_calls_total", "distill_calls_metric", "int", None, ""),
    ]
    for label, key, kind, goal, goal_text in rows:
        cells = []
        for m in modes:
            r = dict(results[m])
            for k in ("spearman", "top1"):
                r[f"self_{k}"] = (r.get("self_check") or {}).get(k)
            cells.append("not available in this build" if not r["available"]
                         else cell(r.get(key), kind, goal))
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {goal_text} |")
    explained = []
    for m in modes:
        r = results[m]
        explained.append("n.a." if not r["available"] else
                         f"{r['explained']}/{r['eval_rows']}, {r['probes']} probed")
    lines.append("| evaluation rows explained | " + " | ".join(explained) + " | |")
    # Why a column has no figures, in Sidelight's own words.
    for m in modes:
        r = results[m]
        if not r["available"]:
            lines.append(f"\n{header[m]}: {r['message']}")
        elif r.get("note"):
            history = (r.get("surrogates") or {}).get("history") or [{}]
            statuses = ", ".join(f"`{s}` x{n}" for s, n in r["eval_statuses"].items())
            lines.append(f"\n{header[m]}: {r['note']}; Sidelight's last version: "
                         f"\"{history[-1].get('reason', 'none trained')}\"; the evaluation "
                         f"answers carried {statuses}")
        if r.get("available") and len(r.get("explaining_versions", [])) > 1:
            lines.append(f"\n{header[m]}: the evaluation rows were explained by versions "
                         f"{r['explaining_versions']} (the surrogate changed during it)")
    return lines


def headline(data, results):
    """One line per data set and mode, in a fixed form that bench/suite reads."""
    out = []
    for m, r in results.items():
        if not r["available"]:
            out.append(f"faithfulness {data['key']}, distillation {m}: not available in this build")
            continue
        f = {k: ("n.a." if r.get(k) is None else
                 f"{r[k]:.3f}" if k in ("r2_gate", "spearman") else f"{100 * r[k]:.0f}%")
             for k in ("r2_gate", "spearman", "top1", "top3", "trustworthy")}
        extra = r.get("extra_upstream_calls")
        out.append(f"faithfulness {data['key']}, distillation {m}: R² {f['r2_gate']}, "
                   f"Spearman {f['spearman']}, top-1 {f['top1']}, top-3 {f['top3']}, "
                   f"trustworthy {f['trustworthy']}, extra upstream calls "
                   f"{'n.a.' if extra is None else f'{extra:.0f}'}")
    return out


# ---------------------------------------------------------------------------------------


def build(args):
    if args.binary:
        binary = Path(args.binary)
    else:
        binary = ROOT / ("target/release/sidelight" if args.release else "target/debug/sidelight")
        if args.build or not binary.exists():
            # The build directory is shared: cargo waits for another build's lock.
            subprocess.run(["cargo", "build", "--quiet", "-p", "sidelight",
                            *(["--release"] if args.release else [])], cwd=ROOT, check=True)
    if not binary.exists():
        sys.exit(f"faithfulness: no binary at {binary}")
    return binary


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", choices=["german", "cancer", "both"], default="both")
    parser.add_argument("--distill", choices=["on", "off", "both"], default="both")
    parser.add_argument("--rows", type=int, default=2000, help="live rows before evaluating")
    parser.add_argument("--eval", type=int, default=200, help="held-apart evaluation rows")
    parser.add_argument("--probes", type=int, default=10,
                        help="evaluation requests to run the probe check on")
    parser.add_argument("--positional-names", action="store_true",
                        help="configure the features as input-0[0], input-0[1], ...")
    parser.add_argument("--binary", help="the sidelight binary (default target/debug/sidelight)")
    parser.add_argument("--release", action="store_true", help="use target/release/sidelight")
    parser.add_argument("--build", action="store_true",
                        help="run cargo build even when the binary exists")
    parser.add_argument("--timeout", type=int, default=300,
                        help="seconds to wait for the surrogate after the live rows")
    parser.add_argument("--json", help="write every figure to this file")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    if args.rows < 200:
        parser.error("--rows must be at least the warm-up, 200")

    ensure_python()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    atexit.register(stop_all)
    import numpy as np
    import shap
    import sklearn

    binary = build(args)
    mlserver = ensure_mlserver_venv()
    token_out = subprocess.run([binary, "token", "new", "--name", "faithfulness", "--role",
                                "auditor"], capture_output=True, text=True, check=True).stdout
    # stdout: the token on the first line, then its [[admin.tokens]] entry.
    token, _, token_entry = token_out.partition("\n")
    token = token.strip()
    work = Path(tempfile.mkdtemp(prefix="sidelight-bench-faithfulness-"))
    datasets = {"german": german, "cancer": cancer}
    keys = ["german", "cancer"] if args.dataset == "both" else [args.dataset]
    modes = {"off": [False], "on": [True], "both": [False, True]}[args.distill]
    report, ok = {"rows": args.rows, "batch": BATCH, "positional_names": args.positional_names,
                  "binary": str(binary), "sklearn": sklearn.__version__,
                  "shap": shap.__version__, "datasets": {}}, False
    tables = []
    started = time.time()
    try:
        for key in keys:
            data = datasets[key]()
            n = data["x"].shape[0]
            # Held apart: distinct rows no live request carries.
            n_eval = min(args.eval, n // 3)
            order = np.random.default_rng(SEED + 1).permutation(n)
            eval_idx, train_idx = np.sort(order[:n_eval]), np.sort(order[n_eval:])
            data["eval"] = n_eval
            data["distinct"] = len(set(np.random.default_rng(SEED).choice(
                train_idx, size=args.rows, replace=True).tolist()))
            log(f"{data['title']}: training the model and starting MLServer")
            model, url, metrics_url, mlserver_proc = serve_model(data, work, mlserver)
            try:
                # The model's own attributions: path-dependent TreeSHAP of its log-odds.
                explainer = shap.TreeExplainer(model)
                values = np.asarray(explainer.shap_values(data["x"][eval_idx]))
                margin = model.decision_function(data["x"][eval_idx])
                base = np.ravel(explainer.expected_value)[0]
                assert np.allclose(values.sum(axis=1) + base, margin, atol=1e-6), \
                    "shap does not add up to the model's log-odds"
                results, spaces = {}, set()
                for distill in modes:
                    r = run_mode(data, url, metrics_url, binary, work, token, token_entry,
                                 args, distill, train_idx, eval_idx, values, spaces)
                    results[r["mode"]] = r
                if spaces:
                    log(f"warning: explanations in space(s) {spaces}, not logit")
            finally:
                stop(mlserver_proc)
            report["datasets"][key] = {"title": data["title"], "rows": n,
                                       "features": data["x"].shape[1], "eval": n_eval,
                                       "distinct_live_rows": data["distinct"],
                                       "results": results}
            tables.append((data, results))
            # Each data set's table as soon as it is done.
            print("\n".join(table(data, results, args)) + "\n", flush=True)
        for data, results in tables:
            print("\n".join(headline(data, results)))
        print(f"\n({time.time() - started:.0f} s; sidelight {binary}, scikit-learn "
              f"{sklearn.__version__}, shap {shap.__version__}, features "
              f"{'positional' if args.positional_names else 'by name'})")
        ok = True
    finally:
        stop_all()
        if args.json:
            report["complete"] = ok
            Path(args.json).write_text(json.dumps(report, indent=1, default=str) + "\n")
        if ok:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"faithfulness: logs kept in {work}", file=sys.stderr)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        # MLServer and Sidelight are stopped by main's cleanup on the way out.
        sys.exit("faithfulness: interrupted")
