"""Checkpoints: seals that prove a checkpoint is whole, the settings record a resume must match,
and the LoRA saver of the trainable embedding and head rows.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback

from ..errors import StageError
from ..io import (
    atomic_dir,
    atomic_write,
    fingerprint,
    read_json,
    read_jsonl,
    write_json,
)

log = logging.getLogger(__name__)

STATE_FILE = "vocabadapt_train.json"  # checkpoints/<stage>/: the settings the checkpoints were made with
ROWS_FILE = "vocabadapt_trainable_rows.safetensors"  # LoRA checkpoints: embeddings + head
_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
_INPUT_KEYS = {"input_model", "train_data"}  # settings keys that name inputs, not configuration


def seal_path(checkpoint: Path) -> Path:
    return checkpoint.with_name(checkpoint.name + ".seal.json")


def valid_checkpoints(checkpoint_dir: Path, need_rows: bool) -> list[tuple[int, Path]]:
    """Finished, intact checkpoints, oldest first.

    A checkpoint counts only when its seal (`checkpoint-N.seal.json`, written by CheckpointSeal after
    everything else of it) exists and still matches the directory's sha256 fingerprint: one cut off
    mid-write has no seal, and one damaged on disk afterwards no longer matches, so training never
    resumes from garbage (it falls back to an older checkpoint or starts the stage over).
    """
    out: list[tuple[int, Path]] = []
    if not checkpoint_dir.is_dir():
        return out
    for d in checkpoint_dir.iterdir():
        m = _CHECKPOINT_RE.match(d.name)
        if not m or not d.is_dir():
            continue
        if not (d / "trainer_state.json").is_file():
            continue
        if need_rows and not (d / ROWS_FILE).is_file():
            continue
        seal = seal_path(d)
        try:
            sealed = read_json(seal)
        except (OSError, ValueError):
            log.warning("checkpoint %s has no valid seal (cut off while saving?); it is skipped as a resume point", d)
            continue
        if sealed != fingerprint(d):
            log.warning("checkpoint %s differs from its seal (damaged on disk); it is skipped as a resume point", d)
            continue
        out.append((int(m.group(1)), d))
    return sorted(out)


def partial_checkpoints(checkpoint_dir: Path, good: list[tuple[int, Path]]) -> list[Path]:
    good_paths = {p for _, p in good}
    return (
        [d for d in checkpoint_dir.iterdir() if _CHECKPOINT_RE.match(d.name) and d.is_dir() and d not in good_paths]
        if checkpoint_dir.is_dir()
        else []
    )


def truncate_metrics(path: Path, last_step: int) -> None:
    """Keep the records up to `last_step` (what the checkpoint we resume from had seen)."""
    kept = [r for r in read_jsonl(path) if r.get("step", 0) <= last_step]
    with atomic_write(path) as f:
        for r in kept:
            f.write(json.dumps(r) + "\n")


class TrainableRowsSaver(TrainerCallback):
    """LoRA: save the trainable embedding/head matrices into each checkpoint (peft saves only the adapter)."""

    def __init__(self, matrices: list[torch.nn.Parameter]):
        self.matrices = matrices

    def on_save(self, args, state, control, **kwargs):
        if not args.should_save:
            return
        from safetensors.torch import save

        d = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        tensors = {f"m{i}": p.detach().cpu().contiguous() for i, p in enumerate(self.matrices)}
        with atomic_write(d / ROWS_FILE, "wb") as f:
            f.write(save(tensors))

    @staticmethod
    def load(checkpoint: Path, matrices: list[torch.nn.Parameter]) -> None:
        from safetensors.torch import load_file

        saved = load_file(str(checkpoint / ROWS_FILE))
        with torch.no_grad():
            for i, p in enumerate(matrices):
                t = saved.get(f"m{i}")
                if t is None or t.shape != p.shape:
                    raise StageError(
                        f"{checkpoint / ROWS_FILE}: matrix m{i} missing or of another shape than "
                        f"{tuple(p.shape)}; delete {checkpoint.parent} to start the stage over"
                    )
                p.copy_(t.to(p.dtype))


class CheckpointSeal(TrainerCallback):
    """Write `checkpoint-N.seal.json` (the directory's fingerprint) once checkpoint-N is complete.

    Must be the last callback: Trainer calls on_save after writing the checkpoint, and the LoRA row
    saver adds its file in its own on_save.
    """

    def on_save(self, args, state, control, **kwargs):
        if not args.should_save:
            return
        d = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if d.is_dir():
            write_json(seal_path(d), fingerprint(d))


def check_resume(checkpoint_dir: Path, record: dict[str, Any], has_checkpoint: bool) -> dict[str, Any]:
    """Refuse checkpoints made with other settings; returns the saved state (or a new one)."""
    state_file = checkpoint_dir / STATE_FILE
    if has_checkpoint and state_file.exists():
        saved = read_json(state_file)
        old = saved.get("settings", {})
        diff = sorted(k for k in set(old) | set(record) if old.get(k) != record.get(k))
        if diff and set(diff) <= _INPUT_KEYS:
            # Same settings, new inputs (the pipeline reran transplant/tokenize): the checkpoints are
            # obsolete rather than conflicting, so the stage starts over.
            log.warning(
                "%s: checkpoints were made from another %s; discarding them and starting over",
                checkpoint_dir,
                " and ".join(diff),
            )
            for d in checkpoint_dir.iterdir():
                if _CHECKPOINT_RE.match(d.name):
                    shutil.rmtree(d, ignore_errors=True)
            return {"settings": record, "discarded_checkpoints": True}
        if diff:
            raise StageError(
                f"{checkpoint_dir} holds checkpoints of a different configuration (differing: {', '.join(diff)}); "
                f"restore those settings to resume, or delete {checkpoint_dir} to start this stage over"
            )
        return saved
    if has_checkpoint and not state_file.exists():
        raise StageError(
            f"{checkpoint_dir} holds checkpoints without {STATE_FILE}, so their settings are unknown; "
            f"delete {checkpoint_dir} to start this stage over"
        )
    return {"settings": record}


def copy_model(model_dir: Path, output_dir: Path) -> None:
    with atomic_dir(output_dir) as tmp:
        for f in model_dir.iterdir():
            if f.is_file():
                shutil.copy2(f, tmp / f.name)
