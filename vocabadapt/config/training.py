"""Config sections of the two training stages and the embedding warm-up."""

from __future__ import annotations

from typing import Any, Literal, Optional, Union

from pydantic import Field

from .common import PATH, ModuleNames, Section


class VocabAdaptationConfig(Section):
    enabled: bool = Field(True, description="Run the two training stages.")
    stage1_steps: int = Field(2500, ge=0, description="Optimiser steps of stage 1 (embeddings + head); 0 = skip.")
    stage2_steps: int = Field(2500, ge=0, description="Optimiser steps of stage 2 (whole model or LoRA); 0 = skip.")
    lr_stage1: float = Field(5e-5, gt=0, description="Peak learning rate of stage 1.")
    lr_stage2: float = Field(5e-5, gt=0, description="Peak learning rate of stage 2.")
    batch_size: int = Field(4, ge=1, description="Sequences per device per micro-batch.")
    gradient_accumulation: int = Field(16, ge=1, description="Micro-batches per optimiser step.")
    max_seq_length: int = Field(2048, ge=8, description="Tokens per packed training sequence.")
    train_start_idx_stage2: Union[Literal["auto"], int] = Field(
        "auto",
        description="First sequence of stage 2 in the data order; auto = sequences stage 1 consumed.",
    )
    seed: int = Field(0, description="Seed of data order, initialisation and training.")
    shuffle: bool = Field(True, description="Seeded shuffle of packed sequences each epoch.")
    use_flash_attn: bool = Field(False, description="Use flash-attn 2 (must be installed); otherwise SDPA.")
    bf16: bool = Field(True, description="bf16 mixed precision where supported (fp32 otherwise, with a notice).")
    stage2_use_lora: bool = Field(
        False, description="Stage 2 trains LoRA adapters (+ embeddings/head), merged at the end."
    )
    stage2_optimizer: str = Field("adamw_torch", description="transformers optimiser name for stage 2.")
    stage1_optimizer: str = Field("adamw_torch", description="transformers optimiser name for stage 1.")
    lora_r: int = Field(64, ge=1, description="LoRA rank.")
    lora_alpha: float = Field(128, gt=0, description="LoRA alpha (scale = alpha / r).")
    lora_dropout: float = Field(0.05, ge=0, lt=1, description="LoRA dropout.")
    lora_target_modules: ModuleNames = Field(
        None,
        description='Module names for LoRA: a list or one comma-separated string ("q_proj,v_proj"); '
        'null or "all-linear" = every linear projection except the output head. Checked against the model '
        "by the audit (--model-config) and at the start of stage 2.",
    )
    warmup_ratio: float = Field(0.03, ge=0, lt=1, description="Share of steps with linear warmup.")
    lr_scheduler: str = Field("cosine", description="transformers scheduler name.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    max_grad_norm: float = Field(1.0, ge=0, description="Gradient clipping norm (0 = off).")
    gradient_checkpointing: bool = Field(False, description="Trade compute for activation memory.")
    save_steps: int = Field(500, ge=1, description="Checkpoint every this many steps.")
    save_total_limit: int = Field(2, ge=1, description="Checkpoints kept per stage.")
    logging_steps: int = Field(10, ge=1, description="Log loss, lr, grad norm, tokens/s every this many steps.")
    eval_steps: int = Field(250, ge=1, description="Held-out bits per byte every this many steps.")
    eval_max_bytes: int = Field(200_000, ge=1000, description="Bytes of held-out text scored during training.")
    spike_factor: float = Field(3.0, gt=1, description="A loss above this × its running mean is a spike.")
    num_processes: int = Field(
        1, ge=1, description="Training processes (GPUs); > 1 launches the training stages with the launcher below."
    )
    launcher: Literal["accelerate", "torchrun"] = Field(
        "accelerate", description="How training stages start several processes (accelerate launch / torchrun)."
    )
    accelerate_config: Optional[str] = Field(
        None,
        description="accelerate config file (DDP, FSDP, DeepSpeed) passed to `accelerate launch`.",
        json_schema_extra=PATH,
    )


# The warm-up's keys and the vocab_adaptation keys they stand in for while the warm-up runs as stage 1.
WARMUP_KEYS: dict[str, str] = {
    "steps": "stage1_steps",
    "lr": "lr_stage1",
    "batch_size": "batch_size",
    "gradient_accumulation": "gradient_accumulation",
    "max_seq_length": "max_seq_length",
    "seed": "seed",
    "use_flash_attn": "use_flash_attn",
    "bf16": "bf16",
}


class EmbeddingWarmupConfig(Section):
    """An embedding-and-head-only warm-up, as the research configs write it: stage 1 with its own settings.

    With `enabled: true` the warm-up is what the stage1 stage trains (input embeddings and output head,
    the body frozen; the same training function as stage 1), each key below standing in for its
    vocab_adaptation counterpart (steps -> stage1_steps, lr -> lr_stage1, the others by the same name;
    null = the vocab_adaptation value). Everything else (optimiser, schedule, shuffle, checkpoints,
    processes) comes from vocab_adaptation. It needs `vocab_adaptation.enabled: false`: then the run
    trains the warm-up alone and stage 2 is skipped (model/stage2 is a copy of the warmed-up model).
    With both enabled the config is refused, because the warm-up and stage 1 would train the same rows
    twice under two sets of settings: set one of the two `enabled` keys to false (to warm up and then
    train the whole model, put the warm-up's values in vocab_adaptation's stage-1 keys).
    """

    enabled: bool = Field(False, description="Train embeddings and head alone as stage 1, with the settings below.")
    steps: Optional[int] = Field(None, ge=0, description="Optimiser steps; null = vocab_adaptation.stage1_steps.")
    lr: Optional[float] = Field(None, gt=0, description="Peak learning rate; null = vocab_adaptation.lr_stage1.")
    batch_size: Optional[int] = Field(
        None, ge=1, description="Sequences per device per micro-batch; null = vocab_adaptation's."
    )
    gradient_accumulation: Optional[int] = Field(
        None, ge=1, description="Micro-batches per step; null = vocab_adaptation's."
    )
    max_seq_length: Optional[int] = Field(
        None, ge=8, description="Tokens per packed sequence; null = vocab_adaptation's."
    )
    seed: Optional[int] = Field(None, description="Seed of data order and training; null = vocab_adaptation's.")
    use_flash_attn: Optional[bool] = Field(None, description="Use flash-attn 2; null = vocab_adaptation's.")
    bf16: Optional[bool] = Field(None, description="bf16 mixed precision; null = vocab_adaptation's.")

    def stage1_overrides(self) -> dict[str, Any]:
        """The vocab_adaptation values the warm-up replaces while it runs as stage 1 ({} when disabled)."""
        if not self.enabled:
            return {}
        out: dict[str, Any] = {"enabled": True}
        out.update(
            {va_key: getattr(self, key) for key, va_key in WARMUP_KEYS.items() if getattr(self, key) is not None}
        )
        return out
