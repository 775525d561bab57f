"""End-to-end OTLP/HTTP ingest load against a running Cairn.

Usage: python ingest.py URL PID [REQUESTS]
  URL  e.g. http://127.0.0.1:4318/v1/metrics
  PID  the cairn process, whose CPU time (utime+stime from /proc) is read
       before and after the run

Each request is one resource with 1,000 cumulative counter points, 500
gauge points and 250 explicit-bucket histogram points (12 bounds, 15
samples each): 1,750 data points, 5,250 samples (+ target_info). Bodies
are built up front (protobuf, uncompressed), one per request with its own
timestamps 15 s apart, so the client's Python costs stay out of the timed
loop. Prints data points/s and samples/s (wall clock, one client) and the
server's CPU seconds per million data points and per million samples.
Run with the OpenTelemetry venv's python (scripts/install-peers.sh), which
has the generated OTLP protobuf classes.
"""

import os
import sys
import time
import urllib.request

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2 as m

MODELS = ["llama-3-70b", "mistral-7b", "qwen-2-72b", "gemma-2-27b", "phi-3"]
ROUTES = ["/v1/chat", "/v1/completions", "/v1/embeddings", "/v1/rerank"]
REGIONS = ["eu-west-1", "us-east-1", "ap-south-1"]
BOUNDS = [5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000]


def kv(k, v):
    return KeyValue(key=k, value=AnyValue(string_value=v))


def attrs(i, tag):
    return [
        kv("model", MODELS[i % 5]),
        kv("route", ROUTES[(i // 5) % 4]),
        kv("region", REGIONS[(i // 20) % 3]),
        kv("adapter", f"lora-{i // 60 + tag}"),
    ]


def body(step, t0_ns):
    t = t0_ns + step * 15_000_000_000
    start = t0_ns - 3_600_000_000_000
    req = ExportMetricsServiceRequest()
    rm = req.resource_metrics.add()
    rm.resource.attributes.extend(
        [kv("service.name", "llm-server"), kv("service.namespace", "ml"),
         kv("service.instance.id", "pod-17"), kv("host.name", "gpu-node-17")]
    )
    sm = rm.scope_metrics.add()
    c = sm.metrics.add(name="infer.requests", unit="{request}")
    c.sum.aggregation_temporality = m.AGGREGATION_TEMPORALITY_CUMULATIVE
    c.sum.is_monotonic = True
    for i in range(1000):
        p = c.sum.data_points.add(start_time_unix_nano=start, time_unix_nano=t,
                                  as_double=float(step * 10 + i % 7))
        p.attributes.extend(attrs(i, 0))
    g = sm.metrics.add(name="gpu.utilization", unit="1")
    for i in range(500):
        p = g.gauge.data_points.add(time_unix_nano=t, as_double=(i % 100) / 100)
        p.attributes.extend(attrs(i, 1))
    h = sm.metrics.add(name="infer.latency", unit="ms")
    h.histogram.aggregation_temporality = m.AGGREGATION_TEMPORALITY_CUMULATIVE
    for i in range(250):
        counts = [step + (i + b) % 5 for b in range(len(BOUNDS) + 1)]
        p = h.histogram.data_points.add(
            start_time_unix_nano=start, time_unix_nano=t, count=sum(counts),
            sum=float(sum(counts) * 40), bucket_counts=counts, explicit_bounds=BOUNDS)
        p.attributes.extend(attrs(i, 2))
    return req.SerializeToString()


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def main():
    url, pid = sys.argv[1], int(sys.argv[2])
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 200
    t0_ns = (time.time_ns() // 1_000_000_000 - n * 15) * 1_000_000_000
    bodies = [body(s, t0_ns) for s in range(n)]
    points, samples = 1750 * n, 5250 * n
    cpu0, wall0 = cpu_seconds(pid), time.monotonic()
    for b in bodies:
        req = urllib.request.Request(
            url, data=b, headers={"Content-Type": "application/x-protobuf"})
        with urllib.request.urlopen(req) as resp:
            out = resp.read()
            if resp.status != 200 or out:
                sys.exit(f"unexpected answer {resp.status}: {out[:200]!r}")
    wall, cpu = time.monotonic() - wall0, cpu_seconds(pid) - cpu0
    print(f"{n} requests, {points} data points, {samples} samples in {wall:.2f} s")
    print(f"{points / wall:,.0f} data points/s, {samples / wall:,.0f} samples/s (one client)")
    print(f"server CPU: {cpu:.2f} s = {cpu / points * 1e6:.2f} s per million points, "
          f"{cpu / samples * 1e6:.2f} s per million samples")


if __name__ == "__main__":
    main()
