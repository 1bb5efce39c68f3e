"""The model a training stage trains: precision and attention, what is frozen, LoRA, resume weights.

Every function here runs before HF Trainer starts; vocabadapt.training.trainer.train_stage calls them in
order (resolve_bf16 and attn_implementation while planning, prepare_model to load, checkpoint_dtype to save
the output in the input's dtype).
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
from pathlib import Path
from typing import Any

import torch

from ..config import ModelsConfig, VocabAdaptationConfig
from ..errors import StageError
from ..io import read_json
from ..model.keys import lora_targets as resolve_lora_targets
from .checkpoints import TrainableRowsSaver
from .settings import StageSettings

log = logging.getLogger(__name__)


def resolve_bf16(requested: bool) -> bool:
    """Whether the stage trains in bf16: the config asks and the device supports it (else a warning, fp32)."""
    if not requested:
        return False
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return True
    log.warning("vocab_adaptation.bf16 is on but this device has no bf16 support (CPU or old GPU): training in fp32")
    return False


def attn_implementation(use_flash_attn: bool) -> str:
    """The transformers attn_implementation: "flash_attention_2" when asked for, else "sdpa".

    Raises:
        StageError: flash-attn asked for but not installed.
    """
    if not use_flash_attn:
        return "sdpa"
    if importlib.util.find_spec("flash_attn") is None:
        raise StageError(
            "vocab_adaptation.use_flash_attn is true but the flash-attn package is not installed; install it "
            "(pip install flash-attn, needs CUDA) or set use_flash_attn: false to use PyTorch SDPA attention"
        )
    return "flash_attention_2"


def trainable_matrices(model: Any) -> list[torch.nn.Parameter]:
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


def set_trainable(
    model: Any, settings: StageSettings, cfg: VocabAdaptationConfig, matrices: list[torch.nn.Parameter]
) -> tuple[Any, list[str] | None]:
    """Freeze what the stage does not train; wrap the model in LoRA adapters for trainable == "lora".

    Returns (the model to train, the LoRA target modules or None).
    Raises:
        InputError: a configured LoRA target is not a linear layer of the model.
    """
    if settings.trainable == "embeddings":
        for p in model.parameters():
            p.requires_grad_(False)
        for p in matrices:
            p.requires_grad_(True)
        return model, None
    if settings.trainable == "all":
        for p in model.parameters():
            p.requires_grad_(True)
        return model, None
    from peft import LoraConfig, get_peft_model
    from transformers import set_seed

    lora_targets = resolve_lora_targets(model, cfg.lora_target_modules)
    set_seed(cfg.seed)  # the adapters' random init must not depend on what ran before in this process
    model = get_peft_model(
        model,
        LoraConfig(
            r=cfg.lora_r,
            lora_alpha=cfg.lora_alpha,  # type: ignore[arg-type]  # peft annotates int, accepts float
            lora_dropout=cfg.lora_dropout,
            target_modules=lora_targets,
            bias="none",
            task_type="CAUSAL_LM",
        ),
    )
    for p in matrices:  # peft froze them; the new rows keep training with the adapters
        p.requires_grad_(True)
    return model, lora_targets


def prepare_model(
    model_dir: Path,
    settings: StageSettings,
    cfg: VocabAdaptationConfig,
    models: ModelsConfig,
    attn: str,
    resume_from: Path | None,
) -> tuple[Any, list[torch.nn.Parameter], list[str] | None]:
    """Load the input model in fp32, freeze what the stage does not train, restore a checkpoint's weights.

    Returns (the model to train, its embedding/head matrices, the LoRA targets or None).
    Raises:
        StageError: max_seq_length beyond the model's context.
    """
    from ..model.hub import load_model

    model = load_model(str(model_dir), models, dtype=torch.float32, attn_implementation=attn)
    max_pos = getattr(model.config, "max_position_embeddings", None) or getattr(model.config, "n_positions", None)
    if max_pos is not None and cfg.max_seq_length > max_pos:
        raise StageError(
            f"vocab_adaptation.max_seq_length {cfg.max_seq_length} exceeds the model's context "
            f"({max_pos} positions); lower it"
        )
    matrices = trainable_matrices(model)
    model, lora_targets = set_trainable(model, settings, cfg, matrices)
    if cfg.gradient_checkpointing and settings.trainable != "all":
        model.enable_input_require_grads()  # checkpointed blocks need an input that requires grad
    if resume_from is not None:
        log.info("%s: resuming from %s", settings.name, resume_from)
        if settings.trainable == "lora":
            TrainableRowsSaver.load(resume_from, matrices)
        else:
            # Trainer's own resume loads the raw state dict non-strictly, which skips tensors whose saved
            # name differs from the module's (transformers 5 saves GPT-NeoX's lm_head as embed_out);
            # loading through from_pretrained maps the names, and strict=True proves nothing was missed.
            saved = load_model(str(resume_from), models, dtype=torch.float32, attn_implementation=attn)
            model.load_state_dict(saved.state_dict(), strict=True)
            del saved
    return model, matrices, lora_targets


def checkpoint_dtype(model_dir: Path) -> torch.dtype:
    """The dtype the input checkpoint was stored in (so the output keeps it); float32 when unknown."""
    with contextlib.suppress(OSError, ValueError):
        cfg = read_json(model_dir / "config.json")
        name = cfg.get("dtype") or cfg.get("torch_dtype")
        if isinstance(name, str) and hasattr(torch, name) and isinstance(getattr(torch, name), torch.dtype):
            return getattr(torch, name)
    return torch.float32
