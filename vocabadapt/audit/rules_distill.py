"""Rules about distillation (objective distill / distill+ce): its learning rates and the teacher's memory."""

from __future__ import annotations

from ..config import Config
from .arithmetic import (
    DISTILL_LR_RANGE,
    LR_EMBEDDINGS_MAX_RATIO,
    MEMORY_HEADROOM,
    lr_text,
    stage1_state,
    stage2_state,
    teacher_bytes,
)
from .findings import GIB, VA, Facts, Finding, missing, rule


@rule("distill_lr", order=13)
def check_distill_lr(config: Config, facts: Facts) -> list[Finding]:
    """Learning rates for the objective: distillation of new rows, and stage 2's lr_embeddings against lr_stage2."""
    va = config.stage_training("stage1")
    out: list[Finding] = []
    if va.objective_stage1 != "ce" and va.stage1_steps:
        lr = va.lr_stage1
        lo, hi = DISTILL_LR_RANGE
        ev = {"lr_stage1": lr, "objective_stage1": va.objective_stage1, "range": [lo, hi]}
        if lr > hi:
            out.append(
                Finding(
                    "distill_lr",
                    "error" if lr > 10 * hi else "warning",
                    f"{VA}.lr_stage1",
                    f"lr_stage1 {lr_text(lr)} with objective {va.objective_stage1}: above {lr_text(hi)}, where "
                    "the measured prototype (issue 26) saw Adam's per-coordinate steps make the output rows worse "
                    "under both objectives (a logit change of tenths of a nat per step at hidden size ~576).",
                    f"set lr_stage1 between {lr_text(lo)} and {lr_text(hi)}",
                    ev,
                )
            )
        elif lr < lo:
            out.append(
                Finding(
                    "distill_lr",
                    "info",
                    f"{VA}.lr_stage1",
                    f"lr_stage1 {lr_text(lr)} with objective {va.objective_stage1} is below {lr_text(lo)}: the new "
                    "rows barely move (the prototype's 3e-5 moved held-out bpb by 0.0004 in 30k tokens).",
                    f"consider lr_stage1 ≥ {lr_text(lo)}",
                    ev,
                )
            )
    v2 = config.vocab_adaptation
    if v2.lr_embeddings is not None and v2.stage2_steps and not config.embedding_warmup.enabled:
        ratio = v2.lr_embeddings / v2.lr_stage2
        ev2 = {"lr_embeddings": v2.lr_embeddings, "lr_stage2": v2.lr_stage2, "ratio": ratio}
        if ratio < 1 or ratio > LR_EMBEDDINGS_MAX_RATIO:
            out.append(
                Finding(
                    "distill_lr",
                    "warning",
                    f"{VA}.lr_embeddings",
                    f"lr_embeddings {lr_text(v2.lr_embeddings)} is {ratio:.3g}× lr_stage2 {lr_text(v2.lr_stage2)}: "
                    + (
                        "a differential rate trains the new rows faster than the backbone, not slower"
                        if ratio < 1
                        else f"more than {LR_EMBEDDINGS_MAX_RATIO:g}× the backbone's rate"
                    )
                    + ".",
                    f"set lr_embeddings between lr_stage2 and {LR_EMBEDDINGS_MAX_RATIO:g}× it, or null for one rate",
                    ev2,
                )
            )
    return out


@rule("distill_memory", order=51)
def check_distill_memory(config: Config, facts: Facts) -> list[Finding]:
    """A distillation stage holds the teacher beside the student: does it fit in one GPU?"""
    va = config.vocab_adaptation
    stages = [
        (name, objective)
        for name, objective, steps in (
            ("stage1", config.stage_training("stage1").objective_stage1, config.stage_training("stage1").stage1_steps),
            ("stage2", va.objective_stage2, 0 if config.embedding_warmup.enabled else va.stage2_steps),
        )
        if objective != "ce" and steps
    ]
    if not stages:
        return []
    mc = facts.model_config
    if mc is None:
        return [
            missing(
                "distill_memory",
                f"{VA}.objective_{stages[0][0]}",
                "the teacher's memory beside the student: no model config",
                "pass --model-config <source model>/config.json and --gpu-memory GB",
            )
        ]
    out = []
    for name, objective in stages:
        student = stage1_state(va, mc) if name == "stage1" else int(stage2_state(va, mc)["need"])
        teacher, how = teacher_bytes(va, mc, name)
        need = student + teacher
        ev = {
            "stage": name,
            "student_gib": student / GIB,
            "teacher_gib": teacher / GIB,
            "needed_gib": need / GIB,
            "gpu_memory_gib": facts.gpu_memory_gb,
        }
        msg = (
            f"{name} with objective {objective}: student {student / GIB:.1f} GiB + teacher {teacher / GIB:.1f} GiB "
            f"({how}) = {need / GIB:.1f} GiB before activations"
        )
        key = f"{VA}.objective_{name}"
        gpu = facts.gpu_memory_gb
        if gpu is None:
            out.append(
                Finding("distill_memory", "info", key, msg + ". Not compared with a GPU: no --gpu-memory.", "", ev)
            )
        elif need > gpu * GIB:
            out.append(
                Finding(
                    "distill_memory",
                    "error",
                    key,
                    msg + f"; one GPU has {gpu:g} GiB: the teacher does not fit beside the student.",
                    "use stage2_use_lora: true with bf16 (the frozen base and the teacher in bf16), shard across GPUs "
                    f"(FSDP / ZeRO-3), or set objective_{name}: ce",
                    ev,
                )
            )
        elif need > MEMORY_HEADROOM * gpu * GIB:
            out.append(
                Finding(
                    "distill_memory",
                    "warning",
                    key,
                    msg
                    + f"; that is {need / (gpu * GIB):.0%} of {gpu:g} GiB, little left for two models' activations.",
                    "enable gradient_checkpointing or lower batch_size",
                    ev,
                )
            )
        else:
            out.append(
                Finding(
                    "distill_memory", "info", key, msg + f"; fits in {gpu:g} GiB ({need / (gpu * GIB):.0%}).", "", ev
                )
            )
    return out
