#!/usr/bin/env bash
# Installs what the full test suite needs, skipping whatever is already there at the right
# version: Debian's chromium (+ driver) for the browser test, the wasm32 target, trunk and the
# wasm-bindgen CLI of exactly the crate's version (no tool is ever downloaded at build time),
# the nightly toolchain + cargo-fuzz for the bounded fuzz runs, playwright-core from npm, and
# Mesa's Vulkan drivers (lavapipe: Vulkan on the CPU) for the CubeCL kernel tests.
# `setup.sh packages` installs only the system packages, `setup.sh tools` only the rest
# (`scripts/test.sh` runs the first beside the build: it waits on the network, not the CPU).
set -euo pipefail
cd "$(dirname "$0")/.."
PART=${1:-all}

TRUNK=0.21.14            # 0.22 needs rustc >= 1.96.1
WASM_BINDGEN=0.2.130     # must equal wasm-bindgen in Cargo.lock
CARGO_FUZZ=0.13.2

APT=()
command -v chromium > /dev/null || APT+=(chromium chromium-driver)
ls /usr/share/vulkan/icd.d/lvp_icd*.json > /dev/null 2>&1 || APT+=(mesa-vulkan-drivers libvulkan1)
if [ "$PART" != tools ] && [ ${#APT[@]} -gt 0 ]; then
    SUDO=$([ "$(id -u)" = 0 ] && echo "" || echo sudo)
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq "${APT[@]}" > /dev/null
fi
[ "$PART" != packages ] || exit 0
rustup target add wasm32-unknown-unknown > /dev/null 2>&1
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal

# Build tools, not shipped code: a quick unoptimised-LTO build is plenty (trunk's own profile,
# fat LTO with one codegen unit, takes 11 minutes on 2 cores).
quick_install() {
    CARGO_PROFILE_RELEASE_LTO=off CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
        CARGO_PROFILE_RELEASE_OPT_LEVEL=1 cargo install -q "$@"
}
[ "$(trunk --version 2>/dev/null)" = "trunk $TRUNK" ] || quick_install trunk --version "$TRUNK" --locked
# Not --locked: its lockfile pins a yanked webpki-roots.
[ "$(wasm-bindgen --version 2>/dev/null)" = "wasm-bindgen $WASM_BINDGEN" ] ||
    quick_install wasm-bindgen-cli --version "$WASM_BINDGEN"
[ "$(cargo fuzz --version 2>/dev/null)" = "cargo-fuzz $CARGO_FUZZ" ] ||
    quick_install cargo-fuzz --version "$CARGO_FUZZ" --locked
# playwright-core drives Chromium; binaryen 132 (its wasm-opt, in Node) optimises the app's wasm.
[ -d web/e2e/node_modules/playwright-core ] && [ -d web/e2e/node_modules/binaryen ] ||
    (cd web/e2e && npm ci --no-audit --no-fund --silent)
