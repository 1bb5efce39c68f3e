"""Rules about the run's setup: precision and attention, batch and step counts, optimiser and scheduler names."""

from __future__ import annotations

import ast
import difflib
import functools
import importlib
import importlib.util
from pathlib import Path

from ..config import Config
from .arithmetic import TINY_BATCH_SEQUENCES, TINY_BATCH_TOKENS, num, sequences_per_step
from .findings import VA, WARMUP, Facts, Finding, rule


@rule("precision", order=110)
def check_precision(config: Config, facts: Facts) -> list[Finding]:
    """bf16 requested where unsupported; flash-attn requested but not installed."""
    va = config.vocab_adaptation
    out: list[Finding] = []
    if va.bf16:
        if not facts.has_gpu:
            out.append(
                Finding(
                    "bf16",
                    "info",
                    f"{VA}.bf16",
                    "bf16 is requested but no GPU is visible here: a run on this machine falls back to "
                    "fp32 (with a notice).",
                    "pass --gpu-memory GB to audit for the GPU machine",
                    {"cuda_available": False},
                )
            )
        elif facts.bf16_supported is False:
            out.append(
                Finding(
                    "bf16",
                    "warning",
                    f"{VA}.bf16",
                    "bf16 is requested but this GPU does not support it (pre-Ampere); training runs "
                    "in fp32, about twice the activation memory.",
                    "run on an Ampere or newer GPU, or set bf16: false knowingly",
                    {"bf16_supported": False},
                )
            )
    elif facts.has_gpu or va.stage2_steps or va.stage1_steps:
        out.append(
            Finding(
                "bf16",
                "info",
                f"{VA}.bf16",
                "bf16 is off: fp32 training on a GPU that has bf16 (A100, H100) is slower and needs "
                "about twice the activation memory.",
                "set bf16: true on Ampere or newer GPUs",
                {"bf16": False},
            )
        )
    if va.use_flash_attn and not facts.flash_attn_installed:
        out.append(
            Finding(
                "flash_attn",
                "warning",
                f"{VA}.use_flash_attn",
                "use_flash_attn is on but the flash_attn package is not installed here; the run "
                "would use SDPA attention instead.",
                "pip install flash-attn on the GPU machine, or set use_flash_attn: false",
                {"flash_attn_installed": False},
            )
        )
    return out


@rule("batch_and_steps", order=120)
def check_batch_and_steps(config: Config, facts: Facts) -> list[Finding]:
    """Tiny effective batch and stages with zero steps."""
    va = config.vocab_adaptation
    out: list[Finding] = []
    if config.embedding_warmup.enabled:
        return _warmup_batch_and_steps(config, facts)
    seqs = sequences_per_step(config, facts)
    tokens = seqs * va.max_seq_length
    if va.enabled and (seqs < TINY_BATCH_SEQUENCES or tokens < TINY_BATCH_TOKENS):
        out.append(
            Finding(
                "tiny_batch",
                "warning",
                f"{VA}.gradient_accumulation",
                f"effective batch is {seqs} sequences = {num(tokens)} tokens per optimiser step "
                f"(< {TINY_BATCH_SEQUENCES} sequences or < {num(TINY_BATCH_TOKENS)} tokens): noisy "
                "gradients.",
                "raise gradient_accumulation",
                {"sequences_per_step": seqs, "tokens_per_step": tokens},
            )
        )
    if va.enabled:
        if va.stage1_steps == 0 and va.stage2_steps == 0:
            out.append(
                Finding(
                    "zero_steps",
                    "warning",
                    f"{VA}.stage1_steps",
                    "both stages have 0 steps but vocab_adaptation is enabled: the transplanted model "
                    "is never trained.",
                    "set stage1_steps/stage2_steps, or enabled: false",
                    {"stage1_steps": 0, "stage2_steps": 0},
                )
            )
        elif va.stage1_steps == 0:
            out.append(
                Finding(
                    "zero_steps",
                    "warning",
                    f"{VA}.stage1_steps",
                    "stage 1 has 0 steps: stage 2 updates the whole model while the new embedding rows "
                    "are still untrained, which disturbs the transformer layers.",
                    "give stage 1 steps (paper: 2,500)",
                    {"stage1_steps": 0},
                )
            )
        elif va.stage2_steps == 0:
            out.append(
                Finding(
                    "zero_steps",
                    "info",
                    f"{VA}.stage2_steps",
                    "stage 2 has 0 steps: only embeddings and head are trained.",
                    "",
                    {"stage2_steps": 0},
                )
            )
    return out


def _warmup_batch_and_steps(config: Config, facts: Facts) -> list[Finding]:
    """The embedding warm-up (stage 1, alone): its effective batch, and 0 steps."""
    w = config.stage_training("stage1")
    seqs = sequences_per_step(config, facts, "stage1")
    tokens = seqs * w.max_seq_length
    out: list[Finding] = []
    if seqs < TINY_BATCH_SEQUENCES or tokens < TINY_BATCH_TOKENS:
        out.append(
            Finding(
                "tiny_batch",
                "warning",
                f"{WARMUP}.gradient_accumulation",
                f"the embedding warm-up's effective batch is {seqs} sequences = {num(tokens)} tokens per "
                f"optimiser step (< {TINY_BATCH_SEQUENCES} sequences or < {num(TINY_BATCH_TOKENS)} "
                "tokens): noisy gradients.",
                "raise embedding_warmup.gradient_accumulation",
                {"sequences_per_step": seqs, "tokens_per_step": tokens},
            )
        )
    if w.stage1_steps == 0:
        out.append(
            Finding(
                "zero_steps",
                "warning",
                f"{WARMUP}.steps",
                "the embedding warm-up is enabled with 0 steps and vocab_adaptation is disabled: the "
                "transplanted model is never trained.",
                "give embedding_warmup.steps",
                {"steps": 0},
            )
        )
    return out


@functools.cache
def _enum_values_cached(module: str, cls: str) -> tuple[str, ...]:
    # Importing transformers.training_args costs ~8 s of CPU (it pulls in torch and the Trainer), so
    # the enum's string members are read from its source with ast; the import is the fallback.
    try:
        spec = importlib.util.find_spec(module)
        tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))  # type: ignore[union-attr, arg-type]
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and node.name == cls:
                values = tuple(
                    s.value.value
                    for s in node.body
                    if isinstance(s, ast.Assign)
                    and isinstance(s.value, ast.Constant)
                    and isinstance(s.value.value, str)
                )
                if values:
                    return values
    except (ImportError, AttributeError, OSError, SyntaxError, TypeError):
        pass
    return tuple(m.value for m in getattr(importlib.import_module(module), cls))


def _enum_values(module: str, cls: str) -> list[str]:
    return list(_enum_values_cached(module, cls))


@rule("names", order=130)
def check_names(config: Config, facts: Facts) -> list[Finding]:
    """Optimiser and scheduler names that transformers does not know (the Trainer would fail at start)."""
    va = config.vocab_adaptation
    out: list[Finding] = []
    optimizers = _enum_values("transformers.training_args", "OptimizerNames")

    for key, name in (("stage1_optimizer", va.stage1_optimizer), ("stage2_optimizer", va.stage2_optimizer)):
        if name not in optimizers:
            near = difflib.get_close_matches(name, optimizers, n=1)
            out.append(
                Finding(
                    "optimizer_name",
                    "error",
                    f"{VA}.{key}",
                    f"{key} '{name}' is not a transformers optimiser name"
                    + (f"; did you mean '{near[0]}'?" if near else "."),
                    f"use one of transformers OptimizerNames, e.g. {near[0] if near else 'adamw_torch'}",
                    {"name": name},
                )
            )
    schedulers = _enum_values("transformers.trainer_utils", "SchedulerType")
    if va.lr_scheduler not in schedulers:
        near = difflib.get_close_matches(va.lr_scheduler, schedulers, n=1)
        out.append(
            Finding(
                "scheduler_name",
                "error",
                f"{VA}.lr_scheduler",
                f"lr_scheduler '{va.lr_scheduler}' is not a transformers scheduler name.",
                f"use one of {', '.join(schedulers)}",
                {"name": va.lr_scheduler},
            )
        )
    return out
