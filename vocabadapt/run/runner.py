"""The runner: choose the run directory, lock it, run the stages in order, skip what is up to date.

A run directory holds `config.yaml` (the merged, validated config), `manifest.json` (one record per
stage, vocabadapt.run.manifest) and each stage's artifacts (vocabadapt.run.layout). The stages are
vocabadapt.stages.STAGES, imported here when a run starts, so `vocabadapt audit` never loads torch.
Training stages resume from their own checkpoints.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import yaml

from ..config import Config, load_config
from ..errors import ConfigError, StageError, TransientError, VocabadaptError
from ..io import atomic_write, read_json, write_json
from . import manifest as mf
from .context import StageContext, StageSpec
from .layout import RunLayout
from .lock import remove_temp_files, run_lock

log = logging.getLogger(__name__)


def stages() -> tuple[StageSpec, ...]:
    """The pipeline's stages, in order (vocabadapt.stages.STAGES)."""
    from ..stages import STAGES

    return STAGES


def get_stage(name: str, specs: Sequence[StageSpec] | None = None) -> StageSpec:
    """The stage called `name`.

    Raises:
        ConfigError: unknown name; the message lists the stages.
    """
    specs = stages() if specs is None else specs
    for s in specs:
        if s.name == name:
            return s
    raise ConfigError("--from/--until", [f"unknown stage '{name}'; stages are: {', '.join(s.name for s in specs)}"])


# --------------------------------------------------------------------------------------------------
# run directories


def new_run_dir(config: Config, config_path: str | os.PathLike) -> Path:
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    name = _safe_name(Path(config_path).stem)
    return Path(config.pipeline.run_root) / f"{name}-{stamp}"


def _safe_name(name: str) -> str:
    # A run name from a file name never escapes run_root (no separators, no '..').
    cleaned = "".join(c if c.isalnum() or c in "-_." else "_" for c in name).strip(".")
    return cleaned or "run"


def latest_unfinished_run(config: Config, config_path: str | os.PathLike) -> Path | None:
    """The newest run directory of this config name whose manifest is not complete, if any."""
    root = Path(config.pipeline.run_root)
    if not root.is_dir():
        return None
    prefix = _safe_name(Path(config_path).stem) + "-"
    for d in sorted((p for p in root.iterdir() if p.is_dir() and p.name.startswith(prefix)), reverse=True):
        m = RunLayout(d).manifest
        if not m.exists():
            continue
        try:
            manifest = read_json(m)
        except (OSError, ValueError):
            continue
        if not manifest.get("complete"):
            return d
    return None


def prepare_run_dir(
    config: Config, config_path: str | os.PathLike, run_dir: str | os.PathLike | None, force: bool = False
) -> Path:
    """Choose and create the run directory; refuse one made from another config file unless forced.

    Raises:
        StageError: the directory was made from another config file (and not forced).
    """
    if run_dir is None:
        found = latest_unfinished_run(config, config_path)
        run_dir = found if found is not None else new_run_dir(config, config_path)
        if found is not None:
            log.info("resuming unfinished run %s", found)
    layout = RunLayout(Path(run_dir))
    layout.root.mkdir(parents=True, exist_ok=True)
    previous_source = layout.manifest_data().get("config_source")
    if (
        layout.config_yaml.exists()
        and previous_source
        and Path(previous_source).name != Path(config_path).name
        and not force
    ):
        old = yaml.safe_load(layout.config_yaml.read_text()) or {}
        diff = mf.config_differences(old, config.model_dump(mode="json"))
        raise StageError(
            f"{layout.root} was made from {previous_source}, not {config_path}; differing keys: "
            f"{', '.join(diff) or 'none'}. Use another --run-dir, or --force to rerun it with this config."
        )
    return layout.root


# --------------------------------------------------------------------------------------------------
# running


@dataclass
class RunResult:
    run_dir: Path
    ran: list[str]
    skipped: list[str]
    manifest: dict[str, Any]


def run(
    config_path: str | os.PathLike,
    overrides: tuple[str, ...] | list[str] = (),
    run_dir: str | os.PathLike | None = None,
    from_stage: str | None = None,
    until: str | None = None,
    force: bool = False,
    on_event: Callable[[str, str, str], None] | None = None,
    specs: Sequence[StageSpec] | None = None,
) -> RunResult:
    """Run the pipeline stages in order (from..until), skipping stages that are up to date.

    Args:
        config_path: the YAML config.
        overrides: --set strings.
        run_dir: the run directory; None = resume this config's newest unfinished run, else a new one.
        from_stage/until: the first/last stage to consider.
        force: redo every stage from `from_stage` (or from the start) even if up to date.
        on_event: callback(stage, event, detail) for the CLI display; events: start, skip, done (detail: the
            wall time, and the stage summary's "note" when it has one).
        specs: the stages (default vocabadapt.stages.STAGES).
    Raises:
        ConfigError, StageError, RunLockedError.
    """
    config = load_config(config_path, overrides)
    specs = tuple(stages() if specs is None else specs)
    names = [s.name for s in specs]
    first = names.index(get_stage(from_stage, specs).name) if from_stage else 0
    last = names.index(get_stage(until, specs).name) if until else len(specs) - 1
    if first > last:
        raise ConfigError("--from/--until", [f"--from {from_stage} comes after --until {until}"])
    layout = RunLayout(prepare_run_dir(config, config_path, run_dir, force))
    emit = on_event or (lambda *a: None)
    if config.pipeline.torch_threads:
        import torch

        torch.set_num_threads(config.pipeline.torch_threads)

    with run_lock(layout.lock):
        if removed := remove_temp_files(layout.root):
            log.info("removed %d temp file(s) left by an interrupted run", removed)
        manifest = layout.manifest_data()
        manifest["config_source"] = str(Path(config_path).resolve())
        with atomic_write(layout.config_yaml) as f:
            f.write(config.to_yaml())
        manifest.setdefault("stages", {})
        manifest["complete"] = False
        ran: list[str] = []
        skipped: list[str] = []
        for i, spec in enumerate(specs):
            if i < first or i > last:
                continue
            ctx = StageContext(layout=layout, config=config, stage=spec.name, index=i + 1, total=len(specs))
            current, reason = mf.stage_is_current(layout, spec, config, manifest)
            if current and not force:
                skipped.append(spec.name)
                emit(spec.name, "skip", reason)
                continue
            emit(spec.name, "start", reason if not force else "forced")
            previous = manifest["stages"].get(spec.name, {}).get("status")
            if force or previous == "done":
                _clear_resume_state(layout, spec)
            _run_one(spec, ctx, manifest)
            ran.append(spec.name)
            rec = manifest["stages"][spec.name]
            note = rec["summary"].get("note")  # a stage's one-line remark, e.g. why it had nothing to do
            emit(spec.name, "done", f"{rec['wall_s']:.1f}s" + (f"; {note}" if note else ""))
        manifest["complete"] = last == len(specs) - 1 and all(
            manifest["stages"].get(s.name, {}).get("status") == "done" for s in specs
        )
        write_json(layout.manifest, manifest)
    return RunResult(run_dir=layout.root, ran=ran, skipped=skipped, manifest=manifest)


def _clear_resume_state(layout: RunLayout, spec: StageSpec) -> None:
    for path in spec.resume_state(layout):
        if path.exists():
            log.info("%s: starting over, removing the checkpoints of its previous run (%s)", spec.name, path)
            shutil.rmtree(path)


def _run_one(spec: StageSpec, ctx: StageContext, manifest: dict) -> None:
    """Run one stage once, and record it.

    A stage is never rerun on a transient error: the downloads inside it retry themselves
    (vocabadapt.model.hub, pipeline.max_retries). A network error that escapes a stage fails it with
    a StageError; a rerun resumes it.
    """
    config, layout = ctx.config, ctx.layout
    rec = mf.start_record(spec, config, manifest)
    manifest["stages"][spec.name] = rec
    write_json(layout.manifest, manifest)

    t0 = time.perf_counter()
    mf.reset_peak_rss()
    try:
        summary = spec.run(ctx) or {}
    except KeyboardInterrupt:
        rec.update(status="interrupted")
        write_json(layout.manifest, manifest)
        raise
    except (TransientError, ConnectionError, TimeoutError) as e:
        rec.update(status="failed", error=str(e))
        write_json(layout.manifest, manifest)
        raise StageError(f"stage '{spec.name}' failed on a transient error: {e}; rerun to resume it") from e
    except VocabadaptError as e:
        rec.update(status="failed", error=str(e))
        write_json(layout.manifest, manifest)
        raise
    rec.update(
        status="done",
        finished=mf.now(),
        wall_s=round(time.perf_counter() - t0, 3),
        peak_rss_mb=round(mf.peak_rss_mb(), 1),
        versions=mf.versions(),
        outputs=mf.output_prints(layout, spec, config.pipeline.checkpoint_fingerprints),
        summary=summary,
    )
    write_json(layout.manifest, manifest)
