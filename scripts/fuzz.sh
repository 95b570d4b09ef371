#!/usr/bin/env bash
# Bounded fuzzing of the file readers (issue #7): each target runs for FUZZ_SECONDS (default 20)
# from the committed seeds, on a scratch corpus so the repository is not touched. Needs the
# nightly toolchain and cargo-fuzz; a crash leaves its input under fuzz/artifacts/<target>/ —
# turn it into a regression test (native/tests/bad_inputs.rs or the formats crate's tests).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
SECONDS_EACH=${FUZZ_SECONDS:-20}
SCRATCH=$(mktemp -d)
trap 'rm -rf "$SCRATCH"' EXIT
cargo +nightly fuzz build -O
for target in safetensors_header bert_config squad_json glue_tsv; do
    mkdir -p "$SCRATCH/$target"
    cargo +nightly fuzz run -O "$target" "$SCRATCH/$target" "seeds/$target" -- \
        -max_total_time="$SECONDS_EACH" -max_len=65536 2>&1 | grep -E "^Done|ERROR|panicked" || true
    # cargo fuzz exits non-zero on a crash; with the grep above, check the artifacts instead.
    if compgen -G "artifacts/$target/*" > /dev/null; then
        echo "fuzz: $target found a crash: $(ls artifacts/$target)"; exit 1
    fi
done
echo "fuzz: no crashes in ${SECONDS_EACH}s per target"
