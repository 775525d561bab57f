#!/usr/bin/env bash
# The one test command (README.md): builds and runs every test of the
# workspace. Interop tests that need real peers (Prometheus, vmagent,
# Alertmanager, an S3 server, the OpenTelemetry SDK) install them through
# scripts/install-peers.sh, called from here, so a fresh machine needs
# nothing by hand.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -x scripts/install-peers.sh ]; then
  scripts/install-peers.sh
fi

# A clean CI clone builds once: incremental state would only cost disk.
if [ -n "${CI:-}" ]; then
  export CARGO_INCREMENTAL=0
fi

cargo test --workspace --locked "$@"
