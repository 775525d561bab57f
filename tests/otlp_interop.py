"""Exports metrics to Cairn with the real OpenTelemetry Python SDK.

Usage: otlp_interop.py grpc|http ENDPOINT INSTANCE
       otlp_interop.py raw-grpc HOST:PORT


Records a counter, an up-down counter, an observable gauge and a histogram
with resource attributes, and exports them twice (two collections, a second
apart) through the OTLP gRPC or HTTP exporter, gzip-compressed. The HTTP run
asks for delta temporality for counters and histograms, so that Cairn's
delta-to-cumulative conversion is exercised by a real client. Exits non-zero
if an export does not succeed. Called by tests/otlp_interop.rs.
"""

import sys
import time

from opentelemetry.sdk.metrics import (
    Counter,
    Histogram,
    MeterProvider,
    ObservableGauge,
    UpDownCounter,
)
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    InMemoryMetricReader,
    MetricExportResult,
)
from opentelemetry.sdk.resources import Resource


def exporter(kind, endpoint):
    if kind == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
            OTLPMetricExporter,
        )
        from grpc import Compression

        return OTLPMetricExporter(
            endpoint=endpoint, insecure=True, compression=Compression.Gzip
        ), AggregationTemporality.CUMULATIVE
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
        OTLPMetricExporter,
    )

    return OTLPMetricExporter(
        endpoint=endpoint, compression=Compression.Gzip
    ), AggregationTemporality.DELTA


def raw_grpc(target):
    """Sends hand-made bodies to Export with grpcio; prints the outcome of
    each on a line: `empty OK`, `truncated INVALID_ARGUMENT ...`."""
    import grpc

    channel = grpc.insecure_channel(target)
    export = channel.unary_unary(
        "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"
    )
    # resource_metrics (field 1) claiming 5 bytes, followed by only 2.
    for name, body in [("empty", b""), ("truncated", b"\x0a\x05\x0a\x03")]:
        try:
            export(body, timeout=10)
            print(name, "OK")
        except grpc.RpcError as e:
            print(name, e.code().name, e.details())


def main():
    if sys.argv[1] == "raw-grpc":
        raw_grpc(sys.argv[2])
        return
    kind, endpoint, instance = sys.argv[1], sys.argv[2], sys.argv[3]
    exp, temporality = exporter(kind, endpoint)
    reader = InMemoryMetricReader(
        preferred_temporality={
            Counter: temporality,
            Histogram: temporality,
            UpDownCounter: AggregationTemporality.CUMULATIVE,
            ObservableGauge: AggregationTemporality.CUMULATIVE,
        }
    )
    resource = Resource.create(
        {
            "service.name": "llm-server",
            "service.namespace": "ml",
            "service.instance.id": instance,
            "k8s.cluster.name": "eu-1",
            "deployment.environment": "test",
        }
    )
    provider = MeterProvider(resource=resource, metric_readers=[reader])
    meter = provider.get_meter("cairn.interop", "1.0")

    requests = meter.create_counter("infer.requests", unit="{request}", description="Inference requests")
    queue = meter.create_up_down_counter("queue.depth", unit="{item}", description="Queued requests")
    latency = meter.create_histogram("infer.latency", unit="ms", description="Inference latency")
    utilisation = {"value": 0.25}

    def observe(_options):
        from opentelemetry.metrics import Observation

        yield Observation(utilisation["value"], {"gpu": "0"})

    meter.create_observable_gauge("gpu.utilization", callbacks=[observe], unit="1", description="GPU busy fraction")

    attrs = {"model": "llama"}
    # First collection: 8 requests, queue 5, latencies 30 and 80 ms.
    requests.add(5, attrs)
    requests.add(3, attrs)
    queue.add(5, attrs)
    latency.record(30, attrs)
    latency.record(80, attrs)
    export(exp, reader)

    time.sleep(1.0)
    # Second collection: 2 more requests (10 in all), queue 3, one more
    # latency of 120 ms, utilisation 0.75.
    requests.add(2, attrs)
    queue.add(-2, attrs)
    latency.record(120, attrs)
    utilisation["value"] = 0.75
    export(exp, reader)
    exp.shutdown()


def export(exp, reader):
    data = reader.get_metrics_data()
    result = exp.export(data, timeout_millis=10_000)
    if result != MetricExportResult.SUCCESS:
        print(f"export failed: {result}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
