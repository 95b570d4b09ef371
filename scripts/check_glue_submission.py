#!/usr/bin/env python3
"""Checks GLUE submission files against the rules of GLUE's submission server.

    check_glue_submission.py FILE|DIR|ZIP ... [--test TEST_TSV] [--complete]

A file passes when
  * its name is one of the eleven GLUE expects in the submission zip (CoLA.tsv ... AX.tsv);
  * it is tab-separated UTF-8 with the header `index<TAB>prediction` and two fields per row;
  * every prediction is one the server accepts for that task: the label strings of the task
    (`entailment`/`not_entailment` for RTE and QNLI, `entailment`/`neutral`/`contradiction` for
    MNLI and AX, `0`/`1` for CoLA, SST-2, MRPC, QQP and WNLI) or, for STS-B, a number in [0, 5];
  * the indexes are the test set's, once each and in order: those of `--test` when given (the
    file predicted, e.g. a label-free copy of dev), else 0 .. n-1 with GLUE's official test size.

A folder or zip is checked file by file; `--complete` also requires all eleven files (a whole
submission). Prints one line per file and exits 1 when any file fails.
"""

import argparse
import csv
import io
import math
import sys
import zipfile
from pathlib import Path

BINARY = ("0", "1")
NLI3 = ("entailment", "neutral", "contradiction")
NLI2 = ("entailment", "not_entailment")

# File -> (accepted predictions, or None for STS-B's scores; rows of GLUE's test set).
RULES = {
    "CoLA.tsv": (BINARY, 1063),
    "SST-2.tsv": (BINARY, 1821),
    "MRPC.tsv": (BINARY, 1725),
    "STS-B.tsv": (None, 1379),
    "QQP.tsv": (BINARY, 390965),
    "MNLI-m.tsv": (NLI3, 9796),
    "MNLI-mm.tsv": (NLI3, 9847),
    "QNLI.tsv": (NLI2, 5463),
    "RTE.tsv": (NLI2, 3000),
    "WNLI.tsv": (BINARY, 146),
    "AX.tsv": (NLI3, 1104),
}


def test_indexes(path):
    """The `index` column (QQP's `id`) of a GLUE test file, in order."""
    with open(path, encoding="utf-8-sig", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    if not rows:
        raise ValueError(f"{path}: empty test file")
    header = rows[0]
    column = next((header.index(c) for c in ("index", "id") if c in header), None)
    if column is None:
        raise ValueError(f"{path}: no index column in the header {header}")
    return [row[column] for row in rows[1:] if row]


def check_text(name, text, indexes=None):
    """Problems of one submission file's text (empty when it passes)."""
    if name not in RULES:
        return [f"`{name}` is not a GLUE submission file name ({', '.join(RULES)})"]
    accepted, official_rows = RULES[name]
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if not lines or lines[0].rstrip("\r") != "index\tprediction":
        return ["the first line must be the header `index<TAB>prediction`"]
    expected = indexes if indexes is not None else [str(i) for i in range(official_rows)]
    problems = []
    seen = []
    for number, line in enumerate(lines[1:], start=2):
        fields = line.rstrip("\r").split("\t")
        if len(fields) != 2:
            problems.append(f"line {number}: {len(fields)} fields, expected 2")
            continue
        index, prediction = fields
        seen.append(index)
        if accepted is None:
            try:
                score = float(prediction)
            except ValueError:
                score = math.nan
            if not 0.0 <= score <= 5.0:
                problems.append(f"line {number}: STS-B score `{prediction}` is not in [0, 5]")
        elif prediction not in accepted:
            problems.append(f"line {number}: `{prediction}` is not one of {', '.join(accepted)}")
    if len(seen) != len(expected):
        problems.append(f"{len(seen)} predictions, the test set has {len(expected)} rows")
    elif seen != expected:
        first = next(i for i, (a, b) in enumerate(zip(seen, expected)) if a != b)
        problems.append(
            f"line {first + 2}: index `{seen[first]}` where the test set has `{expected[first]}`"
        )
    return problems


def submission_files(path):
    """(name, text) of every file a path names: a file, a folder's files, a zip's members."""
    path = Path(path)
    if path.is_dir():
        return [(p.name, p.read_text(encoding="utf-8")) for p in sorted(path.glob("*.tsv"))]
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            return [
                (Path(n).name, z.read(n).decode("utf-8"))
                for n in z.namelist()
                if not n.endswith("/")
            ]
    return [(path.name, path.read_text(encoding="utf-8"))]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("paths", nargs="+", help="submission files, folders or zips")
    parser.add_argument("--test", help="the test file that was predicted (its indexes)")
    parser.add_argument("--complete", action="store_true", help="require all eleven files")
    args = parser.parse_args(argv)
    try:
        indexes = test_indexes(args.test) if args.test else None
        files = [f for p in args.paths for f in submission_files(p)]
    except (OSError, ValueError, UnicodeDecodeError, zipfile.BadZipFile) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    failed = False
    for name, text in files:
        problems = check_text(name, text, indexes)
        failed |= bool(problems)
        print(f"{name}: " + ("ok" if not problems else "; ".join(problems[:5])))
    if args.complete:
        missing = sorted(set(RULES) - {name for name, _ in files})
        if missing:
            failed = True
            print(f"missing from the submission: {', '.join(missing)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
