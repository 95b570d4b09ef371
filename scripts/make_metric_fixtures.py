#!/usr/bin/env python3
"""Reference values for the metric tests, from the reference implementations themselves.

* GLUE: scikit-learn (accuracy_score, f1_score, matthews_corrcoef) and scipy (pearsonr, spearmanr)
  on seeded random and degenerate cases -> tests/fixtures/metrics/glue_sklearn_scipy.json
* SQuAD 2.0: the official evaluation as ported in Hugging Face transformers 4.46.3
  (transformers/data/metrics/squad_metrics.py, fetched from PyPI into a temp dir; its two
  package-relative imports are stubbed, the evaluation functions are used unchanged) on
  (a) a hand-made edge-case dataset (tests/fixtures/squad/edge_cases.json) and
  (b) the shared 28-article dev file with seeded synthetic predictions
  -> tests/fixtures/squad/*.predictions.json, *.na_prob.json, *.expected.json

Needs: numpy, scipy, scikit-learn, pip. Run from the repo root:
    python3 scripts/make_metric_fixtures.py --shared-data ../shared/data
"""
import argparse
import json
import pathlib
import random
import subprocess
import sys
import tempfile
import zipfile

import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

ROOT = pathlib.Path(__file__).resolve().parent.parent
FIX = ROOT / "tests" / "fixtures"


def glue_fixtures():
    rng = np.random.default_rng(7)
    cases = []
    for i in range(12):
        n = int(rng.integers(5, 400))
        k = 3 if i % 4 == 3 else 2
        gold = rng.integers(0, k, n)
        noise = rng.random(n) < rng.uniform(0.1, 0.6)
        pred = np.where(noise, rng.integers(0, k, n), gold)
        if i == 5:
            pred = np.ones(n, dtype=int)  # constant predictions: MCC undefined -> 0
        if i == 6:
            pred = np.zeros(n, dtype=int)  # no positive predictions: F1 -> 0
        c = {"kind": "classes", "pred": pred.tolist(), "gold": gold.tolist(),
             "accuracy": accuracy_score(gold, pred), "matthews": matthews_corrcoef(gold, pred)}
        if k == 2:
            c["f1"] = f1_score(gold, pred, zero_division=0)
        cases.append(c)
    for i in range(8):
        n = int(rng.integers(3, 300))
        x = rng.uniform(0, 5, n)
        y = x + rng.normal(0, 1.5, n)
        if i % 2 == 0:  # ties, like STS-B's 0.2-step scores
            x = np.round(x * 5) / 5
            y = np.round(y)
        cases.append({"kind": "scores", "x": x.tolist(), "y": y.tolist(),
                      "pearson": float(pearsonr(x, y)[0]), "spearman": float(spearmanr(x, y)[0])})
    out = FIX / "metrics" / "glue_sklearn_scipy.json"
    out.write_text(json.dumps({"generator": "scripts/make_metric_fixtures.py", "cases": cases}) + "\n")
    print("wrote", out, len(cases), "cases")


def official_squad_eval():
    tmp = pathlib.Path(tempfile.mkdtemp())
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(tmp),
                    "transformers==4.46.3"], check=True)
    wheel = next(tmp.glob("transformers-4.46.3-*.whl"))
    src = zipfile.ZipFile(wheel).read("transformers/data/metrics/squad_metrics.py").decode()
    src = src.replace("from ...models.bert import BasicTokenizer", "BasicTokenizer = None")
    src = src.replace("from ...utils import logging", "import logging\nlogging.get_logger = logging.getLogger")
    ns = {}
    exec(compile(src, "squad_metrics.py", "exec"), ns)

    class Example:
        def __init__(self, qa):
            self.qas_id = qa["id"]
            self.answers = qa["answers"]

    def evaluate(dataset, preds, na_probs):
        examples = [Example(qa) for a in dataset["data"] for p in a["paragraphs"] for qa in p["qas"]]
        out = ns["squad_evaluate"](examples, preds, na_probs)
        if na_probs is None:  # the official script adds best_* only when given an na_prob file
            for k in ["best_exact", "best_exact_thresh", "best_f1", "best_f1_thresh"]:
                out.pop(k, None)
        return dict(out)

    return evaluate


def synthetic_predictions(dataset, rng):
    """Gold answers, near misses, empties, unicode and punctuation-only strings, random spans."""
    preds, na = {}, {}
    junk = ["...", "!?", "¿", "—", "the", "a an the", "Café", "東京", "  ", "ÉCOLE!", "naïve"]
    for a in dataset["data"]:
        for p in a["paragraphs"]:
            ctx = p["context"]
            for qa in p["qas"]:
                r = rng.random()
                golds = [x["text"] for x in qa["answers"]]
                if golds and r < 0.35:
                    t = rng.choice(golds)
                elif golds and r < 0.5:
                    t = rng.choice(golds).upper() + rng.choice(["", ".", " the", "!"])
                elif r < 0.7:
                    t = ""
                elif r < 0.8:
                    t = rng.choice(junk)
                else:
                    s = rng.randrange(len(ctx))
                    t = ctx[s: s + rng.randrange(1, 40)]
                preds[qa["id"]] = t
                na[qa["id"]] = round(rng.random(), 2)  # rounding makes ties
    return preds, na


def squad_fixtures(shared_data):
    evaluate = official_squad_eval()
    edge = json.loads((FIX / "squad" / "edge_cases.json").read_text())
    edge_preds = json.loads((FIX / "squad" / "edge_cases.predictions.json").read_text())
    edge_na = json.loads((FIX / "squad" / "edge_cases.na_prob.json").read_text())
    expected = {"without_na_prob": evaluate(edge, edge_preds, None),
                "with_na_prob": evaluate(edge, edge_preds, edge_na)}
    (FIX / "squad" / "edge_cases.expected.json").write_text(json.dumps(expected, indent=1) + "\n")
    print("edge cases:", expected)

    dev_path = pathlib.Path(shared_data) / "squad2" / "dev-v2.0-28-articles.json"
    dev = json.loads(dev_path.read_text())
    rng = random.Random(20261126)
    preds, na = synthetic_predictions(dev, rng)
    (FIX / "squad" / "dev28.predictions.json").write_text(json.dumps(preds, ensure_ascii=False) + "\n")
    (FIX / "squad" / "dev28.na_prob.json").write_text(json.dumps(na) + "\n")
    expected = {"without_na_prob": evaluate(dev, preds, None), "with_na_prob": evaluate(dev, preds, na)}
    (FIX / "squad" / "dev28.expected.json").write_text(json.dumps(expected, indent=1) + "\n")
    print("dev28:", expected)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared-data", default=str(ROOT.parent / "shared" / "data"))
    args = ap.parse_args()
    glue_fixtures()
    squad_fixtures(args.shared_data)
