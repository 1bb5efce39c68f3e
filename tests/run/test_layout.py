"""RunLayout owns the run directory: no other module of the package spells a run-artifact path."""

import re
from pathlib import Path

from vocabadapt.run.layout import MODELS, RunLayout
from vocabadapt.stages import STAGES

PACKAGE = Path(__file__).resolve().parents[2] / "vocabadapt"
# Names that only a run directory has (file formats of libraries, e.g. config.json, are not among them).
RUN_NAMES = (
    "heldout.jsonl",
    "train.jsonl",
    "stats.json",
    "summary.json",
    "mapping.json",
    "provenance.jsonl",
    "checklist.json",
    "manifest.json",
    "config.yaml",
    "terms.txt",
    "checkpoints",
)


def test_no_run_path_literal_outside_the_layout():
    offenders = []
    for f in PACKAGE.rglob("*.py"):
        if f.name == "layout.py" and f.parent.name == "run":
            continue
        code = "\n".join(line for line in f.read_text().splitlines() if not line.lstrip().startswith("#"))
        code = re.sub(r'""".*?"""', "", code, flags=re.S)  # docstrings describe the layout; code must not spell it
        for name in RUN_NAMES:  # a path built from the name: `x / "name"`, path("...name"), open("...name")
            q = re.escape(name)
            if re.search(
                r"""/\s*["'][^"'\n]*""" + q + r"""["']|(?:path|joinpath|open|Path)\(\s*["'][^"'\n]*""" + q, code
            ):
                offenders.append(f"{f.relative_to(PACKAGE)}: {name}")
    assert not offenders, offenders


def test_every_stage_output_is_a_layout_path(tmp_path):
    layout = RunLayout(tmp_path)
    names = {n for spec in STAGES for n in spec.output_names(layout)}
    assert {"corpus", "tokenizers", "terms", "tokens", "embeddings", "align", "eval", "report"} <= names
    assert {f"model/{m}" for m in MODELS} <= names
    assert {"train/stage1", "train/stage2"} <= names  # the training summaries are fingerprinted outputs
    assert layout.train_summary_file("stage1").parent == layout.train_dir("stage1")
