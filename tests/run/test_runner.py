"""Pipeline mechanics with small fake stages: skipping, invalidation, failures, locks, run dirs."""

import json
import os
import subprocess
import sys

import pytest

from vocabadapt.errors import RunLockedError, StageError, TransientError
from vocabadapt.io import write_json
from vocabadapt.run import runner as pipeline
from vocabadapt.run.context import StageSpec
from vocabadapt.run.layout import RunLayout
from vocabadapt.run.lock import run_lock
from vocabadapt.stages import STAGE_NAMES, STAGES

CALLS: list[str] = []
FAIL: dict[str, object] = {}


def _stage_a(ctx):
    CALLS.append("a")
    # output depends on one config key, so changing it changes the fingerprint
    write_json(ctx.layout.path("a", "out.json"), {"seed": ctx.config.alignment.seed})
    return {"wrote": 1}


def _stage_b(ctx):
    CALLS.append("b")
    failure = FAIL.pop("b", None)
    if failure is not None:
        raise failure
    data = json.loads(ctx.layout.path("a", "out.json").read_text())
    write_json(ctx.layout.path("b", "out.json"), {"from_a": data, "pivots": ctx.config.alignment.pivot_count})
    return {"a_seed": data["seed"]}


FAKE = (
    StageSpec("a", _stage_a, ("alignment.seed",), (), lambda layout: (layout.path("a"),), "first"),
    StageSpec("b", _stage_b, ("alignment.pivot_count",), ("a",), lambda layout: (layout.path("b"),), "second"),
)


@pytest.fixture()
def fake(monkeypatch, tmp_path):
    monkeypatch.setattr(pipeline, "stages", lambda: FAKE)
    CALLS.clear()
    FAIL.clear()
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("pipeline: {run_root: runs, retry_backoff: 0}\n")
    return cfg


def test_runs_all_then_skips_everything(fake, tmp_path):
    r1 = pipeline.run(fake, run_dir=tmp_path / "run")
    assert r1.ran == ["a", "b"] and r1.manifest["complete"]
    rec = r1.manifest["stages"]["b"]
    assert rec["status"] == "done" and rec["summary"] == {"a_seed": 0}
    assert rec["inputs"]["a"] == r1.manifest["stages"]["a"]["outputs"]
    assert rec["outputs"]["b"]["files"] == 1 and len(rec["outputs"]["b"]["sha256"]) == 64
    assert (tmp_path / "run" / "config.yaml").exists()
    r2 = pipeline.run(fake, run_dir=tmp_path / "run")
    assert r2.ran == [] and r2.skipped == ["a", "b"] and CALLS == ["a", "b"]


def test_changed_key_reruns_that_stage_only_when_outputs_unchanged(fake, tmp_path):
    pipeline.run(fake, run_dir=tmp_path / "run")
    r = pipeline.run(fake, ["alignment.pivot_count=7"], run_dir=tmp_path / "run")
    assert r.ran == ["b"] and r.skipped == ["a"]
    assert json.loads((tmp_path / "run" / "b" / "out.json").read_text())["pivots"] == 7


def test_changed_upstream_output_reruns_downstream(fake, tmp_path):
    pipeline.run(fake, run_dir=tmp_path / "run")
    r = pipeline.run(fake, ["alignment.seed=3"], run_dir=tmp_path / "run")
    assert r.ran == ["a", "b"]


def test_corrupted_output_is_detected_and_redone(fake, tmp_path):
    pipeline.run(fake, run_dir=tmp_path / "run")
    out = tmp_path / "run" / "b" / "out.json"
    out.write_text(out.read_text().replace("pivots", "pivotz"))
    r = pipeline.run(fake, run_dir=tmp_path / "run")
    assert r.ran == ["b"]
    assert "pivots" in out.read_text()


def test_force_and_from_until(fake, tmp_path):
    pipeline.run(fake, run_dir=tmp_path / "run", until="a")
    assert CALLS == ["a"]
    r = pipeline.run(fake, run_dir=tmp_path / "run", from_stage="a", force=True)
    assert r.ran == ["a", "b"]


def test_failed_stage_is_not_recorded_done_and_resumes(fake, tmp_path):
    FAIL["b"] = StageError("bad data in b")
    with pytest.raises(StageError, match="bad data"):
        pipeline.run(fake, run_dir=tmp_path / "run")
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["stages"]["b"]["status"] == "failed" and not manifest["complete"]
    r = pipeline.run(fake, run_dir=tmp_path / "run")
    assert r.ran == ["b"] and r.skipped == ["a"]


def test_a_stage_is_never_rerun_on_a_transient_error(fake, tmp_path):
    # Downloads retry themselves (tests/model/test_download_retry.py); the runner runs a stage once.
    FAIL["b"] = TransientError("connection reset")
    with pytest.raises(StageError, match="stage 'b' failed on a transient error: connection reset; rerun to resume"):
        pipeline.run(fake, run_dir=tmp_path / "run")
    assert CALLS == ["a", "b"]
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["stages"]["b"]["status"] == "failed" and manifest["stages"]["b"]["error"] == "connection reset"
    r = pipeline.run(fake, run_dir=tmp_path / "run")
    assert r.ran == ["b"] and CALLS == ["a", "b", "b"]


def test_a_stage_error_is_not_retried(fake, tmp_path):
    FAIL["b"] = StageError("bad data in b")
    with pytest.raises(StageError, match="bad data"):
        pipeline.run(fake, run_dir=tmp_path / "run")
    assert CALLS == ["a", "b"]


def test_live_lock_refuses_stale_lock_is_taken(fake, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from vocabadapt.run.lock import run_lock\n"
            "with run_lock(Path(sys.argv[1]) / '.lock'):\n    print('held', flush=True); time.sleep(30)",
            str(run_dir),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunLockedError, match=f"in use by process {holder.pid}@"):
            pipeline.run(fake, run_dir=run_dir)
    finally:
        holder.kill()  # SIGKILL: the kernel drops its flock, its pid stays written in the file
        holder.wait()
    # the owner is gone: the lock is stale and the run proceeds, emptying it afterwards
    pipeline.run(fake, run_dir=run_dir)
    assert (run_dir / ".lock").read_text() == ""


def test_a_held_flock_refuses_a_second_run(fake, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with run_lock(RunLayout(run_dir).lock):
        assert str(os.getpid()) in (run_dir / ".lock").read_text()
        with pytest.raises(RunLockedError, match=f"in use by process {os.getpid()}@"):
            pipeline.run(fake, run_dir=run_dir)
    pipeline.run(fake, run_dir=run_dir)  # released on exit


def test_temp_files_of_a_killed_writer_are_removed(fake, tmp_path):
    run_dir = tmp_path / "run"
    (run_dir / "a").mkdir(parents=True)
    (run_dir / "a" / ".tmp-out.json.x1").write_text("half")
    (run_dir / ".tmp-model.x2").mkdir()
    pipeline.run(fake, run_dir=run_dir)
    assert not list(run_dir.rglob(".tmp-*"))


def test_without_run_dir_resumes_newest_unfinished_run(fake, tmp_path):
    FAIL["b"] = StageError("boom")
    with pytest.raises(StageError):
        pipeline.run(fake)
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1 and runs[0].name.startswith("cfg-")
    r = pipeline.run(fake)
    assert r.run_dir == runs[0] and r.ran == ["b"]


def test_run_dir_of_another_config_file_is_refused(fake, tmp_path):
    pipeline.run(fake, run_dir=tmp_path / "run")
    other = tmp_path / "other.yaml"
    other.write_text("pipeline: {run_root: runs}\nalignment: {pivot_count: 9}\n")
    with pytest.raises(StageError, match="alignment.pivot_count"):
        pipeline.run(other, run_dir=tmp_path / "run")
    assert pipeline.run(other, run_dir=tmp_path / "run", force=True).ran == ["a", "b"]


def test_context_paths_never_escape_run_dir(tmp_path):
    from vocabadapt.config import Config

    layout = pipeline.StageContext(layout=RunLayout(tmp_path), config=Config(), stage="x").layout
    assert layout.path("a", "b") == tmp_path / "a" / "b"
    with pytest.raises(StageError, match="escapes"):
        layout.path("..", "evil")


def test_stage_table_matches_design_order():
    assert STAGE_NAMES == (
        "corpus",
        "tokenize",
        "embed",
        "align",
        "transplant",
        "stage1",
        "stage2",
        "evaluate",
        "report",
    )
    from vocabadapt.config import Config

    dumped = Config().model_dump()
    for spec in STAGES:  # every dependency key exists in the schema
        for key in spec.config_keys:
            cur = dumped
            for part in key.split("."):
                assert part in cur, f"{spec.name}: unknown config key {key}"
                cur = cur[part]


def test_changing_num_processes_reruns_stage1(tmp_path):
    """One list of output-changing training keys (issue 13): num_processes was in the checkpoint record only,
    so a finished stage 1 counted as up to date after changing it."""
    from vocabadapt.config import Config
    from vocabadapt.run.manifest import output_prints, stage_is_current
    from vocabadapt.stages.train import STAGE1, STAGE2
    from vocabadapt.training.settings import OUTPUT_KEYS

    assert STAGE1.config_keys == OUTPUT_KEYS["stage1"] and STAGE2.config_keys == OUTPUT_KEYS["stage2"]
    layout = RunLayout(tmp_path)
    one, two = Config(), Config(vocab_adaptation={"num_processes": 2})
    upstream = {up: {"status": "done", "outputs": {}} for up in STAGE1.inputs}
    manifest = {
        "stages": {
            **upstream,
            "stage1": {
                "status": "done",
                "config_hash": one.section_hash(STAGE1.config_keys),
                "inputs": {up: {} for up in upstream},
                "outputs": output_prints(layout, STAGE1, "size"),
            },
        }
    }
    assert stage_is_current(layout, STAGE1, one, manifest) == (True, "up to date")
    assert stage_is_current(layout, STAGE1, two, manifest) == (False, "its config keys changed")
