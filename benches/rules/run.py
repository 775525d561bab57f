#!/usr/bin/env python3
"""Rule evaluation time, Cairn beside Prometheus, on the same data.

Writes a group of 200 recording rules (the dashboard queries of the LLM
workload: request and error rates, error ratio, p50/p95/p99 latency and
TTFT, tokens/s, cost and $ per 1k tokens, cache hit ratio, safety
violations, GPU and queue gauges, by model, adapter, route, region, ...),
generates the workload with `cairn-workload gen` so that it ends a few
minutes after now, and for each database in turn (never both at once):
starts it fresh on 127.0.0.1 with the rule file, loads the workload with
`cairn-workload send` over remote-write, then reads the group's
`evaluationTime` from `/api/v1/rules` after each of its evaluations.

Prints, per database, the median and minimum group evaluation time and the
number of evaluations read, and the ratio Prometheus / Cairn (above 1:
Cairn is faster). Invoked by benches/rules/run.sh.
"""

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

BY = [
    ("fleet", []),
    ("model", ["model"]),
    ("model_adapter", ["model", "adapter"]),
    ("model_route", ["model", "route"]),
    ("model_adapter_route", ["model", "adapter", "route"]),
    ("region_model", ["region", "model"]),
    ("cluster", ["cluster"]),
    ("route", ["route"]),
    ("adapter", ["adapter"]),
    ("model_version", ["model", "version"]),
]

# (record suffix, expression with {by} and {by_le}).
TEMPLATES = [
    ("infer_requests:rate5m", "sum by ({by}) (rate(infer_requests_total[5m]))"),
    ("infer_errors:rate5m", "sum by ({by}) (rate(infer_errors_total[5m]))"),
    ("infer_errors:ratio_rate5m",
     "sum by ({by}) (rate(infer_errors_total[5m])) / sum by ({by}) (rate(infer_requests_total[5m]))"),
    ("infer_latency_ms:p50_5m",
     "histogram_quantile(0.5, sum by ({by_le}) (rate(infer_latency_ms_bucket[5m])))"),
    ("infer_latency_ms:p95_5m",
     "histogram_quantile(0.95, sum by ({by_le}) (rate(infer_latency_ms_bucket[5m])))"),
    ("infer_latency_ms:p99_5m",
     "histogram_quantile(0.99, sum by ({by_le}) (rate(infer_latency_ms_bucket[5m])))"),
    ("ttft_ms:p95_5m", "histogram_quantile(0.95, sum by ({by_le}) (rate(ttft_ms_bucket[5m])))"),
    ("ttft_ms:p50_5m", "histogram_quantile(0.5, sum by ({by_le}) (rate(ttft_ms_bucket[5m])))"),
    ("infer_completion_tokens:rate5m",
     "sum by ({by}) (rate(infer_tokens_total{{direction=\"completion\"}}[5m]))"),
    ("infer_tokens:rate5m", "sum by ({by}) (rate(infer_tokens_total[5m]))"),
    ("infer_cost_usd:rate5m", "sum by ({by}) (rate(infer_cost_usd_total[5m]))"),
    ("infer_cost_usd_per_1k_tokens:rate5m",
     "1000 * sum by ({by}) (rate(infer_cost_usd_total[5m])) / sum by ({by}) (rate(infer_tokens_total[5m]))"),
    ("cache_hit:ratio_rate5m",
     "sum by ({by}) (rate(cache_hits_total[5m])) / sum by ({by}) (rate(infer_requests_total[5m]))"),
    ("safety_violations:rate5m", "sum by ({by}) (rate(safety_violations_total[5m]))"),
    ("infer_latency_ms:mean_5m",
     "sum by ({by}) (rate(infer_latency_ms_sum[5m])) / sum by ({by}) (rate(infer_latency_ms_count[5m]))"),
    ("gpu_utilization_percent:avg", "avg by ({by}) (gpu_utilization_percent)"),
    ("queue_depth:max", "max by ({by}) (queue_depth)"),
    ("infer_cost_usd:increase30m", "sum by ({by}) (increase(infer_cost_usd_total[30m]))"),
    ("infer_requests:top5_rate5m", "topk(5, sum by ({by}) (rate(infer_requests_total[5m])))"),
    ("infer_errors_5xx:rate5m",
     "sum by ({by}) (rate(infer_errors_total{{code=~\"5..\"}}[5m]))"),
]


def rule_file(interval):
    lines = ["groups:", "  - name: llm_dashboards", f"    interval: {interval}", "    rules:"]
    for prefix, labels in BY:
        by = ", ".join(labels)
        by_le = ", ".join(["le"] + labels)
        for suffix, expr in TEMPLATES:
            lines.append(f"      - record: {prefix}:{suffix}")
            lines.append("        expr: '" + expr.format(by=by, by_le=by_le) + "'")
    assert len(TEMPLATES) * len(BY) == 200
    return "\n".join(lines) + "\n"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def get_json(url, timeout=30):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())


def wait_ready(url, proc, secs=120):
    deadline = time.time() + secs
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except Exception:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} never ready")


def measure(name, cmd, base, workload, data, evaluations, interval_s, log):
    proc = subprocess.Popen(cmd, stdout=log, stderr=log)
    try:
        wait_ready(base + "/-/ready", proc)
        t0 = time.time()
        send = subprocess.run([workload, "send", "--dir", data, "--url", base + "/api/v1/write",
                               "--concurrency", "2"], capture_output=True, text=True, timeout=1800)
        if send.returncode != 0:
            raise RuntimeError(f"send to {name} failed: {send.stderr}")
        print(f"{name}: loaded in {time.time() - t0:.0f} s: {send.stdout.strip().splitlines()[-1]}",
              file=sys.stderr)
        seen = {}
        first = None
        deadline = time.time() + (evaluations + 4) * interval_s * 2 + 60
        while len(seen) < evaluations and time.time() < deadline:
            g = get_json(base + "/api/v1/rules")["data"]["groups"][0]
            last = g["lastEvaluation"]
            # The first evaluation after the load is skipped: it may have
            # started while samples were still arriving.
            if not last.startswith("0001") and g["evaluationTime"] > 0:
                if first is None:
                    first = last
                elif last != first and last not in seen:
                    seen[last] = g["evaluationTime"]
                bad = [r for r in g["rules"] if r["health"] != "ok"]
                if bad:
                    raise RuntimeError(f"{name}: rule {bad[0]['name']} failed: {bad[0]['lastError']}")
            time.sleep(interval_s / 4)
        out = get_json(base + "/api/v1/query?query=" + urllib.request.quote(
            "count({__name__=~\".+:.+:.+\"})"))
        recorded = out["data"]["result"][0]["value"][1] if out["data"]["result"] else "0"
        times = list(seen.values())
        if not times:
            raise RuntimeError(f"{name}: no evaluation read")
        return {"median_s": statistics.median(times), "min_s": min(times), "n": len(times),
                "recorded_series": recorded}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cairn-bin", required=True)
    ap.add_argument("--workload-bin", required=True)
    ap.add_argument("--series", type=int, default=10000)
    ap.add_argument("--duration", default="30m")
    ap.add_argument("--interval", default="15s")
    ap.add_argument("--evaluations", type=int, default=8)
    ap.add_argument("--workdir", default="/tmp")
    ap.add_argument("--dbs", default="prometheus,cairn")
    a = ap.parse_args()
    interval_s = int(a.interval.rstrip("s"))

    work = tempfile.mkdtemp(prefix="cairn-rules-bench.", dir=a.workdir)
    try:
        rules = os.path.join(work, "dashboards.rules.yml")
        with open(rules, "w") as f:
            f.write(rule_file(a.interval))
        subprocess.run(["promtool", "check", "rules", rules], check=True, capture_output=True)
        # The data ends 4 minutes from now so that the 5m windows of the
        # rules hold samples while they are measured.
        dur_ms = int(a.duration.rstrip("m")) * 60_000
        start = int(time.time() * 1000) + 4 * 60_000 - dur_ms
        data = os.path.join(work, "workload")
        subprocess.run([a.workload_bin, "gen", "--out", data, "--series", str(a.series),
                        "--duration", a.duration, "--start", str(start), "--adapters", "10"],
                       check=True, capture_output=True)
        results = {}
        log = open(os.path.join(work, "servers.log"), "w")
        for db in a.dbs.split(","):
            port = free_port()
            base = f"http://127.0.0.1:{port}"
            d = os.path.join(work, db)
            os.makedirs(d)
            if db == "prometheus":
                cfg = os.path.join(d, "prometheus.yml")
                with open(cfg, "w") as f:
                    f.write(f"global:\n  evaluation_interval: {a.interval}\nrule_files:\n  - {rules}\n")
                cmd = ["prometheus", f"--config.file={cfg}", f"--storage.tsdb.path={d}/data",
                       f"--web.listen-address=127.0.0.1:{port}", "--web.enable-remote-write-receiver",
                       "--storage.tsdb.retention.time=3650d", "--log.level=warn"]
            else:
                cfg = os.path.join(d, "cairn.yml")
                with open(cfg, "w") as f:
                    f.write(f"global:\n  evaluation_interval: {a.interval}\nrule_files:\n  - {rules}\n")
                cmd = [a.cairn_bin, "serve", f"--config={cfg}", f"--data-dir={d}/data",
                       f"--http-listen=127.0.0.1:{port}",
                       f"--otlp-grpc-listen=127.0.0.1:{free_port()}",
                       f"--otlp-http-listen=127.0.0.1:{free_port()}",
                       f"--grpc-listen=127.0.0.1:{free_port()}", "--retention=3650d",
                       "--log-level=warn"]
            results[db] = measure(db, cmd, base, a.workload_bin, data, a.evaluations, interval_s, log)
            shutil.rmtree(d, ignore_errors=True)
            print(f"{db}: {json.dumps(results[db])}")
        if "prometheus" in results and "cairn" in results:
            p, c = results["prometheus"], results["cairn"]
            print(f"Prometheus / Cairn group evaluation time: median {p['median_s'] / c['median_s']:.2f}x, "
                  f"min {p['min_s'] / c['min_s']:.2f}x (above 1: Cairn faster)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
