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
# - pyarrow, in a venv at $CAIRN_PEERS_DIR/pyarrow-venv, used by
#   engine/tests/block_pyarrow.rs (a block's Parquet file opens in a
#   standard tool).
# - grpcio and grpcio-tools (a Python client generated from proto/ at test
#   time) and pyarrow, in a venv at $CAIRN_PEERS_DIR/grpc-venv, used by
#   tests/grpc_interop.rs.
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

# --- pyarrow -------------------------------------------------------------
PYARROW_VENV="$PEERS_DIR/pyarrow-venv"
pyarrow_ready() {
  [ -x "$PYARROW_VENV/bin/python" ] && "$PYARROW_VENV/bin/python" -c 'import pyarrow.parquet' 2>/dev/null
}
if ! pyarrow_ready; then
  echo "install-peers: installing pyarrow into $PYARROW_VENV" >&2
  python3 -m venv "$PYARROW_VENV"
  "$PYARROW_VENV/bin/pip" install --quiet --disable-pip-version-check "pyarrow>=15"
  pyarrow_ready
fi

# --- grpcio, grpcio-tools, pyarrow -----------------------------------------
GRPC_VENV="$PEERS_DIR/grpc-venv"
GRPC_PACKAGES=(
  "grpcio>=1.60"
  "grpcio-tools>=1.60"
  "pyarrow>=14"
)
grpc_ready() {
  [ -x "$GRPC_VENV/bin/python" ] && "$GRPC_VENV/bin/python" -c '
import grpc
import grpc_tools.protoc
import pyarrow
' 2>/dev/null
}
if ! grpc_ready; then
  echo "install-peers: installing grpcio, grpcio-tools and pyarrow into $GRPC_VENV" >&2
  python3 -m venv "$GRPC_VENV"
  "$GRPC_VENV/bin/pip" install --quiet --disable-pip-version-check "${GRPC_PACKAGES[@]}"
  grpc_ready
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
