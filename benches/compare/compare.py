#!/usr/bin/env python3
"""Side-by-side comparison of Cairn, Prometheus and VictoriaMetrics.

Called by run.sh (which builds the binaries and installs the peers). For
each database in turn: start it fresh on 127.0.0.1 with its own temporary
directory, send it the same remote-write payloads with `cairn-workload
send`, let it flush, measure CPU, memory and disk, time ten dashboard
queries, keep their results, and stop it. Then compare the results between
databases and print the tables (also written as Markdown and JSON).

Only the Python standard library is used. Every wait is bounded in time.
"""

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")

# The ten dashboard queries: (name, PromQL, kind). Range queries run over the
# whole window with a 60 s step; the instant one at the window's end.
QUERIES = [
    ("request rate by model", "sum by (model) (rate(infer_requests_total[5m]))", "range"),
    ("p95 latency by model",
     "histogram_quantile(0.95, sum by (le, model) (rate(infer_latency_ms_bucket[5m])))", "range"),
    ("p50 TTFT by model, route",
     "histogram_quantile(0.5, sum by (le, model, route) (rate(ttft_ms_bucket[5m])))", "range"),
    ("error ratio by model, route",
     "sum by (model, route) (rate(infer_errors_total[5m])) / sum by (model, route) (rate(infer_requests_total[5m]))",
     "range"),
    ("top-10 cost by model, adapter",
     "topk(10, sum by (model, adapter) (increase(infer_cost_usd_total[1h])))", "range"),
    ("GPU utilisation by model, region", "avg by (model, region) (gpu_utilization_percent)", "range"),
    ("instances with queue depth > 8", "count by (model) (queue_depth > 8)", "range"),
    ("completion tokens/s by route",
     "sum by (route) (rate(infer_tokens_total{direction=\"completion\"}[5m]))", "range"),
    ("series count by job (all series)", "count by (job) ({__name__=~\".+\"})", "range"),
    ("instant: cost per model over 1h", "sum by (model) (increase(infer_cost_usd_total[1h]))", "instant"),
]

# Queries on which VictoriaMetrics is expected to differ from Prometheus:
# its rate/increase do not extrapolate and start their window differently.
VM_EXPECTED_DIFFERENT = ("rate(", "increase(")

CHILDREN = []


def log(*args):
    print("[compare]", *args, file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(url, data=None, method=None, timeout=120):
    req = urllib.request.Request(url, data=data, method=method)
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return resp.status, resp.read()


def wait_until(what, predicate, timeout_s, interval_s=0.25):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if predicate():
                return True
        except (OSError, urllib.error.URLError, ValueError):
            pass
        time.sleep(interval_s)
    log(f"timed out after {timeout_s}s waiting for {what}")
    return False


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is the state (field 3); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / TICKS


def status_kb(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def dir_bytes(path, exclude=()):
    total = 0
    for root, dirs, files in os.walk(path):
        dirs[:] = [d for d in dirs if os.path.join(root, d) not in exclude]
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def stop(proc, timeout_s=60):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    if proc in CHILDREN:
        CHILDREN.remove(proc)


def cleanup(*_):
    for proc in list(CHILDREN):
        try:
            proc.kill()
        except OSError:
            pass
    if _:
        sys.exit(1)


# --- the databases --------------------------------------------------------

class Database:
    """How to start one database, where it takes writes, how it flushes."""

    name = ""

    def __init__(self, workdir):
        self.dir = tempfile.mkdtemp(prefix=self.name.lower() + "-", dir=workdir)
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc = None
        self.notes = []

    def command(self):
        raise NotImplementedError

    def write_url(self):
        return self.base + "/api/v1/write"

    def ready(self):
        return http(self.base + "/-/ready", timeout=5)[0] == 200

    def start(self):
        logf = open(os.path.join(self.dir, "server.log"), "wb")
        self.proc = subprocess.Popen(self.command(), stdout=logf, stderr=subprocess.STDOUT,
                                     cwd=self.dir, start_new_session=True)
        CHILDREN.append(self.proc)
        # Stops waiting as soon as the process exits.
        ok = wait_until(f"{self.name} to be ready", lambda: self.proc.poll() is not None or self.ready(), 120)
        return ok and self.proc.poll() is None

    def flush(self):
        """Makes the database write what it holds as it would in production;
        returns the on-disk bytes that count, or None to measure after stop."""
        return dir_bytes(self.dir, exclude={os.path.join(self.dir, "server.log")})

    def log_head(self, n=3):
        try:
            with open(os.path.join(self.dir, "server.log"), "rb") as f:
                return " / ".join(l.decode(errors="replace").strip() for l in f.read().splitlines()[:n])
        except OSError:
            return ""


class Prometheus(Database):
    name = "Prometheus"

    def command(self):
        cfg = os.path.join(self.dir, "prometheus.yml")
        with open(cfg, "w") as f:
            # Hours of history arrive in minutes: without an out-of-order
            # window Prometheus compacts its head meanwhile and refuses the
            # shards still behind ("out of bounds"), and its answers stop
            # being a reference.
            f.write("global:\n  scrape_interval: 15s\nscrape_configs: []\n"
                    "storage:\n  tsdb:\n    out_of_order_time_window: 7d\n")
        return ["prometheus", f"--config.file={cfg}", f"--storage.tsdb.path={self.dir}/data",
                f"--web.listen-address=127.0.0.1:{self.port}", "--web.enable-remote-write-receiver",
                "--web.enable-admin-api", "--storage.tsdb.retention.time=3650d",
                "--storage.tsdb.min-block-duration=2h", "--storage.tsdb.max-block-duration=24h",
                "--log.level=warn"]

    def flush(self):
        # The 2 h window is still in the head (Prometheus cuts a block when
        # the head spans 3 h). A snapshot writes the head as a compacted
        # block with Prometheus's own code: that block is what counts.
        wal = dir_bytes(os.path.join(self.dir, "data"))
        self.notes.append(f"WAL + head chunks before the snapshot: {wal} bytes")
        status, body = http(self.base + "/api/v1/admin/tsdb/snapshot", data=b"", method="POST", timeout=600)
        name = json.loads(body)["data"]["name"]
        return dir_bytes(os.path.join(self.dir, "data", "snapshots", name))


class VictoriaMetrics(Database):
    name = "VictoriaMetrics"

    def command(self):
        return ["victoria-metrics", f"-storageDataPath={self.dir}/data",
                f"-httpListenAddr=127.0.0.1:{self.port}", "-retentionPeriod=100y",
                "-search.disableCache", "-loggerLevel=WARN"]

    def ready(self):
        return http(self.base + "/health", timeout=5)[0] == 200

    def flush(self):
        http(self.base + "/internal/force_flush", timeout=600)
        http(self.base + "/internal/force_merge", timeout=600)
        data = os.path.join(self.dir, "data")
        # The merge runs in the background: wait for the size to settle.
        last, stable = -1, 0
        for _ in range(120):
            size = dir_bytes(data, exclude={os.path.join(data, "cache")})
            stable = stable + 1 if size == last else 0
            if stable >= 4:
                break
            last = size
            time.sleep(1)
        return dir_bytes(data, exclude={os.path.join(data, "cache")})


class Cairn(Database):
    name = "Cairn"

    def __init__(self, workdir, binary):
        super().__init__(workdir)
        self.binary = binary

    def command(self):
        ports = [free_port() for _ in range(3)]
        return [self.binary, "serve", f"--data-dir={self.dir}/data",
                f"--http-listen=127.0.0.1:{self.port}", f"--otlp-grpc-listen=127.0.0.1:{ports[0]}",
                f"--otlp-http-listen=127.0.0.1:{ports[1]}", f"--grpc-listen=127.0.0.1:{ports[2]}",
                "--retention=3650d", "--log-level=warn", "--web.enable-admin-api"]

    def ready(self):
        for path in ("/-/ready", "/api/v1/status/buildinfo"):
            try:
                if http(self.base + path, timeout=5)[0] == 200:
                    return True
            except (OSError, urllib.error.URLError):
                pass
        return False

    def flush(self):
        # As for Prometheus: the window is still in the head (blocks are
        # cut once a range is older than the out-of-order window), so a
        # snapshot writes the head as a block with Cairn's own block
        # writer; that block is what counts. The WAL is noted.
        wal = dir_bytes(os.path.join(self.dir, "data"))
        self.notes.append(f"WAL + blocks before the snapshot: {wal} bytes")
        status, body = http(self.base + "/api/v1/admin/tsdb/snapshot", data=b"", method="POST", timeout=600)
        name = json.loads(body)["data"]["name"]
        return dir_bytes(os.path.join(self.dir, "data", "snapshots", name))


# --- one database's run ---------------------------------------------------

def query(db, promql, kind, start_s, end_s, step_s):
    if kind == "range":
        params = {"query": promql, "start": start_s, "end": end_s, "step": step_s}
        path = "/api/v1/query_range"
    else:
        params = {"query": promql, "time": end_s}
        path = "/api/v1/query"
    data = urllib.parse.urlencode(params).encode()
    t0 = time.perf_counter()
    status, body = http(db.base + path, data=data, timeout=300)
    elapsed = time.perf_counter() - t0
    doc = json.loads(body)
    if doc.get("status") != "success":
        raise ValueError(f"{doc.get('errorType')}: {doc.get('error')}")
    return elapsed, doc["data"]


def measure(db, args, summary):
    out = {"name": db.name, "available": False}
    if not db.start():
        out["reason"] = "did not start or become ready; its log: " + db.log_head()
        stop(db.proc)
        return out
    pid = db.proc.pid
    cpu0 = cpu_seconds(pid)
    send = subprocess.run([args.workload_bin, "send", "--dir", args.data, "--url", db.write_url(),
                           "--concurrency", str(args.concurrency)],
                          capture_output=True, text=True, timeout=args.send_timeout)
    cpu1 = cpu_seconds(pid)
    try:
        report = json.loads(send.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        out["reason"] = f"sender failed: {send.stderr.strip()[-400:]}"
        stop(db.proc)
        return out
    accepted = report["accepted_samples"]
    out.update(send=report, available=accepted > 0)
    if accepted == 0:
        out["reason"] = f"accepted no sample: {report.get('first_rejection')}"
        stop(db.proc)
        return out
    out["ingest_samples_per_s"] = report["samples_per_second"]
    out["cpu_s_per_million"] = (cpu1 - cpu0) / (accepted / 1e6)
    out["peak_rss_bytes"] = status_kb(pid, "VmHWM") * 1024
    log(f"{db.name}: accepted {accepted} samples ({report['rejected_samples']} rejected) "
        f"at {report['samples_per_second']:.0f}/s; flushing")
    t0 = time.monotonic()
    disk = db.flush()
    out["flush_s"] = time.monotonic() - t0
    time.sleep(args.settle_s)
    out["settled_rss_bytes"] = status_kb(pid, "VmRSS") * 1024
    out["peak_rss_per_series"] = out["peak_rss_bytes"] / summary["active_series"]
    out["settled_rss_per_series"] = out["settled_rss_bytes"] / summary["active_series"]

    start_s = summary["start_ms"] / 1000
    end_s = summary["end_ms"] / 1000
    out["queries"] = {}
    for name, promql, kind in QUERIES:
        times, result, error = [], None, None
        # Peak memory of the query: the kernel's high-water mark reset
        # (clear_refs 5) before its runs and read after them, less the
        # resident set before.
        rss_before = status_kb(pid, "VmRSS") * 1024
        try:
            with open(f"/proc/{pid}/clear_refs", "w") as f:
                f.write("5")
            hwm_reset = True
        except OSError:
            hwm_reset = False
        for _ in range(args.runs):
            try:
                elapsed, data = query(db, promql, kind, start_s, end_s, args.step)
                times.append(elapsed)
                result = data
            except urllib.error.HTTPError as e:
                body = e.read().decode(errors="replace")[:200]
                error = f"HTTP {e.code}: {body}" if e.code != 404 else "no such endpoint (HTTP 404)"
                break
            except (OSError, urllib.error.URLError, ValueError) as e:
                error = str(e)[:300]
                break
        peak = status_kb(pid, "VmHWM") * 1024 if hwm_reset else None
        out["queries"][name] = {"median_ms": statistics.median(times) * 1000 if times else None,
                                "error": error, "result": result,
                                "peak_mib": max(0, peak - rss_before) / 2**20 if peak is not None else None}
    stop(db.proc)
    if disk is None:
        disk = dir_bytes(db.dir, exclude={os.path.join(db.dir, "server.log")})
    out["disk_bytes"] = disk
    out["restart_s"], out["restart_series"] = restart(db, summary)
    data = os.path.join(db.dir, "data")
    if os.path.isdir(data):
        parts = sorted((dir_bytes(os.path.join(data, e)) if os.path.isdir(os.path.join(data, e))
                        else os.lstat(os.path.join(data, e)).st_size, e) for e in os.listdir(data))
        db.notes.append("data directory at the end: " + ", ".join(
            f"{e} {b / 2**20:.1f} MiB" for b, e in reversed(parts) if b >= 2**16))
    out["bytes_per_sample"] = disk / accepted
    out["notes"] = db.notes
    return out


def restart(db, summary):
    """Starts the stopped database again on the same data; returns the
    seconds from process start until it answers a query over all series
    (ready, WAL replayed), and how many series it then holds at the
    window's end (to show it came back with its data)."""
    t0 = time.monotonic()
    if not db.start():
        log(f"{db.name}: did not come back after a restart: {db.log_head()}")
        stop(db.proc)
        return None, None
    elapsed, series = None, None
    try:
        # A process that answers HTTP is not always ready to query (storage
        # may still be replaying): poll, bounded.
        for _ in range(1200):
            try:
                _, data = query(db, "count({__name__=~\".+\"})", "instant", 0,
                                summary["last_sample_ms"] / 1000, 60)
                result = data.get("result") or []
                series = int(float(result[0]["value"][1])) if result else 0
                elapsed = time.monotonic() - t0
                break
            except (OSError, urllib.error.URLError, ValueError):
                time.sleep(0.05)
    finally:
        stop(db.proc)
    log(f"{db.name}: answering {elapsed} s after a restart, {series} series at the end")
    return elapsed, series


def measure_otlp(db, args, summary):
    """Cairn only (Prometheus 2.42 and VictoriaMetrics 1.79 take no OTLP):
    a fresh instance fed the same data as OTLP/HTTP protobuf."""
    if not db.start():
        return {"reason": "did not start: " + db.log_head()}
    try:
        pid = db.proc.pid
        cpu0 = cpu_seconds(pid)
        send = subprocess.run([args.workload_bin, "send", "--otlp", "--dir", args.data,
                               "--url", db.base + "/otlp/v1/metrics", "--concurrency", str(args.concurrency)],
                              capture_output=True, text=True, timeout=args.send_timeout)
        cpu1 = cpu_seconds(pid)
        report = json.loads(send.stdout.strip().splitlines()[-1])
        accepted = report["accepted_samples"]
        if accepted == 0:
            return {"reason": f"accepted no sample: {report.get('first_rejection')}"}
        # Same series as by remote-write: count them at the window's end.
        _, data = query(db, "count({__name__=~\".+\"})", "instant", 0, summary["last_sample_ms"] / 1000, 60)
        result = data.get("result") or []
        return {"samples_per_s": report["samples_per_second"],
                "cpu_s_per_million": (cpu1 - cpu0) / (accepted / 1e6),
                "accepted": accepted, "rejected": report["rejected_samples"],
                "series": int(float(result[0]["value"][1])) if result else 0}
    except (IndexError, ValueError, OSError, urllib.error.URLError, subprocess.TimeoutExpired) as e:
        return {"reason": str(e)[:300]}
    finally:
        stop(db.proc)


# --- result agreement -----------------------------------------------------

def series_map(data):
    out = {}
    for s in data.get("result", []) if isinstance(data.get("result"), list) else []:
        key = tuple(sorted(s["metric"].items()))
        points = s.get("values") or ([s["value"]] if "value" in s else [])
        out[key] = {float(t): float(v) for t, v in points}
    return out


def close(a, b, rel=1e-6):
    if a != a and b != b:
        return True
    return abs(a - b) <= rel * max(abs(a), abs(b)) + 1e-9


def agreement(ref_name, ref, other_name, other):
    """Lists how `other`'s result differs from `ref`'s."""
    a, b = series_map(ref), series_map(other)
    problems = []
    only_ref = [k for k in a if k not in b]
    only_other = [k for k in b if k not in a]
    if only_ref:
        problems.append(f"{len(only_ref)} series only in {ref_name}, e.g. {dict(only_ref[0])}")
    if only_other:
        problems.append(f"{len(only_other)} series only in {other_name}, e.g. {dict(only_other[0])}")
    diff_points, missing, worst = 0, 0, (0.0, None)
    for k in a.keys() & b.keys():
        for t, v in a[k].items():
            w = b[k].get(t)
            if w is None:
                missing += 1
            elif not close(v, w):
                diff_points += 1
                rel = abs(v - w) / max(abs(v), abs(w), 1e-300)
                if rel > worst[0]:
                    worst = (rel, f"{dict(k)} at {t}: {v} vs {w}")
        missing += len([t for t in b[k] if t not in a[k]])
    if diff_points:
        problems.append(f"{diff_points} points differ beyond 1e-6 relative (worst {worst[0]:.2g}: {worst[1]})")
    if missing:
        problems.append(f"{missing} points present in only one of the two")
    return problems


# --- report ---------------------------------------------------------------

def fmt(v, kind):
    if v is None:
        return "n/a"
    if kind == "rate":
        return f"{v / 1000:,.0f} k"
    if kind == "bytes":
        return f"{v / 2**20:,.1f} MiB" if v < 10 * 2**20 else f"{v / 2**20:,.0f} MiB"
    if kind == "kb":
        return f"{v / 1000:,.2f} KB"
    if kind == "ms":
        return f"{v:,.1f}"
    return f"{v:,.2f}"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return "n/a"
    return f"{a / b:.2f}x"


def render(results, summary, args, machine):
    names = [r["name"] for r in results]
    by = {r["name"]: r for r in results}
    cols = names + ["Cairn ÷ Prometheus", "Cairn ÷ VictoriaMetrics", "VictoriaMetrics ÷ Prometheus"]

    def val(name, key):
        r = by.get(name)
        return r.get(key) if r and r.get("available") else None

    lines = []
    lines.append(f"Workload: {summary['active_series']:,} active series ({summary['instances']} instances), "
                 f"{(summary['end_ms'] - summary['start_ms']) / 3.6e6:g} h from "
                 f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(summary['start_ms'] / 1000))}, "
                 f"{summary['scrape_interval_ms'] / 1000:g} s scrapes, {summary['samples']:,} samples, "
                 f"{summary['total_series']:,} series in all, seed {summary['seed']}; "
                 f"sender concurrency {args.concurrency}; queries: median of {args.runs} runs, step {args.step} s.")
    lines.append(f"Machine: {machine}.")
    lines.append("")
    lines.append("| figure | " + " | ".join(cols) + " |")
    lines.append("|---" * (len(cols) + 1) + "|")
    rows = [
        ("ingest rate, samples/s", "ingest_samples_per_s", "rate", True),
        ("server CPU s per million samples", "cpu_s_per_million", "num", False),
        ("peak RSS", "peak_rss_bytes", "bytes", False),
        ("settled RSS", "settled_rss_bytes", "bytes", False),
        ("peak RSS per active series", "peak_rss_per_series", "kb", False),
        ("settled RSS per active series", "settled_rss_per_series", "kb", False),
        ("disk after the database's flush", "disk_bytes", "bytes", False),
        ("bytes per sample on disk", "bytes_per_sample", "num", False),
        ("restart on the same data, s to ready", "restart_s", "num", False),
    ]
    for label, key, kind, _ in rows:
        cells = [fmt(val(n, key), kind) for n in names]
        cells += [ratio(val("Cairn", key), val("Prometheus", key)),
                  ratio(val("Cairn", key), val("VictoriaMetrics", key)),
                  ratio(val("VictoriaMetrics", key), val("Prometheus", key))]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    if args.promtool_block is not None:
        b = args.promtool_block
        lines.append(f"| promtool block from OpenMetrics, bytes per sample | "
                     + " | ".join(f"{b / summary['samples']:.2f}" if n == "Prometheus" else "" for n in names)
                     + " | | | |")
    otlp = (by.get("Cairn") or {}).get("otlp")
    if otlp:
        if "reason" in otlp:
            lines.append(f"| Cairn over OTLP/HTTP | not measured: {otlp['reason']} | | | | | |")
        else:
            rw = val("Cairn", "cpu_s_per_million")
            lines.append(f"| Cairn over OTLP/HTTP (the same data), server CPU s per million samples | | | "
                         f"{otlp['cpu_s_per_million']:.2f} ({otlp['samples_per_s'] / 1000:,.0f} k samples/s, "
                         f"{otlp['series']:,} series; by remote-write {by['Cairn'].get('restart_series') or 0:,}) | | {ratio(otlp['cpu_s_per_million'], val('VictoriaMetrics', 'cpu_s_per_million'))} "
                         f"| {ratio(otlp['cpu_s_per_million'], rw)} of remote-write |")
    def query_value(n, qname, key):
        r = by.get(n)
        if not r or not r.get("available"):
            return None
        return r["queries"][qname].get(key)

    def query_table(title, key, kind, with_promql, floor=0.0):
        lines.append("")
        lines.append(title)
        lines.append("")
        lines.append("| query | " + " | ".join(cols) + " |")
        lines.append("|---" * (len(cols) + 1) + "|")
        for qname, promql, _ in QUERIES:
            def v(n):
                return query_value(n, qname, key)
            cells = []
            for n in names:
                error = query_value(n, qname, "error")
                if error:
                    cells.append("n/a (404)" if "404" in error else "error")
                else:
                    cells.append(fmt(v(n), kind))
            # Below a floor (memory under 0.1 MiB is the allocator's noise)
            # a ratio says nothing.
            def r(a, b):
                return "n/a" if b is not None and b < floor else ratio(a, b)
            cells += [r(v("Cairn"), v("Prometheus")), r(v("Cairn"), v("VictoriaMetrics")),
                      r(v("VictoriaMetrics"), v("Prometheus"))]
            escaped = promql.replace("|", "\\|")
            name = f"{qname}: `{escaped}`" if with_promql else qname
            lines.append(f"| {name} | " + " | ".join(cells) + " |")

    query_table("Dashboard queries, median ms:", "median_ms", "ms", True)
    query_table("Peak memory of each query (resident set high-water mark over its runs, "
                "MiB above the resident set before them):", "peak_mib", "MiB", False, floor=0.1)
    lines.append("")
    lines.append("Result agreement (reference: Prometheus; values within 1e-6 relative):")
    lines.append("")
    ref = by.get("Prometheus")
    for n in names:
        if n == "Prometheus":
            continue
        r = by[n]
        if not r.get("available"):
            continue
        if not ref or not ref.get("available"):
            lines.append(f"- {n}: no Prometheus result to compare with")
            continue
        errors = {r["queries"][q]["error"] for q, _, _ in QUERIES}
        if len(errors) == 1 and None not in errors:
            lines.append(f"- {n}: no query answered ({errors.pop()})")
            continue
        agree, differ = [], []
        for qname, promql, _ in QUERIES:
            a, b = ref["queries"][qname], r["queries"][qname]
            if a["error"] or b["error"]:
                differ.append(f"  - {qname}: error ({a['error'] or b['error']})")
                continue
            problems = agreement("Prometheus", a["result"], n, b["result"])
            if problems:
                expected = " (expected: no extrapolation, different window start)" if (
                    n == "VictoriaMetrics" and any(f in promql for f in VM_EXPECTED_DIFFERENT)) else ""
                differ.append(f"  - {qname}{expected}: " + "; ".join(problems))
            else:
                agree.append(qname)
        lines.append(f"- {n}: {len(agree)} of {len(QUERIES)} queries identical"
                     + (f"; differing:" if differ else ""))
        lines.extend(differ)
    for r in results:
        if not r.get("available"):
            lines.append(f"- {r['name']}: not available ({r.get('reason', 'not run')})")
        elif r["send"]["rejected_samples"]:
            lines.append(f"- {r['name']}: rejected {r['send']['rejected_samples']:,} samples "
                         f"({r['send'].get('first_rejection')})")
        for note in r.get("notes", []):
            lines.append(f"- {r['name']}: {note}")
    return "\n".join(lines) + "\n"


def machine_line():
    mem = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) * 1024
    load = os.getloadavg()
    return (f"{os.cpu_count()} cores, {mem / 2**30:.0f} GiB RAM, load average {load[0]:.1f} at the end "
            f"(a machine shared with other work)")


def versions():
    out = {}
    # The Debian build of VictoriaMetrics prints no version: ask dpkg.
    for name, cmd in [("Prometheus", ["prometheus", "--version"]),
                      ("VictoriaMetrics", ["dpkg-query", "-W", "-f=${Version}", "victoria-metrics"])]:
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
            out[name] = (p.stdout + p.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            out[name] = "unknown"
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="directory written by cairn-workload gen")
    ap.add_argument("--workload-bin", required=True)
    ap.add_argument("--cairn-bin", default="", help="cairn binary; empty: Cairn is not available")
    ap.add_argument("--cairn-unavailable-reason", default="the cairn binary did not build")
    ap.add_argument("--dbs", default="prometheus,victoriametrics,cairn")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--step", type=int, default=60)
    ap.add_argument("--settle-s", type=int, default=10)
    ap.add_argument("--send-timeout", type=int, default=3600)
    ap.add_argument("--markdown", default=None, help="also write the report here")
    ap.add_argument("--json", default=None, help="also write raw figures here")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, cleanup)
    signal.signal(signal.SIGINT, cleanup)
    with open(os.path.join(args.data, "summary.json")) as f:
        summary = json.load(f)
    workdir = tempfile.mkdtemp(prefix="cairn-compare-", dir=args.workdir)
    results = []
    try:
        args.promtool_block = None
        om = os.path.join(args.data, "openmetrics.txt")
        wanted = [d.strip().lower() for d in args.dbs.split(",") if d.strip()]
        for key in wanted:
            if key == "prometheus":
                db = Prometheus(workdir)
            elif key in ("victoriametrics", "vm"):
                db = VictoriaMetrics(workdir)
            elif key == "cairn":
                if not args.cairn_bin:
                    results.append({"name": "Cairn", "available": False, "reason": args.cairn_unavailable_reason})
                    continue
                db = Cairn(workdir, args.cairn_bin)
            else:
                sys.exit(f"unknown database {key!r}")
            log(f"{db.name}: starting in {db.dir}")
            try:
                results.append(measure(db, args, summary))
                if key == "cairn" and os.path.isdir(os.path.join(args.data, "otlp")):
                    log("Cairn: a fresh instance fed the same data over OTLP/HTTP")
                    results[-1]["otlp"] = measure_otlp(Cairn(workdir, args.cairn_bin), args, summary)
            except (OSError, urllib.error.URLError, ValueError, subprocess.TimeoutExpired) as e:
                log(f"{db.name}: failed: {e}")
                results.append({"name": db.name, "available": False, "reason": f"{e}"[:300]})
                stop(db.proc)
            if key == "prometheus" and os.path.exists(om):
                blocks = os.path.join(workdir, "promtool-blocks")
                log("promtool: building a block from the OpenMetrics file")
                p = subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics", om, blocks],
                                   capture_output=True, text=True, timeout=3600)
                if p.returncode == 0:
                    args.promtool_block = dir_bytes(blocks)
                else:
                    log(f"promtool failed: {p.stderr[-300:]}")
        # Keep Prometheus first, then VictoriaMetrics, then Cairn.
        order = {"Prometheus": 0, "VictoriaMetrics": 1, "Cairn": 2}
        results.sort(key=lambda r: order.get(r["name"], 9))
        text = render(results, summary, args, machine_line())
        vers = versions()
        text += "\nVersions: " + "; ".join(f"{k}: {v}" for k, v in vers.items()) + "\n"
        print(text)
        if args.markdown:
            with open(args.markdown, "w") as f:
                f.write(text)
        if args.json:
            for r in results:
                for q in r.get("queries", {}).values():
                    q.pop("result", None)
            with open(args.json, "w") as f:
                json.dump({"summary": summary, "results": results, "versions": vers}, f, indent=1)
    finally:
        cleanup()
        subprocess.run(["rm", "-rf", workdir], timeout=600)


if __name__ == "__main__":
    main()
