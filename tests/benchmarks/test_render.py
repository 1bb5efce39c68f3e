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

# script: (the JSON records it renders, the .md files it writes from them (None: one per record), its
# --render argv given the temp folder)
CASES = {
    "faults": ("faults*.json", None, lambda d: ["--render", "--out", str(d / "faults.md")]),
    "quality": ("quality*.json", None, lambda d: ["--render", "--results", str(d)]),
    "scale": ("scale.json", None, lambda d: ["--render", str(d / "scale.json")]),
    "speed": ("speed.json", None, lambda d: ["--render", "--results", str(d)]),
    "eval_speed": ("eval_speed_*.json", ["eval_speed.md"], lambda d: ["--render", "--results", str(d)]),
    "extension": ("extension.json", None, lambda d: ["--render", "--results", str(d)]),
    "recovery": ("recovery.json", None, lambda d: ["--render", "--results", str(d)]),
    "cloze": ("cloze*.json", None, lambda d: ["--render", "--out", str(d / "cloze_smollm2")]),
    "gen_speed": ("gen_speed.json", None, lambda d: ["--render", "--out", str(d / "gen_speed")]),
}


@pytest.mark.parametrize("script", sorted(CASES))
def test_render_reproduces_committed_results(script: str, tmp_path: Path) -> None:
    pattern, md_names, argv = CASES[script]
    records = sorted(RESULTS.glob(pattern))
    if not records:  # a benchmark whose first results have not been committed yet
        pytest.skip(f"no {pattern} in {RESULTS} yet")
    for p in records:
        shutil.copy(p, tmp_path / p.name)
    importlib.import_module(f"benchmarks.{script}").main(argv(tmp_path))
    written = sorted(p.name for p in tmp_path.glob("*.md"))
    assert written == sorted(md_names or [p.with_suffix(".md").name for p in records])
    for name in written:
        assert (tmp_path / name).read_text() == (RESULTS / name).read_text(), (
            f"{name}: rerun `python -m benchmarks.{script} --render`"
        )


def test_render_notices_a_changed_record() -> None:
    """The comparison above can fail: a changed record renders to a different file."""
    from benchmarks import faults
    from benchmarks.harness import markdown_text, read_json

    record = read_json(RESULTS / "faults-midstage.json")
    assert markdown_text(faults.render(record)) == (RESULTS / "faults-midstage.md").read_text()
    record["machine"] = "another machine"
    assert markdown_text(faults.render(record)) != (RESULTS / "faults-midstage.md").read_text()
