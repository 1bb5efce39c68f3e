"""The two training stages: one function (`train_stage`), two stage settings.

Stage 1 trains the input embeddings and the output head only (the rows transplant rebuilt have to
fit the frozen body first); stage 2 trains the whole model, or LoRA adapters plus the embeddings and
head, merged back at the end so `model/stage2/` is a plain Hugging Face directory.

HF `Trainer` runs the loop, accumulation, schedule, clipping, checkpoints and DDP (torchrun /
accelerate launch; DeepSpeed/FSDP configs pass through `accelerate launch --config_file` untouched).
vocabadapt customises it only through arguments, the data (vocabadapt.data: packed sequences, one
seeded order shared by every process and resume, read sequentially) and callbacks:

- `StageMonitor` writes `train/<stage>/metrics.jsonl`: loss, lr, grad norm, tokens/s per logging
  step; held-out bits per byte every `eval_steps`; loss spikes (loss > spike_factor x the mean of the
  previous steps); a NaN/Inf loss stops the stage before its weights are checkpointed, and the stage
  raises StageError naming the last good checkpoint; stage-1 embedding health.
- `_TrainableRowsSaver` (LoRA only): peft checkpoints hold only the adapter, so the trainable
  embedding and head matrices are saved next to it and restored on resume.

Library entry (tests, benchmarks, other drivers):

    train_stage(settings, cfg, model_dir, train_shards, output_dir, metrics_dir, checkpoint_dir,
                heldout_texts=None, models=None, row_groups=None, callbacks=()) -> summary dict

`run_stage1(ctx)` / `run_stage2(ctx)` are the pipeline's thin wrappers.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import logging
import math
import os
import re
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import numpy as np
import torch

from .config import ModelsConfig, VocabAdaptationConfig
from .data import PackedDataset, PackedSequences, SequenceOrder, collate, heldout_windows
from .errors import InputError, StageError
from .io import atomic_dir, atomic_write, fingerprint, read_json, write_json

log = logging.getLogger(__name__)

STATE_FILE = "vocabadapt_train.json"  # checkpoints/<stage>/: the settings the checkpoints were made with
ROWS_FILE = "vocabadapt_trainable_rows.safetensors"  # LoRA checkpoints: embeddings + head
_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
_INPUT_KEYS = {"input_model", "train_data"}  # settings keys that name inputs, not configuration
SPIKE_WINDOW = 50  # steps in the running mean a loss is compared with
SPIKE_MIN_HISTORY = 5  # no spike verdicts before this many steps


# --------------------------------------------------------------------------------------------------
# stage settings


@dataclass(frozen=True)
class StageSettings:
    """What differs between the two stages; everything else comes from VocabAdaptationConfig."""

    name: str  # "stage1" | "stage2": names the metrics and checkpoint folders
    steps: int  # optimiser steps; 0 = skip (output = a copy of the input)
    learning_rate: float
    optimizer: str  # transformers optimiser name
    trainable: Literal["embeddings", "all", "lora"]
    start_position: int = 0  # first position of the data order this stage reads


def stage_settings(cfg: VocabAdaptationConfig, name: str, start_position: int = 0) -> StageSettings:
    """The settings of stage `name` ("stage1" or "stage2") from the config."""
    if name == "stage1":
        return StageSettings(name, cfg.stage1_steps, cfg.lr_stage1, cfg.stage1_optimizer, "embeddings", start_position)
    if name == "stage2":
        mode = "lora" if cfg.stage2_use_lora else "all"
        return StageSettings(name, cfg.stage2_steps, cfg.lr_stage2, cfg.stage2_optimizer, mode, start_position)
    raise ValueError(f"unknown stage {name!r}")


# --------------------------------------------------------------------------------------------------
# small helpers


def _world() -> tuple[int, int]:
    """(rank, world size) as torchrun / accelerate set them; (0, 1) for a plain process."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def _is_main() -> bool:
    return _world()[0] == 0


def _resolve_bf16(requested: bool) -> bool:
    if not requested:
        return False
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return True
    log.warning("vocab_adaptation.bf16 is on but this device has no bf16 support (CPU or old GPU): training in fp32")
    return False


def _attn_implementation(use_flash_attn: bool) -> str:
    if not use_flash_attn:
        return "sdpa"
    if importlib.util.find_spec("flash_attn") is None:
        raise StageError(
            "vocab_adaptation.use_flash_attn is true but the flash-attn package is not installed; install it "
            "(pip install flash-attn, needs CUDA) or set use_flash_attn: false to use PyTorch SDPA attention"
        )
    return "flash_attention_2"


def trainable_matrices(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The input embedding and output head weights, by identity (one entry when they are tied)."""
    found: list[torch.nn.Parameter] = []
    inp = model.get_input_embeddings()
    out = model.get_output_embeddings()
    for module in (inp, out):
        if module is None:
            continue
        w = module.weight
        if not any(w is f for f in found):
            found.append(w)
    if not found:
        raise StageError(f"{type(model).__name__} exposes no input/output embeddings; cannot run stage 1")
    return found


def linear_module_names(model: torch.nn.Module) -> list[str]:
    """Leaf names of every linear projection except the output head (LoRA's default targets)."""
    from transformers.pytorch_utils import Conv1D  # GPT-2's linear layers

    head = model.get_output_embeddings()
    names = set()
    for name, module in model.named_modules():
        if module is head or not name:
            continue
        if isinstance(module, (torch.nn.Linear, Conv1D)):
            names.add(name.rsplit(".", 1)[-1])
    return sorted(names)


def _state_fingerprint(path: Path) -> dict[str, Any]:
    """A cheap identity of an input directory: config/meta hashes plus names, sizes, mtimes of the rest."""
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        st = f.stat()
        h.update(f"{f.relative_to(path)}\0{st.st_size}\0".encode())
        if f.suffix == ".json" and st.st_size < 1_000_000:
            h.update(f.read_bytes())
        else:
            h.update(str(st.st_mtime_ns).encode())
    return {"path": str(path), "digest": h.hexdigest()[:16]}


def _seal_path(checkpoint: Path) -> Path:
    return checkpoint.with_name(checkpoint.name + ".seal.json")


def valid_checkpoints(checkpoint_dir: Path, need_rows: bool) -> list[tuple[int, Path]]:
    """Finished, intact checkpoints, oldest first.

    A checkpoint counts only when its seal (`checkpoint-N.seal.json`, written by _CheckpointSeal after
    everything else of it) exists and still matches the directory's sha256 fingerprint: one cut off
    mid-write has no seal, and one damaged on disk afterwards no longer matches, so training never
    resumes from garbage (it falls back to an older checkpoint or starts the stage over).
    """
    out = []
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
        seal = _seal_path(d)
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


def _partial_checkpoints(checkpoint_dir: Path, good: list[tuple[int, Path]]) -> list[Path]:
    good_paths = {p for _, p in good}
    return [d for d in checkpoint_dir.iterdir() if _CHECKPOINT_RE.match(d.name) and d.is_dir() and d not in good_paths] \
        if checkpoint_dir.is_dir() else []


def _read_metrics(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line:
            with contextlib.suppress(json.JSONDecodeError):  # a line cut off by a kill
                out.append(json.loads(line))
    return out


def _truncate_metrics(path: Path, last_step: int) -> None:
    """Keep the records up to `last_step` (what the checkpoint we resume from had seen)."""
    kept = [r for r in _read_metrics(path) if r.get("step", 0) <= last_step]
    with atomic_write(path) as f:
        for r in kept:
            f.write(json.dumps(r) + "\n")


# --------------------------------------------------------------------------------------------------
# held-out bits per byte


@torch.no_grad()
def heldout_bpb(model: torch.nn.Module, windows: list[torch.Tensor], n_bytes: int, batch_size: int,
                bf16: bool = False) -> float:
    """Bits per byte: summed NLL (nats) of every predicted token / ln 2 / UTF-8 bytes of the text.

    Args:
        windows: from vocabadapt.data.heldout_windows (each token after the first predicted once).
        n_bytes: UTF-8 bytes of the documents in the windows.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total = 0.0
    by_len: dict[int, list[torch.Tensor]] = {}
    for w in windows:
        by_len.setdefault(w.numel(), []).append(w)
    amp = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    try:
        for group in by_len.values():
            for i in range(0, len(group), batch_size):
                ids = torch.stack(group[i : i + batch_size]).to(device)  # (b, len)
                with amp:
                    logits = model(input_ids=ids).logits  # (b, len, vocab)
                nll = torch.nn.functional.cross_entropy(
                    logits[:, :-1].float().reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1), reduction="sum"
                )
                total += float(nll)
    finally:
        model.train(was_training)
    return total / math.log(2) / max(n_bytes, 1)


def prepare_heldout(texts: Sequence[str], tokenizer: Any, seq_len: int, max_bytes: int) -> tuple[list[torch.Tensor], int]:
    """Whole documents up to `max_bytes` (at least one), tokenized and cut into scoring windows.

    Returns (windows, bytes of the documents used).
    Raises:
        InputError: no held-out text, or too little for one sequence.
    """
    docs, n_bytes = [], 0
    for t in texts:
        b = len(t.encode("utf-8"))
        if docs and n_bytes + b > max_bytes:
            break
        docs.append(t)
        n_bytes += b
    if not docs or n_bytes == 0:
        raise InputError("the held-out sample is empty; the corpus stage must hold out some documents")
    ids = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in docs]
    return heldout_windows(ids, seq_len, tokenizer.eos_token_id), n_bytes


# --------------------------------------------------------------------------------------------------
# callbacks

from transformers import TrainerCallback  # noqa: E402  (kept next to the callbacks that use it)


class StageMonitor(TrainerCallback):
    """Per-step loss watch, metrics.jsonl, held-out bpb, spikes, NaN stop, stage-1 embedding health.

    Losses reach it through a forward hook on the model (`hook`), kept as tensors and read (one device
    sync) only at logging/saving steps, so watching costs next to nothing per step.
    """

    def __init__(self, metrics_path: Path, tokens_per_step: int, spike_factor: float, eval_steps: int,
                 eval_fn: Callable[[torch.nn.Module], float] | None, health: "EmbeddingHealth | None",
                 state: dict[str, Any], state_path: Path, progress: Any = None):
        self.metrics_path = metrics_path
        self.state, self.state_path = state, state_path
        self.tokens_per_step = tokens_per_step
        self.spike_factor = spike_factor
        self.eval_steps = eval_steps
        self.eval_fn = eval_fn
        self.health = health
        self.progress = progress
        self.main = _is_main()
        self._micro: list[torch.Tensor] = []  # micro-batch losses of the current step
        self._pending: list[tuple[int, torch.Tensor]] = []  # (step, mean loss) not yet read
        self._history: list[float] = []  # recent finite step losses (spike reference)
        self._last_log_time: float | None = None
        self._last_log_step = 0
        self.nonfinite_step: int | None = None
        self.last_saved_step: int | None = None

    # -- plumbing
    def hook(self, module: torch.nn.Module, args: Any, output: Any) -> None:
        loss = getattr(output, "loss", None)
        if module.training and loss is not None:
            self._micro.append(loss.detach())

    def _write(self, record: dict[str, Any]) -> None:
        if not self.main:
            return
        self.metrics_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.metrics_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def _flush(self, control: Any) -> None:
        """Read pending losses: spikes, and a NaN/Inf stops training before anything is saved."""
        if not self._pending:
            return
        losses = torch.stack([t for _, t in self._pending]).float().cpu()
        bad = bool((~torch.isfinite(losses)).any())
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            # Every rank must stop at the same step, or the others would wait forever in all-reduce.
            flag = torch.tensor([int(bad)], device=self._pending[-1][1].device)  # NCCL needs a device tensor
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
            bad = bool(flag.item())
        for (step, _), value in zip(self._pending, losses.tolist()):
            if not math.isfinite(value):
                self._mark_nonfinite(step, value)
                break
            if len(self._history) >= SPIKE_MIN_HISTORY:
                mean = sum(self._history) / len(self._history)
                if value > self.spike_factor * mean:
                    log.warning("loss spike at step %d: %.4f > %.1f x running mean %.4f", step, value,
                                self.spike_factor, mean)
                    self._write({"type": "spike", "step": step, "loss": value, "running_mean": mean})
            self._history = (self._history + [value])[-SPIKE_WINDOW:]
        if bad:
            self._mark_nonfinite(self._pending[-1][0], float("nan"))  # no-op when this rank saw it first
        self._pending.clear()
        if bad:
            control.should_save = False
            control.should_training_stop = True
            control.should_log = False

    def _mark_nonfinite(self, step: int, value: float) -> None:
        if self.nonfinite_step is None:
            self.nonfinite_step = step
            log.error("non-finite loss (%s) at step %d: stopping before anything is saved", value, step)
            self._write({"type": "nonfinite", "step": step, "loss": str(value)})

    # -- events
    def on_train_begin(self, args, state, control, model=None, **kwargs):
        # Scored here, not earlier: Trainer has moved the model to its device by now.
        if self.main and self.eval_fn is not None and "heldout_bpb_before" not in self.state:
            self.state["heldout_bpb_before"] = self.eval_fn(model)
            log.info("held-out %.4f bits per byte before training", self.state["heldout_bpb_before"])
            write_json(self.state_path, self.state)
        self._last_log_time = time.perf_counter()
        self._last_log_step = state.global_step
        if self.progress is not None:
            self.progress.reset(total=state.max_steps)
            self.progress.update(state.global_step)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if self._micro:
            self._pending.append((state.global_step, torch.stack(self._micro).mean()))
            self._micro.clear()
        if control.should_save or control.should_log or control.should_training_stop or len(self._pending) >= 64:
            self._flush(control)
        if self.nonfinite_step is not None:
            return control
        if self.progress is not None:
            self.progress.update(1)
        if self.main and self.eval_fn is not None and state.global_step % self.eval_steps == 0:
            bpb = self.eval_fn(model)
            log.info("step %d: held-out %.4f bits per byte", state.global_step, bpb)
            self._write({"type": "eval", "step": state.global_step, "heldout_bpb": bpb})
        if self.main and self.health is not None and control.should_log:
            self._write({"type": "health", "step": state.global_step, **self.health.measure(state.global_step)})
        return control

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        if "loss" not in logs or self.nonfinite_step is not None:
            return
        now = time.perf_counter()
        steps = state.global_step - self._last_log_step
        rate = steps * self.tokens_per_step / (now - self._last_log_time) if steps and self._last_log_time else None
        self._last_log_time, self._last_log_step = now, state.global_step
        rec = {"type": "train", "step": state.global_step, "loss": logs.get("loss"),
               "learning_rate": logs.get("learning_rate"), "grad_norm": logs.get("grad_norm"),
               "tokens_per_s": rate, "epoch": logs.get("epoch")}
        self._write(rec)
        if self.progress is not None:
            self.progress.set_postfix(loss=f"{logs['loss']:.4f}", refresh=False)

    def on_save(self, args, state, control, **kwargs):
        self.last_saved_step = state.global_step


class _TrainableRowsSaver(TrainerCallback):
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
                    raise StageError(f"{checkpoint / ROWS_FILE}: matrix m{i} missing or of another shape than "
                                     f"{tuple(p.shape)}; delete {checkpoint.parent} to start the stage over")
                p.copy_(t.to(p.dtype))


class _CheckpointSeal(TrainerCallback):
    """Write `checkpoint-N.seal.json` (the directory's fingerprint) once checkpoint-N is complete.

    Must be the last callback: Trainer calls on_save after writing the checkpoint, and the LoRA row
    saver adds its file in its own on_save.
    """

    def on_save(self, args, state, control, **kwargs):
        if not args.should_save:
            return
        d = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if d.is_dir():
            write_json(_seal_path(d), fingerprint(d))


class EmbeddingHealth:
    """Stage 1: mean row norms of built vs copied rows and the relative update per step.

    row_groups: {"built": ids, "copied": ids} (from the mapping); without it one group "all".
    """

    def __init__(self, matrices: list[torch.nn.Parameter], names: list[str], row_groups: dict[str, np.ndarray] | None):
        self.matrices = matrices
        self.names = names
        self.groups = {k: torch.as_tensor(np.asarray(v, dtype=np.int64)) for k, v in (row_groups or {}).items()}
        self._prev = [p.detach().clone() for p in matrices]
        self._prev_step = 0

    @torch.no_grad()
    def measure(self, step: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        steps = max(step - self._prev_step, 1)
        for name, p, prev in zip(self.names, self.matrices, self._prev):
            w = p.detach()
            out[f"{name}_rel_update_per_step"] = float((w - prev).norm() / prev.norm().clamp_min(1e-12)) / steps
            norms = w.float().norm(dim=1)  # (rows,)
            if self.groups:
                for g, ids in self.groups.items():
                    ids = ids[ids < norms.numel()]
                    if ids.numel():
                        out[f"{name}_{g}_mean_norm"] = float(norms[ids.to(norms.device)].mean())
            else:
                out[f"{name}_all_mean_norm"] = float(norms.mean())
            prev.copy_(w)
        self._prev_step = step
        return out

    @staticmethod
    def verdict(records: list[dict[str, Any]], names: list[str]) -> dict[str, Any]:
        """Whether the embeddings settle: the relative update over the last quarter of logs is at most
        half its peak, and built rows end no larger than 1.5 x the copied rows' mean norm."""
        if len(records) < 4:
            return {"settled": None, "reason": "fewer than 4 health records (raise steps or lower logging_steps)"}
        out: dict[str, Any] = {}
        ok = True
        for name in names:
            upd = [r[f"{name}_rel_update_per_step"] for r in records if f"{name}_rel_update_per_step" in r]
            tail = upd[-max(1, len(upd) // 4):]
            update_settled = (sum(tail) / len(tail)) <= 0.5 * max(upd) if upd and max(upd) > 0 else True
            out[f"{name}_update_settled"] = update_settled
            ok &= update_settled
            last = records[-1]
            b, c = last.get(f"{name}_built_mean_norm"), last.get(f"{name}_copied_mean_norm")
            if b is not None and c:
                ratio = b / c
                out[f"{name}_built_to_copied_norm"] = ratio
                out[f"{name}_norm_overshoot"] = ratio > 1.5
                ok &= ratio <= 1.5
        out["settled"] = bool(ok)
        return out


# --------------------------------------------------------------------------------------------------
# the one training function


def _settings_record(settings: StageSettings, cfg: VocabAdaptationConfig, world_size: int, bf16: bool,
                     model_dir: Path, train_shards: Path) -> dict[str, Any]:
    """Everything that changes what the checkpoints contain; a resume must match it exactly."""
    rec: dict[str, Any] = {f"stage.{k}": v for k, v in asdict(settings).items()}
    for k in ("batch_size", "gradient_accumulation", "max_seq_length", "seed", "shuffle", "warmup_ratio",
              "lr_scheduler", "weight_decay", "max_grad_norm", "gradient_checkpointing", "use_flash_attn"):
        rec[f"vocab_adaptation.{k}"] = getattr(cfg, k)
    if settings.trainable == "lora":
        for k in ("lora_r", "lora_alpha", "lora_dropout", "lora_target_modules"):
            rec[f"vocab_adaptation.{k}"] = getattr(cfg, k)
    rec["bf16_in_use"] = bf16
    rec["world_size"] = world_size
    rec["input_model"] = _state_fingerprint(model_dir)["digest"]
    rec["train_data"] = json.loads((train_shards / "meta.json").read_text())
    return rec


def _check_resume(checkpoint_dir: Path, record: dict[str, Any], has_checkpoint: bool) -> dict[str, Any]:
    """Refuse checkpoints made with other settings; returns the saved state (or a new one)."""
    state_file = checkpoint_dir / STATE_FILE
    if has_checkpoint and state_file.exists():
        saved = read_json(state_file)
        old = saved.get("settings", {})
        diff = sorted(k for k in set(old) | set(record) if old.get(k) != record.get(k))
        if diff and set(diff) <= _INPUT_KEYS:
            # Same settings, new inputs (the pipeline reran transplant/tokenize): the checkpoints are
            # obsolete rather than conflicting, so the stage starts over.
            log.warning("%s: checkpoints were made from another %s; discarding them and starting over",
                        checkpoint_dir, " and ".join(diff))
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
        raise StageError(f"{checkpoint_dir} holds checkpoints without {STATE_FILE}, so their settings are unknown; "
                         f"delete {checkpoint_dir} to start this stage over")
    return {"settings": record}


def _copy_model(model_dir: Path, output_dir: Path) -> None:
    with atomic_dir(output_dir) as tmp:
        for f in model_dir.iterdir():
            if f.is_file():
                shutil.copy2(f, tmp / f.name)


def train_stage(
    settings: StageSettings,
    cfg: VocabAdaptationConfig,
    model_dir: str | Path,
    train_shards: str | Path,
    output_dir: str | Path,
    metrics_dir: str | Path,
    checkpoint_dir: str | Path,
    heldout_texts: Sequence[str] | None = None,
    models: ModelsConfig | None = None,
    row_groups: dict[str, np.ndarray] | None = None,
    callbacks: Sequence[Any] = (),
    progress: Any = None,
) -> dict[str, Any]:
    """Train one stage and write the model to `output_dir` (plain HF directory + tokenizer).

    Args:
        settings: the stage (see stage_settings).
        cfg: the vocab_adaptation section.
        model_dir: input HF model directory with its tokenizer (model/init or model/stage1).
        train_shards: target-tokenizer id shards (tokens/target/train).
        output_dir: where the trained model goes (replaced atomically).
        metrics_dir: gets metrics.jsonl.
        checkpoint_dir: HF Trainer checkpoints; resumed from when present.
        heldout_texts: held-out documents for bits per byte (None: no held-out scoring).
        models: the models section (safe loading rules); default ModelsConfig().
        row_groups: stage 1 health: {"built": target ids, "copied": target ids}.
        callbacks: extra TrainerCallbacks (tests use them to interrupt a run).
        progress: a tqdm-like bar (reset/update/set_postfix); None = no bar.
    Returns:
        The stage summary (steps, tokens, sequence ranges, losses, spikes, bpb before/after, ...).
    Raises:
        StageError: NaN/Inf loss, batch out of memory, resume refused, flash-attn missing.
        InputError: bad model, data or held-out sample; LoRA targets missing from the model.
    """
    from transformers import Trainer, TrainingArguments
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    from .hf import load_model, load_tokenizer

    models = models or ModelsConfig()
    model_dir, train_shards = Path(model_dir), Path(train_shards)
    output_dir, metrics_dir, checkpoint_dir = Path(output_dir), Path(metrics_dir), Path(checkpoint_dir)
    rank, world_size = _world()
    main = rank == 0
    t0 = time.perf_counter()
    per_step = cfg.batch_size * cfg.gradient_accumulation * world_size  # sequences per optimiser step

    if settings.steps == 0:
        log.info("%s: 0 steps configured, stage skipped; %s is a copy of %s", settings.name, output_dir, model_dir)
        if main:
            _copy_model(model_dir, output_dir)
        return {"skipped": True, "steps": 0, "tokens": 0, "mode": settings.trainable,
                "sequences": {"start": settings.start_position, "stop": settings.start_position, "ranges": []}}

    # ---- validate everything before loading weights
    bf16 = _resolve_bf16(cfg.bf16)
    attn = _attn_implementation(cfg.use_flash_attn)
    if not (model_dir / "config.json").is_file():
        raise InputError(f"{model_dir} is not a model directory (no config.json); run the previous stage first")
    tokenizer = load_tokenizer(str(model_dir), models)
    packed = PackedSequences(_reader(train_shards), cfg.max_seq_length, tokenizer.eos_token_id)
    order = SequenceOrder(len(packed), cfg.seed, cfg.shuffle)
    count = settings.steps * per_step
    windows, heldout_bytes = (None, 0)
    if heldout_texts is not None:
        windows, heldout_bytes = prepare_heldout(heldout_texts, tokenizer, cfg.max_seq_length, cfg.eval_max_bytes)

    # ---- checkpoints: refuse other settings, drop cut-off ones, find where to resume
    record = _settings_record(settings, cfg, world_size, bf16, model_dir, train_shards)
    good = valid_checkpoints(checkpoint_dir, need_rows=settings.trainable == "lora")
    state = _check_resume(checkpoint_dir, record, bool(good))
    if state.pop("discarded_checkpoints", False):
        good = []
    resume_from = good[-1][1] if good else None
    metrics_path = metrics_dir / "metrics.jsonl"
    if main:
        for d in _partial_checkpoints(checkpoint_dir, good):
            log.warning("ignoring the partially written checkpoint %s (removed)", d)
            shutil.rmtree(d, ignore_errors=True)
        if resume_from is None:
            metrics_path.unlink(missing_ok=True)
        else:
            _truncate_metrics(metrics_path, good[-1][0])

    model = load_model(str(model_dir), models, dtype=torch.float32, attn_implementation=attn)
    max_pos = getattr(model.config, "max_position_embeddings", None) or getattr(model.config, "n_positions", None)
    if max_pos is not None and cfg.max_seq_length > max_pos:
        raise StageError(f"vocab_adaptation.max_seq_length {cfg.max_seq_length} exceeds the model's context "
                         f"({max_pos} positions); lower it")
    save_dtype = _checkpoint_dtype(model_dir)
    matrices = trainable_matrices(model)
    matrix_names = ["embeddings" if i == 0 else "head" for i in range(len(matrices))]
    tied = len(matrices) == 1

    lora_targets: list[str] | None = None
    if settings.trainable == "embeddings":
        for p in model.parameters():
            p.requires_grad_(False)
        for p in matrices:
            p.requires_grad_(True)
    elif settings.trainable == "all":
        for p in model.parameters():
            p.requires_grad_(True)
    else:
        from peft import LoraConfig, get_peft_model

        available = linear_module_names(model)
        lora_targets = list(cfg.lora_target_modules or available)
        missing = [m for m in lora_targets if m not in available]
        if missing:
            raise InputError(
                f"vocab_adaptation.lora_target_modules {missing} are not linear layers of {type(model).__name__}; "
                f"its linear projections are {available} (or set lora_target_modules: null to use all of them)"
            )
        from transformers import set_seed

        set_seed(cfg.seed)  # the adapters' random init must not depend on what ran before in this process
        model = get_peft_model(model, LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                                                 target_modules=lora_targets, bias="none", task_type="CAUSAL_LM"))
        for p in matrices:  # peft froze them; the new rows keep training with the adapters
            p.requires_grad_(True)
    if cfg.gradient_checkpointing and settings.trainable != "all":
        model.enable_input_require_grads()  # checkpointed blocks need an input that requires grad
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    n_total = sum(p.numel() for p in model.parameters())

    if resume_from is not None:
        log.info("%s: resuming from %s", settings.name, resume_from)
        if settings.trainable == "lora":
            _TrainableRowsSaver.load(resume_from, matrices)
        else:
            # Trainer's own resume loads the raw state dict non-strictly, which skips tensors whose saved
            # name differs from the module's (transformers 5 saves GPT-NeoX's lm_head as embed_out);
            # loading through from_pretrained maps the names, and strict=True proves nothing was missed.
            saved = load_model(str(resume_from), models, dtype=torch.float32, attn_implementation=attn)
            model.load_state_dict(saved.state_dict(), strict=True)
            del saved

    eval_fn = None
    if windows is not None:
        def eval_fn(m: torch.nn.Module) -> float:  # noqa: E306
            return heldout_bpb(m, windows, heldout_bytes, cfg.batch_size, bf16)

    if main:
        write_json(checkpoint_dir / STATE_FILE, state)

    # ---- trainer
    tensorboard = importlib.util.find_spec("tensorboard") is not None
    args = TrainingArguments(
        output_dir=str(checkpoint_dir),
        max_steps=settings.steps,
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation,
        learning_rate=settings.learning_rate,
        optim=settings.optimizer,
        lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=cfg.warmup_ratio,  # a float in [0, 1) is a ratio of max_steps
        weight_decay=cfg.weight_decay,
        max_grad_norm=cfg.max_grad_norm,
        seed=cfg.seed,
        bf16=bf16,
        activation_checkpointing=cfg.gradient_checkpointing,
        logging_strategy="steps",
        logging_steps=cfg.logging_steps,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit,
        eval_strategy="no",
        report_to=["tensorboard"] if tensorboard else "none",
        train_sampling_strategy="sequential",  # the order is PackedDataset's, identical on every resume
        remove_unused_columns=False,
        dataloader_num_workers=0,
        dataloader_pin_memory=torch.cuda.is_available(),
        # CPU DDP: accelerate only sets up a gloo process group when told the run is on CPU
        use_cpu=world_size > 1 and not torch.cuda.is_available(),
        ddp_backend="gloo" if world_size > 1 and not torch.cuda.is_available() else None,
        ddp_find_unused_parameters=False,
        disable_tqdm=True,  # our own bar (StageMonitor) replaces Trainer's print-to-stdout one
    )
    if args.world_size != world_size:
        raise StageError(f"the process group has {args.world_size} processes but WORLD_SIZE says {world_size}")
    health = EmbeddingHealth(matrices, matrix_names, row_groups) if settings.trainable == "embeddings" else None
    monitor = StageMonitor(metrics_path, per_step * cfg.max_seq_length, cfg.spike_factor, cfg.eval_steps, eval_fn,
                           health, state, checkpoint_dir / STATE_FILE, progress if main else None)
    dataset = PackedDataset(packed, order, settings.start_position, count)
    trainer = Trainer(model=model, args=args, train_dataset=dataset, data_collator=collate,
                      callbacks=[monitor, *([_TrainableRowsSaver(matrices)] if settings.trainable == "lora" else []),
                                 *callbacks, _CheckpointSeal()])
    for cb in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(cb)
    # Every micro-batch has exactly batch x (seq_len - 1) targets (no padding), so the per-micro-batch mean
    # loss the model returns is already correctly weighted; this also makes outputs.loss that mean.
    trainer.model_accepts_loss_kwargs = False
    hook = model.register_forward_hook(monitor.hook)
    try:
        trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    except torch.OutOfMemoryError as e:
        raise StageError(
            f"{settings.name}: a micro-batch of {cfg.batch_size} x {cfg.max_seq_length} tokens does not fit in device "
            f"memory; lower vocab_adaptation.batch_size and raise gradient_accumulation to keep the same "
            f"batch_size x gradient_accumulation ({cfg.batch_size * cfg.gradient_accumulation}), or turn on "
            f"gradient_checkpointing ({str(e).splitlines()[0][:120]})"
        ) from None
    finally:
        hook.remove()
    if monitor.nonfinite_step is not None:
        good = valid_checkpoints(checkpoint_dir, need_rows=settings.trainable == "lora")
        kept = str(good[-1][1]) if good else "none (no checkpoint was written before it)"
        raise StageError(
            f"{settings.name}: the loss became NaN/Inf at step {monitor.nonfinite_step}; training stopped and the last "
            f"good checkpoint is kept: {kept}. Lower lr_stage{settings.name[-1]}, keep max_grad_norm > 0, or check the "
            f"input model for NaN rows; rerunning resumes from that checkpoint"
        )

    # ---- finish: merge, score, write
    final = model.merge_and_unload() if settings.trainable == "lora" else model
    summary: dict[str, Any] = {}
    if main:
        bpb_after = eval_fn(final) if eval_fn is not None else None
        final.to(save_dtype)
        with atomic_dir(output_dir) as tmp:
            final.save_pretrained(str(tmp), safe_serialization=True)
            tokenizer.save_pretrained(str(tmp))
        records = _read_metrics(metrics_path)
        train_recs = [r for r in records if r.get("type") == "train"]
        rates = [r["tokens_per_s"] for r in train_recs if r.get("tokens_per_s")]
        summary = {
            "skipped": False,
            "mode": settings.trainable,
            "steps": settings.steps,
            "world_size": world_size,
            "sequences_per_step": per_step,
            "tokens": count * cfg.max_seq_length,
            "sequences": {"start": settings.start_position, "stop": settings.start_position + count,
                          "ranges": order.ranges(settings.start_position, settings.start_position + count)},
            "data": packed.stats(),
            "precision": "bf16" if bf16 else "fp32",
            "attention": attn,
            "tied_embeddings": tied,
            "trainable_parameters": n_trainable,
            "total_parameters": n_total,
            "lora_target_modules": lora_targets,
            "first_loss": train_recs[0]["loss"] if train_recs else None,
            "last_loss": train_recs[-1]["loss"] if train_recs else None,
            "spikes": [{"step": r["step"], "loss": r["loss"], "running_mean": r["running_mean"]}
                       for r in records if r.get("type") == "spike"],
            "heldout_bpb_before": state.get("heldout_bpb_before"),
            "heldout_bpb_after": bpb_after,
            "heldout_bytes": heldout_bytes or None,
            "tokens_per_s_median": float(np.median(rates)) if rates else None,
            "resumed_from": str(resume_from) if resume_from else None,
            "wall_s": round(time.perf_counter() - t0, 3),
        }
        if health is not None:
            summary["embedding_health"] = EmbeddingHealth.verdict(
                [r for r in records if r.get("type") == "health"], matrix_names)
        log.info("%s: %d steps, loss %s -> %s, held-out bpb %s -> %s", settings.name, settings.steps,
                 summary["first_loss"], summary["last_loss"], summary["heldout_bpb_before"], bpb_after)
    return summary


def _reader(path: Path):
    from .shards import ShardReader

    if not path.is_dir():
        raise InputError(f"{path} does not exist; run the tokenize stage first")
    return ShardReader(path)


def _checkpoint_dtype(model_dir: Path) -> torch.dtype:
    """The dtype the input checkpoint was stored in (so the output keeps it); float32 when unknown."""
    with contextlib.suppress(OSError, ValueError):
        cfg = json.loads((model_dir / "config.json").read_text())
        name = cfg.get("dtype") or cfg.get("torch_dtype")
        if isinstance(name, str) and hasattr(torch, name) and isinstance(getattr(torch, name), torch.dtype):
            return getattr(torch, name)
    return torch.float32


# --------------------------------------------------------------------------------------------------
# pipeline wrappers


def _row_groups(ctx: Any) -> dict[str, np.ndarray] | None:
    path = ctx.path("align", "mapping.json")
    if not path.exists():
        return None
    from .mapping import TokenMapping

    methods = np.asarray(TokenMapping.load(path).methods)
    copied = np.isin(methods, ["identical", "special"])
    return {"copied": np.flatnonzero(copied), "built": np.flatnonzero(~copied)}


def _heldout_texts(ctx: Any) -> list[str] | None:
    path = ctx.path("corpus", "heldout.jsonl")
    if not path.exists():
        log.warning("%s not found: held-out bits per byte are not measured during training", path)
        return None
    texts = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                texts.append(json.loads(line)["text"])
    return texts


def _stage1_consumed(ctx: Any) -> int:
    rec = ctx.record("stage1")
    summary = (rec or {}).get("summary")
    if summary is None and ctx.path("train", "summary.json").exists():
        summary = read_json(ctx.path("train", "summary.json")).get("stage1")
    if summary is None:
        raise StageError("stage 2 needs stage 1's record to place its data (train_start_idx_stage2: auto); "
                         "run stage1 first, or set vocab_adaptation.train_start_idx_stage2 to a number")
    return int(summary["sequences"]["stop"])


def _launch_distributed(ctx: Any, name: str) -> dict[str, Any]:
    """Run this training stage in `num_processes` processes (accelerate launch or torchrun).

    The pipeline stays one process; only the training stage fans out. Each worker rebuilds the stage
    context from the run directory (vocabadapt.train_launch) and rank 0 writes the summary back.
    """
    import subprocess
    import sys

    cfg = ctx.config.vocab_adaptation
    result = ctx.path("train", name, "launch_result.json")
    result.unlink(missing_ok=True)
    worker = ["-m", "vocabadapt.train_launch", str(ctx.run_dir), name]
    if cfg.launcher == "torchrun":
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={cfg.num_processes}", *worker]
    else:
        cmd = [sys.executable, "-m", "accelerate.commands.launch", f"--num_processes={cfg.num_processes}"]
        if cfg.accelerate_config:
            cmd.append(f"--config_file={cfg.accelerate_config}")
        cmd += worker
    log.info("%s: launching %d training processes: %s", name, cfg.num_processes, " ".join(cmd))
    proc = subprocess.run(cmd)
    if proc.returncode != 0:
        raise StageError(f"{name}: the {cfg.launcher} launch exited with code {proc.returncode}; see the log above "
                         f"(rerun the same command to resume from the last checkpoint)")
    if not result.exists():
        raise StageError(f"{name}: the training processes finished without writing {result}")
    return read_json(result)


def _run_pipeline_stage(ctx: Any, name: str) -> dict[str, Any]:
    cfg = ctx.config.vocab_adaptation
    if cfg.num_processes > 1 and _world()[1] == 1:
        return _launch_distributed(ctx, name)
    if name == "stage1":
        src, start = ctx.path("model", "init"), 0
    else:
        src = ctx.path("model", "stage1")
        start = _stage1_consumed(ctx) if cfg.train_start_idx_stage2 == "auto" else int(cfg.train_start_idx_stage2)
    settings = stage_settings(cfg, name, start)
    if not cfg.enabled:
        settings = StageSettings(**{**asdict(settings), "steps": 0})
    heldout = _heldout_texts(ctx) if settings.steps else None
    with contextlib.ExitStack() as stack:
        bar = stack.enter_context(ctx.progress(total=settings.steps, unit="step")) if settings.steps and _is_main() else None
        summary = train_stage(
            settings, cfg, src, ctx.path("tokens", "target", "train"), ctx.path("model", name),
            ctx.path("train", name), ctx.path("checkpoints", name), heldout_texts=heldout, models=ctx.config.models,
            row_groups=_row_groups(ctx) if name == "stage1" else None, progress=bar,
        )
    if _is_main():
        path = ctx.path("train", "summary.json")
        whole = read_json(path) if path.exists() else {}
        whole[name] = summary
        write_json(path, whole)
    return summary


def run_stage1(ctx: Any) -> dict[str, Any]:
    """Pipeline stage: train embeddings + head of model/init into model/stage1."""
    return _run_pipeline_stage(ctx, "stage1")


def run_stage2(ctx: Any) -> dict[str, Any]:
    """Pipeline stage: train the whole model (or LoRA, merged) of model/stage1 into model/stage2."""
    return _run_pipeline_stage(ctx, "stage2")
