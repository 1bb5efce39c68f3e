"""Every results file that a benchmark writes from a JSON record is reproduced byte for byte by its `--render`.

Each case copies the committed JSON records into a temp folder, runs the script's `--render` there (in this
process: the same code path as `python -m benchmarks.NAME --render`) and compares every .md it wrote with the
committed one. A hand edit to a results file, or a rendering change without regenerating, fails here.
"""

from __future__ import annotations

import importlib
import shutil
from pathlib import Path

import pytest

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"

# script: (the JSON records it renders, its --render argv given the temp folder)
CASES = {
    "faults": ("faults*.json", lambda d: ["--render", "--out", str(d / "faults.md")]),
    "quality": ("quality*.json", lambda d: ["--render", "--results", str(d)]),
    "scale": ("scale.json", lambda d: ["--render", str(d / "scale.json")]),
    "speed": ("speed.json", lambda d: ["--render", "--results", str(d)]),
}


@pytest.mark.parametrize("script", sorted(CASES))
def test_render_reproduces_committed_results(script: str, tmp_path: Path) -> None:
    pattern, argv = CASES[script]
    records = sorted(RESULTS.glob(pattern))
    assert records, f"no {pattern} in {RESULTS}"
    for p in records:
        shutil.copy(p, tmp_path / p.name)
    importlib.import_module(f"benchmarks.{script}").main(argv(tmp_path))
    written = sorted(tmp_path.glob("*.md"))
    assert [p.name for p in written] == sorted(p.with_suffix(".md").name for p in records)
    for p in written:
        assert p.read_text() == (RESULTS / p.name).read_text(), f"{p.name}: rerun `python -m benchmarks.{script} --render`"


def test_render_notices_a_hand_edit(tmp_path: Path) -> None:
    """The comparison above can fail: a changed record renders to a different file."""
    from benchmarks import faults
    from benchmarks.harness import markdown_text, read_json

    record = read_json(RESULTS / "faults-midstage.json")
    record["machine"] = "another machine"
    assert markdown_text(faults.render(record)) != (RESULTS / "faults-midstage.md").read_text()
