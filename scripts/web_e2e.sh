#!/usr/bin/env bash
# The browser app end to end (issue #6): build it with trunk, train a tiny SQuAD export on CPU
# (splade-tiny, a slice of the shared data; resumable, reused when already there), put it and
# results.json files beside the page, serve on 127.0.0.1, and drive Debian's headless Chromium
# with playwright-core (web/e2e/e2e.mjs). Screenshots and a report land in $WEB_E2E_DIR/shots.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${WEB_E2E_DIR:-target/web-e2e}
PORT=${WEB_E2E_PORT:-8767}
DATA=${BERTVISION_DATA:-../shared/data}/squad2/dev-v2.0-28-articles.json
mkdir -p "$WORK/shots"

# scripts/test.sh hands over the binary its test build made; alone, build one.
BV=${BERTVISION_BIN:-}
if [ -z "$BV" ]; then
    cargo build -q -p bertvision
    BV=${CARGO_TARGET_DIR:-target}/debug/bertvision
fi
"$BV" run --task SQuAD2 --model splade-tiny --seeds 1 --limit-train 400 --limit-eval 120 \
    --max-length 192 --doc-stride 64 --epochs 1 --extract-at 0.5,1 --eval-every-epochs 0.25 \
    --eval-articles 6 --data "$DATA" --out "$WORK/squad" \
    > "$WORK/squad.log" 2>&1 || { tail -5 "$WORK/squad.log"; exit 1; }

# A tiny RTE export for the classification page.
GLUE=${BERTVISION_DATA:-../shared/data}/glue
"$BV" run --task RTE --model splade-tiny --seeds 1 --limit-train 128 --limit-eval 32 \
    --max-length 64 --epochs 1 --data-dir "$GLUE" --out "$WORK/rte" \
    > "$WORK/rte.log" 2>&1 || { tail -5 "$WORK/rte.log"; exit 1; }

# binaryen 132's wasm-opt from npm (Trunk.toml requires that version; Debian's 108 breaks the app).
[ -d web/e2e/node_modules/binaryen ] || (cd web/e2e && npm ci --no-audit --no-fund)
(cd web && PATH="$PWD/e2e/node_modules/.bin:$PATH" trunk build --release)
"$BV" web-assets --export "$WORK/squad/seed-1/export" --squad "$WORK/squad/dev.squad.json" \
    --classify-export "$WORK/rte/seed-1/export" --glue "$GLUE/RTE/dev.tsv" \
    --results "$WORK/squad/results.json" tests/fixtures/web/results-wnli.json \
    tests/fixtures/web/results-wnli-head-only.json --out web/dist

# The native answer for the sample the page preselects (first passage, first question).
python3 - "$WORK" <<'PY'
import json, sys
work = sys.argv[1]
first = json.load(open("web/dist/samples.json"))[0]
open(f"{work}/passage.txt", "w").write(first["context"])
open(f"{work}/question.txt", "w").write(first["questions"][0]["question"])
PY
"$BV" answer --export "$WORK/squad/seed-1/export" --passage-file "$WORK/passage.txt" \
    --question "$(cat "$WORK/question.txt")" --json "$WORK/native-answer.json" > /dev/null
python3 - "$WORK" <<'PY'
import json, sys
work = sys.argv[1]
json.dump({"question": open(f"{work}/question.txt").read(),
           "answers": json.load(open(f"{work}/native-answer.json"))},
          open(f"{work}/native.json", "w"))
PY

# The native classification of the sample the classification page preselects.
python3 - "$WORK" <<'PY'
import json, sys
first = json.load(open("web/dist/classify-samples.json"))["samples"][0]
json.dump(first, open(f"{sys.argv[1]}/classify-sample.json", "w"))
PY
SAMPLE=$WORK/classify-sample.json
"$BV" classify --export "$WORK/rte/seed-1/export" \
    --text "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["text"])' "$SAMPLE")" \
    --text-pair "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["pair"])' "$SAMPLE")" \
    --json "$WORK/native-classify-answers.json" > /dev/null
python3 - "$WORK" <<'PY'
import json, sys
work = sys.argv[1]
sample = json.load(open(f"{work}/classify-sample.json"))
json.dump({"text": sample["text"], "answers": json.load(open(f"{work}/native-classify-answers.json"))},
          open(f"{work}/native-classify.json", "w"))
PY

[ -d web/e2e/node_modules/playwright-core ] || (cd web/e2e && npm ci --no-audit --no-fund)
python3 -m http.server "$PORT" --bind 127.0.0.1 --directory web/dist > "$WORK/http.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
sleep 1
node web/e2e/e2e.mjs "http://127.0.0.1:$PORT/" "$WORK/native.json" tests/fixtures/web/results-v1.json "$WORK/shots" \
    "$WORK/native-classify.json"
