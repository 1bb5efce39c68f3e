"""The stage graph, run directories, the manifest, skipping and resuming.

A run directory holds `config.yaml` (the merged, validated config), `manifest.json` (one record per
stage) and each stage's artifacts. A stage is a function `run(ctx: StageContext) -> dict` living in
its own module (listed in STAGES below); it validates its inputs first, writes its artifacts
atomically (vocabadapt.io) and returns a small summary that the manifest keeps.

A stage is skipped on a rerun when its record says done, the config keys it depends on hash the
same, the upstream stages' outputs are the ones it consumed, and its own outputs still match their
fingerprints. Anything else reruns it, which changes its outputs' fingerprints and so reruns what
reads them. The record is written only after the stage finished, so a stage killed at any point is
never taken for finished; training stages resume from their own checkpoints.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib
import logging
import os
import platform
import resource
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import yaml

from .config import Config, load_config
from .errors import (
    ConfigError,
    NotBuiltError,
    RunLockedError,
    StageError,
    TransientError,
    VocabadaptError,
)
from .io import fingerprint, read_json, write_json, atomic_write

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
LOCK = ".lock"


@dataclass(frozen=True)
class StageSpec:
    """One stage: where its code lives, what it depends on, what it writes."""

    name: str
    target: str  # "module:function", imported only when the stage runs
    config_keys: tuple[str, ...]  # dotted config paths whose values change its output
    inputs: tuple[str, ...]  # upstream stages whose outputs it reads
    outputs: tuple[str, ...]  # run-dir relative paths it writes (fingerprinted)
    description: str
    # Resume state (checkpoints) kept across an interruption but cleared when a finished stage is
    # redone because its keys or inputs changed, or under --force: stale weights must not be resumed.
    resume_state: tuple[str, ...] = ()


_MODEL_KEYS = ("models.source_model", "models.source_tokenizer", "models.target_tokenizer")
_TRAIN_KEYS = tuple(
    f"vocab_adaptation.{k}"
    for k in (
        "enabled", "batch_size", "gradient_accumulation", "max_seq_length", "seed", "shuffle", "bf16",
        "use_flash_attn", "warmup_ratio", "lr_scheduler", "weight_decay", "max_grad_norm",
        "gradient_checkpointing", "eval_max_bytes",
    )
)

STAGES: tuple[StageSpec, ...] = (
    StageSpec("corpus", "vocabadapt.corpus:run_stage",
              ("corpus", "tokenization.min_line_length"), (), ("corpus",),
              "read, deduplicate, budget and split the text"),
    StageSpec("tokenize", "vocabadapt.tokenize:run_stage",
              (*_MODEL_KEYS, "term_mining", "tokenization.batch_size", "tokenization.shard_tokens"), ("corpus",),
              ("tokenizers", "terms", "tokens"),
              "prepare both tokenizers (train / add terms) and tokenize into id shards"),
    StageSpec("embed", "vocabadapt.embed:run_stage",
              ("embedding",), ("tokenize",), ("embeddings",),
              "token co-occurrence embeddings for both tokenizers"),
    StageSpec("align", "vocabadapt.align:run_stage",
              ("alignment.pivot_count", "alignment.pivot_strategy", "alignment.similarity_threshold",
               "alignment.method", "alignment.top_k", "alignment.soft_temperature", "alignment.fallback",
               "alignment.seed"),
              ("tokenize", "embed"), ("align",),
              "map every target token to source rows"),
    StageSpec("transplant", "vocabadapt.transplant:run_stage",
              ("models.source_model", "alignment.init", "alignment.norm_match", "alignment.seed", "transplant"),
              ("tokenize", "align"), ("model/init",),
              "rebuild the source model for the target tokenizer"),
    StageSpec("stage1", "vocabadapt.train:run_stage1",
              (*_TRAIN_KEYS, "vocab_adaptation.stage1_steps", "vocab_adaptation.lr_stage1",
               "vocab_adaptation.stage1_optimizer"),
              ("tokenize", "transplant"), ("model/stage1", "train/stage1"),
              "train input embeddings and output head", ("checkpoints/stage1",)),
    StageSpec("stage2", "vocabadapt.train:run_stage2",
              (*_TRAIN_KEYS, "vocab_adaptation.stage1_steps", "vocab_adaptation.stage2_steps",
               "vocab_adaptation.lr_stage2", "vocab_adaptation.train_start_idx_stage2",
               "vocab_adaptation.stage2_use_lora", "vocab_adaptation.stage2_optimizer", "vocab_adaptation.lora_r",
               "vocab_adaptation.lora_alpha", "vocab_adaptation.lora_dropout", "vocab_adaptation.lora_target_modules"),
              ("tokenize", "stage1"), ("model/stage2", "train/stage2"),
              "train the whole model or LoRA", ("checkpoints/stage2",)),
    StageSpec("evaluate", "vocabadapt.evaluate:run_stage",
              ("evaluation", "models.source_model"),
              ("corpus", "tokenize", "align", "transplant", "stage1", "stage2"), ("eval",),
              "bits per byte, PubMedQA, tokenizer efficiency, checklist"),
    StageSpec("report", "vocabadapt.report:run_stage",
              (), ("evaluate",), ("report",),
              "Markdown and HTML report with plots"),
)
STAGE_NAMES = tuple(s.name for s in STAGES)


def get_stage(name: str) -> StageSpec:
    for s in STAGES:
        if s.name == name:
            return s
    raise ConfigError("--from/--until", [f"unknown stage '{name}'; stages are: {', '.join(STAGE_NAMES)}"])


def load_stage_function(spec: StageSpec) -> Callable[["StageContext"], dict]:
    """Import the stage's function; a stage whose module is not written yet raises NotBuiltError."""
    module_name, func_name = spec.target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name == module_name:
            raise NotBuiltError(f"stage '{spec.name}' is not built yet ({module_name} does not exist)") from None
        raise
    func = getattr(module, func_name, None)
    if func is None:
        raise NotBuiltError(f"stage '{spec.name}' is not built yet ({spec.target} is missing)")
    return func


# --------------------------------------------------------------------------------------------------
# the context a stage runs with


@dataclass
class StageContext:
    """What a stage gets: the run directory, the validated config, and earlier stages' records."""

    run_dir: Path
    config: Config
    stage: str
    manifest: dict[str, Any] = field(default_factory=dict)
    index: int = 0  # 1-based position among the stages of this invocation
    total: int = len(STAGES)

    def path(self, *parts: str) -> Path:
        """A path inside the run directory (never outside it)."""
        p = (self.run_dir / Path(*parts)).resolve()
        if self.run_dir.resolve() not in (p, *p.parents):
            raise StageError(f"path {p} escapes the run directory {self.run_dir}")
        return p

    def record(self, stage: str) -> dict[str, Any] | None:
        """The manifest record of an earlier stage (its 'summary' holds what it returned)."""
        return self.manifest.get("stages", {}).get(stage)

    def progress(self, total: int | None = None, unit: str = "it", desc: str | None = None):
        """A progress bar labelled with the stage's position in the run ("[3/9] embed")."""
        from tqdm.auto import tqdm

        label = f"[{self.index}/{self.total}] {desc or self.stage}"
        return tqdm(total=total, unit=unit, desc=label, leave=False, dynamic_ncols=True, disable=None)


# --------------------------------------------------------------------------------------------------
# run directories, lock, manifest


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
        m = d / MANIFEST
        if not m.exists():
            continue
        try:
            manifest = read_json(m)
        except (OSError, ValueError):
            continue
        if not manifest.get("complete"):
            return d
    return None


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold an exclusive flock on `run_dir/.lock` for the duration; refuse when another process holds it.

    The kernel drops a flock when its holder dies (even by SIGKILL), so a dead owner never blocks a
    rerun and two processes can never both hold the lock. The file records the owner (pid@host) for the
    message; it is emptied, not deleted, on exit (deleting it would let a waiting process lock a
    detached inode). A lock naming another host is respected, since a flock may not cross hosts.
    """
    import fcntl

    lock = run_dir / LOCK
    me = f"{os.getpid()}@{socket.gethostname()}"
    fd = os.open(lock, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        owner = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
        os.close(fd)
        raise RunLockedError(f"{run_dir} is in use by process {owner}; wait for it to finish, or stop it") from None
    owner = os.pread(fd, 200, 0).decode(errors="replace").strip()
    host = owner.partition("@")[2]
    if host and host != socket.gethostname():
        os.close(fd)
        raise RunLockedError(
            f"{run_dir} is in use by process {owner} on another machine; if that run is gone, delete {lock}"
        )
    if owner:
        log.warning("taking over the lock %s left by %s, which no longer runs", lock, owner)
    os.ftruncate(fd, 0)
    os.pwrite(fd, me.encode(), 0)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)  # releases the flock


def remove_temp_files(run_dir: Path) -> int:
    """Delete temp names (vocabadapt.io's `.tmp-*`) that killed writers left; call only under the lock."""
    import shutil

    from .io import TMP_PREFIX

    leftovers = sorted(run_dir.rglob(TMP_PREFIX + "*"), key=lambda p: len(p.parts), reverse=True)
    for p in leftovers:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
    return len(leftovers)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is not alive for our purposes.
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


def load_manifest(run_dir: Path) -> dict[str, Any]:
    m = run_dir / MANIFEST
    if not m.exists():
        return {"stages": {}}
    try:
        return read_json(m)
    except ValueError as e:
        raise StageError(f"{m} is corrupt ({e}); move it aside to redo the run from the start") from None


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for mod in ("vocabadapt", "torch", "transformers", "tokenizers", "peft", "accelerate", "numpy"):
        with contextlib.suppress(Exception):
            out[mod] = importlib.import_module(mod).__version__
    return out


def _reset_peak_rss() -> None:
    # Linux: writing 5 to clear_refs resets VmHWM, so each stage reports its own peak.
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def _peak_rss_mb() -> float:
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _output_prints(run_dir: Path, spec: StageSpec, how: str) -> dict[str, Any]:
    return {o: fingerprint(run_dir / o, how) for o in spec.outputs}


def stage_is_current(run_dir: Path, spec: StageSpec, config: Config, manifest: dict) -> tuple[bool, str]:
    """Whether the stage's record still holds; the reason when not."""
    rec = manifest.get("stages", {}).get(spec.name)
    if not rec or rec.get("status") != "done":
        return False, "not finished" if rec else "not run"
    if rec.get("config_hash") != config.section_hash(spec.config_keys):
        return False, "its config keys changed"
    for up in spec.inputs:
        up_rec = manifest["stages"].get(up)
        if up_rec is None or rec.get("inputs", {}).get(up) != up_rec.get("outputs"):
            return False, f"its input from '{up}' changed"
    how = config.pipeline.checkpoint_fingerprints
    now = _output_prints(run_dir, spec, how)
    if now != rec.get("outputs"):
        changed = [o for o in spec.outputs if now.get(o) != rec.get("outputs", {}).get(o)]
        return False, f"its output {', '.join(changed)} is missing or differs from its fingerprint"
    return True, "up to date"


# --------------------------------------------------------------------------------------------------
# running


@dataclass
class RunResult:
    run_dir: Path
    ran: list[str]
    skipped: list[str]
    manifest: dict[str, Any]


def config_differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two config dumps."""
    keys = sorted(set(old) | set(new))
    out = []
    for k in keys:
        a, b = old.get(k), new.get(k)
        path = f"{prefix}{k}"
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_differences(a, b, path + ".")
        elif a != b:
            out.append(path)
    return out


def prepare_run_dir(config: Config, config_path: str | os.PathLike, run_dir: str | os.PathLike | None,
                    force: bool = False) -> Path:
    """Choose and create the run directory; refuse one made from another config file unless forced."""
    if run_dir is None:
        found = latest_unfinished_run(config, config_path)
        run_dir = found if found is not None else new_run_dir(config, config_path)
        if found is not None:
            log.info("resuming unfinished run %s", found)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    saved = run_dir / "config.yaml"
    manifest = load_manifest(run_dir)
    previous_source = manifest.get("config_source")
    if saved.exists() and previous_source and Path(previous_source).name != Path(config_path).name and not force:
        old = yaml.safe_load(saved.read_text()) or {}
        diff = config_differences(old, config.model_dump(mode="json"))
        raise StageError(
            f"{run_dir} was made from {previous_source}, not {config_path}; differing keys: "
            f"{', '.join(diff) or 'none'}. Use another --run-dir, or --force to rerun it with this config."
        )
    return run_dir


def run(
    config_path: str | os.PathLike,
    overrides: tuple[str, ...] | list[str] = (),
    run_dir: str | os.PathLike | None = None,
    from_stage: str | None = None,
    until: str | None = None,
    force: bool = False,
    on_event: Callable[[str, str, str], None] | None = None,
) -> RunResult:
    """Run the pipeline stages in order (from..until), skipping stages that are up to date.

    Args:
        config_path: the YAML config.
        overrides: --set strings.
        run_dir: the run directory; None = resume this config's newest unfinished run, else a new one.
        from_stage/until: the first/last stage to consider.
        force: redo every stage from `from_stage` (or from the start) even if up to date.
        on_event: callback(stage, event, detail) for the CLI display; events: start, skip, done.
    Raises:
        ConfigError, StageError, NotBuiltError, RunLockedError.
    """
    config = load_config(config_path, overrides)
    first = STAGE_NAMES.index(get_stage(from_stage).name) if from_stage else 0
    last = STAGE_NAMES.index(get_stage(until).name) if until else len(STAGES) - 1
    if first > last:
        raise ConfigError("--from/--until", [f"--from {from_stage} comes after --until {until}"])
    run_dir = prepare_run_dir(config, config_path, run_dir, force)
    emit = on_event or (lambda *a: None)
    if config.pipeline.torch_threads:
        import torch

        torch.set_num_threads(config.pipeline.torch_threads)

    with run_lock(run_dir):
        if removed := remove_temp_files(run_dir):
            log.info("removed %d temp file(s) left by an interrupted run", removed)
        manifest = load_manifest(run_dir)
        manifest["config_source"] = str(Path(config_path).resolve())
        with atomic_write(run_dir / "config.yaml") as f:
            f.write(config.to_yaml())
        manifest.setdefault("stages", {})
        manifest["complete"] = False
        ran: list[str] = []
        skipped: list[str] = []
        for i, spec in enumerate(STAGES):
            if i < first or i > last:
                continue
            ctx = StageContext(run_dir=run_dir, config=config, stage=spec.name, manifest=manifest,
                               index=i + 1, total=len(STAGES))
            current, reason = stage_is_current(run_dir, spec, config, manifest)
            if current and not force:
                skipped.append(spec.name)
                emit(spec.name, "skip", reason)
                continue
            emit(spec.name, "start", reason if not force else "forced")
            previous = manifest["stages"].get(spec.name, {}).get("status")
            if force or previous == "done":
                _clear_resume_state(run_dir, spec)
            _run_one(spec, ctx, manifest)
            ran.append(spec.name)
            emit(spec.name, "done", f"{manifest['stages'][spec.name]['wall_s']:.1f}s")
        manifest["complete"] = last == len(STAGES) - 1 and all(
            manifest["stages"].get(s.name, {}).get("status") == "done" for s in STAGES
        )
        write_json(run_dir / MANIFEST, manifest)
    return RunResult(run_dir=run_dir, ran=ran, skipped=skipped, manifest=manifest)


def _clear_resume_state(run_dir: Path, spec: StageSpec) -> None:
    import shutil

    for rel in spec.resume_state:
        path = run_dir / rel
        if path.exists():
            log.info("%s: starting over, removing the checkpoints of its previous run (%s)", spec.name, path)
            shutil.rmtree(path)


def _run_one(spec: StageSpec, ctx: StageContext, manifest: dict) -> None:
    """Run one stage with retries for transient errors, and record it."""
    func = load_stage_function(spec)
    config = ctx.config
    rec: dict[str, Any] = {
        "status": "running",
        "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "config_keys": list(spec.config_keys),
        "config_hash": config.section_hash(spec.config_keys),
        "inputs": {up: manifest["stages"].get(up, {}).get("outputs") for up in spec.inputs},
    }
    manifest["stages"][spec.name] = rec
    write_json(ctx.run_dir / MANIFEST, manifest)

    attempts = config.pipeline.max_retries + 1
    backoff = config.pipeline.retry_backoff
    t0 = time.perf_counter()
    _reset_peak_rss()
    for attempt in range(1, attempts + 1):
        try:
            summary = func(ctx) or {}
            break
        except (TransientError, ConnectionError, TimeoutError) as e:
            if attempt == attempts:
                rec.update(status="failed", error=str(e))
                write_json(ctx.run_dir / MANIFEST, manifest)
                raise StageError(f"stage '{spec.name}' failed after {attempts} attempt(s): {e}") from e
            log.warning("stage %s: transient error (%s); retry %d/%d in %.0fs",
                        spec.name, e, attempt, attempts - 1, backoff)
            time.sleep(backoff)
            backoff *= 2
        except KeyboardInterrupt:
            rec.update(status="interrupted")
            write_json(ctx.run_dir / MANIFEST, manifest)
            raise
        except VocabadaptError as e:
            rec.update(status="failed", error=str(e))
            write_json(ctx.run_dir / MANIFEST, manifest)
            raise
    rec.update(
        status="done",
        finished=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        wall_s=round(time.perf_counter() - t0, 3),
        peak_rss_mb=round(max(_peak_rss_mb(), resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024), 1),
        versions=versions(),
        outputs=_output_prints(ctx.run_dir, spec, config.pipeline.checkpoint_fingerprints),
        summary=summary,
    )
    write_json(ctx.run_dir / MANIFEST, manifest)
