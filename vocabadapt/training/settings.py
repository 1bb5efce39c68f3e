"""Training settings: what differs between the two stages, and the ONE list of keys that change the output.

`OUTPUT_KEYS[stage]` are the dotted config keys whose values change what a training stage writes.
The stage specs hash exactly these in the manifest (a change reruns the stage), and the checkpoint
record below holds their values (a resume must match them), so the two can no longer disagree.
(`num_processes` is one: the processes multiply the sequences per step.)
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from ..config import VocabAdaptationConfig
from ..io import read_json

# Keys every training stage's output depends on, then each stage's own (vocab_adaptation.*).
_SHARED = (
    "enabled",
    "batch_size",
    "gradient_accumulation",
    "max_seq_length",
    "seed",
    "shuffle",
    "bf16",
    "use_flash_attn",
    "warmup_ratio",
    "lr_scheduler",
    "weight_decay",
    "max_grad_norm",
    "gradient_checkpointing",
    "eval_max_bytes",
    "num_processes",
)
METRICS_FILE = "metrics.jsonl"  # what train_stage writes into its metrics directory, one record per line
TRAIN_STAGES = ("stage1", "stage2")  # the training stages, in order (model/<name>, train/<name>)
_OWN = {
    "stage1": ("stage1_steps", "lr_stage1", "stage1_optimizer", "objective_stage1", "distill", "train_rows"),
    "stage2": (
        "objective_stage2",
        "distill",
        "train_rows",
        "lr_embeddings",
        "stage1_steps",
        "stage2_steps",
        "lr_stage2",
        "train_start_idx_stage2",
        "stage2_use_lora",
        "stage2_optimizer",
        "lora_r",
        "lora_alpha",
        "lora_dropout",
        "lora_target_modules",
    ),
}
OUTPUT_KEYS: dict[str, tuple[str, ...]] = {
    stage: tuple(f"vocab_adaptation.{k}" for k in (*_SHARED, *own)) for stage, own in _OWN.items()
}
# An enabled embedding_warmup is stage 1 with its own settings (Config.stage_training).
OUTPUT_KEYS["stage1"] += ("embedding_warmup",)


@dataclass(frozen=True)
class StageSettings:
    """What differs between the two stages; everything else comes from VocabAdaptationConfig."""

    name: str  # "stage1" | "stage2": names the metrics and checkpoint folders
    steps: int  # optimiser steps; 0 = skip (output = a copy of the input)
    learning_rate: float
    optimizer: str  # transformers optimiser name
    trainable: Literal["embeddings", "all", "lora"]
    start_position: int = 0  # first position of the data order this stage reads
    objective: Literal["ce", "distill", "distill+ce"] = "ce"  # the loss (vocabadapt.training.distill)
    lr_embeddings: float | None = None  # embeddings and head at their own rate (stage 2); None = learning_rate

    @property
    def distills(self) -> bool:
        return self.objective != "ce"


def stage_settings(cfg: VocabAdaptationConfig, name: str, start_position: int = 0) -> StageSettings:
    """The settings of stage `name` ("stage1" or "stage2") from the config."""
    if name == "stage1":
        return StageSettings(
            name,
            cfg.stage1_steps,
            cfg.lr_stage1,
            cfg.stage1_optimizer,
            "embeddings",
            start_position,
            objective=cfg.objective_stage1,
        )
    if name == "stage2":
        mode: Literal["lora", "all"] = "lora" if cfg.stage2_use_lora else "all"
        return StageSettings(
            name,
            cfg.stage2_steps,
            cfg.lr_stage2,
            cfg.stage2_optimizer,
            mode,
            start_position,
            objective=cfg.objective_stage2,
            lr_embeddings=cfg.lr_embeddings,
        )
    raise ValueError(f"unknown stage {name!r}")


def settings_record(
    settings: StageSettings,
    cfg: VocabAdaptationConfig,
    world_size: int,
    bf16: bool,
    model_dir: Path,
    train_shards: Path,
) -> dict[str, Any]:
    """Everything that changes what the checkpoints contain; a resume must match it exactly.

    The config part is the vocab_adaptation keys of OUTPUT_KEYS[settings.name], the keys the stage's
    manifest record hashes, with the values the stage runs with: `cfg` is Config.stage_training(stage),
    so an enabled embedding_warmup's values (the other key stage 1 hashes) are already in them.
    """
    rec: dict[str, Any] = {f"stage.{k}": v for k, v in asdict(settings).items()}
    for key in OUTPUT_KEYS[settings.name]:
        section, _, name = key.partition(".")
        if section == "vocab_adaptation":
            value = getattr(cfg, name)
            rec[key] = value.model_dump(mode="json") if hasattr(value, "model_dump") else value
    rec["bf16_in_use"] = bf16
    rec["world_size"] = world_size
    rec["input_model"] = state_fingerprint(model_dir)["digest"]
    rec["train_data"] = read_json(train_shards / "meta.json")
    return rec


def state_fingerprint(path: Path) -> dict[str, Any]:
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
