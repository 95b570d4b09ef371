#!/usr/bin/env python3
"""Tests of check_glue_submission.py: every rule accepts a good file and refuses a bad one.

    python3 -m unittest discover -s scripts -p 'test_*.py'
"""

import contextlib
import io
import tempfile
import unittest
import zipfile
from pathlib import Path

import check_glue_submission as check


def rows(name, predictions):
    return "index\tprediction\n" + "".join(f"{i}\t{p}\n" for i, p in enumerate(predictions))


def official(name, prediction):
    return rows(name, [prediction] * check.RULES[name][1])


class CheckText(unittest.TestCase):
    def test_official_sizes_and_labels_pass(self):
        for name, label in [("RTE.tsv", "not_entailment"), ("MNLI-mm.tsv", "neutral"),
                            ("CoLA.tsv", "1"), ("STS-B.tsv", "4.250"), ("AX.tsv", "entailment")]:
            self.assertEqual(check.check_text(name, official(name, label)), [], name)

    def test_refusals(self):
        rte = official("RTE.tsv", "entailment")
        cases = {
            "name": ("rte.tsv", rte),
            "header": ("RTE.tsv", rte.replace("index\tprediction", "id\tlabel", 1)),
            "label": ("RTE.tsv", rte.replace("0\tentailment", "0\tneutral", 1)),
            "numeric label": ("QNLI.tsv", official("QNLI.tsv", "1")),
            "fields": ("RTE.tsv", rte.replace("0\tentailment", "0\tentailment\t0.9", 1)),
            "short": ("RTE.tsv", rows("RTE.tsv", ["entailment"] * 2999)),
            "order": ("RTE.tsv", rte.replace("0\t", "X\t", 1)),
            "score above 5": ("STS-B.tsv", official("STS-B.tsv", "5.01")),
            "score not a number": ("STS-B.tsv", official("STS-B.tsv", "nan")),
            "negative score": ("STS-B.tsv", official("STS-B.tsv", "-0.1")),
        }
        for what, (name, text) in cases.items():
            self.assertNotEqual(check.check_text(name, text), [], what)

    def test_indexes_of_the_predicted_file(self):
        text = "index\tprediction\n7\t0\n3\t1\n"
        self.assertEqual(check.check_text("MRPC.tsv", text, ["7", "3"]), [])
        self.assertNotEqual(check.check_text("MRPC.tsv", text, ["3", "7"]), [])
        self.assertNotEqual(check.check_text("MRPC.tsv", text, ["7", "3", "9"]), [])


class Main(unittest.TestCase):
    def run_main(self, *argv):
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            code = check.main([str(a) for a in argv])
        return code, out.getvalue()

    def test_test_file_folder_and_zip(self):
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            test = tmp / "test.tsv"
            test.write_text("index\tsentence1\tsentence2\n5\ta\tb\n6\tc\td\n")
            sub = tmp / "sub"
            sub.mkdir()
            (sub / "RTE.tsv").write_text("index\tprediction\n5\tentailment\n6\tnot_entailment\n")
            self.assertEqual(self.run_main(sub / "RTE.tsv", "--test", test)[0], 0)
            (sub / "WNLI.tsv").write_text(rows("WNLI.tsv", ["2"]))
            code, printed = self.run_main(sub, "--test", test)
            self.assertEqual(code, 1)
            self.assertIn("WNLI.tsv: ", printed)
            archive = tmp / "submission.zip"
            with zipfile.ZipFile(archive, "w") as z:
                for name in check.RULES:
                    z.writestr(name, official(name, "4" if name == "STS-B.tsv" else
                                              check.RULES[name][0][0]))
            self.assertEqual(self.run_main(archive, "--complete"), (0, self.run_main(archive)[1]))
            code, printed = self.run_main(sub / "RTE.tsv", "--complete", "--test", test)
            self.assertEqual(code, 1)
            self.assertIn("missing from the submission", printed)

    def test_unreadable_input_is_one_line(self):
        code, printed = self.run_main("/nonexistent/RTE.tsv")
        self.assertEqual(code, 1)
        self.assertEqual(len(printed.strip().splitlines()), 1)


if __name__ == "__main__":
    unittest.main()
