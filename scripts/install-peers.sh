#!/usr/bin/env bash
# Installs the real clients and servers the interop tests talk to, once;
# quick (a few checks, no network) when they are already there. Called by
# scripts/test.sh. Tests find the peers through the paths printed here and
# skip nothing: a missing peer is a test failure, not a silent pass.
#
# Peers:
# - OpenTelemetry Python SDK and OTLP exporters (gRPC and HTTP), in a venv at
#   $CAIRN_PEERS_DIR/otel-venv (default ~/.cache/cairn-peers), used by
#   tests/otlp_interop.rs.
# - grpcio, grpcio-tools, pyarrow and moto, in one venv at
#   $CAIRN_PEERS_DIR/py-venv: tests/grpc_interop.rs generates a Python client
#   from proto/ at test time and reads the Arrow export;
#   engine/tests/block_pyarrow.rs opens a block's Parquet file in a standard
#   tool; tests/s3.rs runs moto's S3 server (`moto_server`) on 127.0.0.1 as
#   the block store.
set -euo pipefail

PEERS_DIR="${CAIRN_PEERS_DIR:-$HOME/.cache/cairn-peers}"
mkdir -p "$PEERS_DIR"

# --- OpenTelemetry Python SDK --------------------------------------------
OTEL_VENV="$PEERS_DIR/otel-venv"
OTEL_PACKAGES=(
  "opentelemetry-sdk>=1.20"
  "opentelemetry-exporter-otlp-proto-grpc>=1.20"
  "opentelemetry-exporter-otlp-proto-http>=1.20"
)
otel_ready() {
  [ -x "$OTEL_VENV/bin/python" ] && "$OTEL_VENV/bin/python" -c '
import opentelemetry.sdk.metrics
import opentelemetry.exporter.otlp.proto.grpc.metric_exporter
import opentelemetry.exporter.otlp.proto.http.metric_exporter
' 2>/dev/null
}
if ! otel_ready; then
  echo "install-peers: installing the OpenTelemetry Python SDK into $OTEL_VENV" >&2
  python3 -m venv "$OTEL_VENV"
  "$OTEL_VENV/bin/pip" install --quiet --disable-pip-version-check "${OTEL_PACKAGES[@]}"
  otel_ready
fi

# --- grpcio, grpcio-tools, pyarrow, moto (one venv) --------------------------
PY_VENV="$PEERS_DIR/py-venv"
PY_PACKAGES=(
  "grpcio>=1.60"
  "grpcio-tools>=1.60"
  "pyarrow>=14"
  "moto[server]>=5"
)
py_ready() {
  [ -x "$PY_VENV/bin/python" ] && "$PY_VENV/bin/python" -c '
import grpc
import grpc_tools.protoc
import pyarrow.parquet
import moto.server
' 2>/dev/null && [ -x "$PY_VENV/bin/moto_server" ]
}
if ! py_ready; then
  echo "install-peers: installing grpcio, grpcio-tools, pyarrow and moto into $PY_VENV" >&2
  python3 -m venv "$PY_VENV"
  "$PY_VENV/bin/pip" install --quiet --disable-pip-version-check "${PY_PACKAGES[@]}"
  py_ready
fi

# --- Prometheus, promtool, vmagent (Debian packages) -------------------------
# Used by tests/prometheus_interop.rs: Prometheus remote-writes to Cairn,
# scrapes Cairn's /metrics and remote-reads from it; promtool queries
# Cairn's API; vmagent remote-writes to Cairn. Only the binaries are used
# (the packages' own services are not needed by the tests).
if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null \
   || ! command -v vmagent >/dev/null; then
  echo "install-peers: installing prometheus and victoria-metrics (apt)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends prometheus victoria-metrics >/dev/null
fi
command -v prometheus >/dev/null && command -v promtool >/dev/null && command -v vmagent >/dev/null

# --- Alertmanager (Debian package) -------------------------------------------
# Used by tests/rules_alertmanager.rs: Cairn's rule evaluation posts alerts
# to a real Alertmanager, whose webhook receiver calls the test back. Only
# the binary is used (the package's service is not started by the tests).
if ! command -v prometheus-alertmanager >/dev/null; then
  echo "install-peers: installing prometheus-alertmanager (apt)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends prometheus-alertmanager >/dev/null
fi
command -v prometheus-alertmanager >/dev/null
