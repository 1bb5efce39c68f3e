"""Rules about the model: stage-2 memory, LoRA, maximum positions.

LoRA target names are checked against the model itself, built on the meta device from --model-config
(vocabadapt.audit.model_meta) and matched as training matches them (vocabadapt.model.keys.unmatched_targets),
not against a table of names per model family.
"""

from __future__ import annotations

from ..config import ALL_LINEAR, Config
from .arithmetic import (
    LORA_SCALE_RANGE,
    MEMORY_HEADROOM,
    cfg_value,
    num,
    stage2_state,
)
from .findings import GIB, VA, WARMUP, Facts, Finding, missing, rule
from .model_meta import meta_model


@rule("stage2_memory", order=50)
def check_stage2_memory(config: Config, facts: Facts) -> list[Finding]:
    """Stage-2 training state memory (weights, gradients, optimiser) against one GPU."""
    va = config.vocab_adaptation
    key = f"{VA}.stage2_use_lora"
    if va.stage2_steps == 0:
        return []
    mc = facts.model_config
    if mc is None:
        return [
            missing(
                "stage2_memory",
                key,
                "stage-2 memory: no model config",
                "pass --model-config <model>/config.json and --gpu-memory GB "
                "(full fine-tuning with AdamW in fp32 needs about 16 bytes per parameter before activations)",
            )
        ]
    st = stage2_state(va, mc)
    params, exact, emb_head, lora = st["parameters"], st["exact"], st["emb_head"], st["lora"]
    opt_bytes, opt_desc = st["opt_bytes"], st["opt_desc"]
    full_fp32, full_bf16, full_8bit, lora_state = st["full_fp32"], st["full_bf16"], st["full_8bit"], st["lora_state"]
    need = st["need"]
    ev = {
        "parameters": params,
        "parameters_exact": exact,
        "embedding_and_head_parameters": emb_head,
        "lora_parameters": lora,
        "optimizer": va.stage2_optimizer,
        "optimizer_state_bytes_per_param": opt_bytes,
        "full_fp32_gib": full_fp32 / GIB,
        "full_bf16_weights_gib": full_bf16 / GIB,
        "full_fp32_8bit_adam_gib": full_8bit / GIB,
        "lora_gib": lora_state / GIB,
        "needed_gib": need / GIB,
        "gpu_memory_gib": facts.gpu_memory_gb,
        "bytes_per_param_full": 8 + opt_bytes,
    }
    how = "" if exact else " (approximate: 12·L·h² + V·h, architecture not counted layer by layer)"
    mode = (
        f"LoRA r={va.lora_r} (frozen base in {'bf16' if va.bf16 else 'fp32'} + {num(lora + emb_head)} trainable "
        f"incl. embeddings/head)"
        if va.stage2_use_lora
        else f"full fine-tuning with {va.stage2_optimizer} ({num(8 + opt_bytes)} bytes/param: fp32 weights, grads, "
        f"{opt_desc})"
    )
    msg = (
        f"{num(params)} parameters{how}; {mode}: {need / GIB:.1f} GiB before activations. Alternatives: "
        f"full fp32 AdamW {full_fp32 / GIB:.1f} GiB, bf16 weights {full_bf16 / GIB:.1f} GiB, 8-bit Adam "
        f"{full_8bit / GIB:.1f} GiB, LoRA {lora_state / GIB:.1f} GiB"
    )
    if facts.gpu_memory_gb is None:
        return [
            Finding(
                "stage2_memory",
                "info",
                key,
                msg + ". Not compared with a GPU: no --gpu-memory.",
                "pass --gpu-memory GB",
                ev,
            )
        ]
    gpu = facts.gpu_memory_gb
    options = [
        ("LoRA (stage2_use_lora: true)", lora_state),
        ("bf16 model weights", full_bf16),
        ("8-bit Adam (stage2_optimizer: adamw_bnb_8bit)", full_8bit),
    ]
    fitting = [f"{name}: {b / GIB:.1f} GiB" for name, b in options if b < MEMORY_HEADROOM * gpu * GIB]
    rec = (
        "use " + ", or ".join(fitting) + "; " if fitting else ""
    ) + "or shard the states across GPUs (accelerate with FSDP / DeepSpeed ZeRO-3)"
    if need > gpu * GIB:
        return [Finding("stage2_memory", "error", key, msg + f"; one GPU has {gpu:g} GiB: it does not fit.", rec, ev)]
    if need > MEMORY_HEADROOM * gpu * GIB:
        return [
            Finding(
                "stage2_memory",
                "warning",
                key,
                msg + f"; that is {need / (gpu * GIB):.0%} of {gpu:g} GiB, little left for activations.",
                rec + "; or enable gradient_checkpointing",
                ev,
            )
        ]
    return [Finding("stage2_memory", "info", key, msg + f"; fits in {gpu:g} GiB ({need / (gpu * GIB):.0%}).", "", ev)]


@rule("lora", order=60)
def check_lora(config: Config, facts: Facts) -> list[Finding]:
    """LoRA scale (alpha / r) and target modules that the architecture does not have."""
    va = config.vocab_adaptation
    if not va.stage2_use_lora or va.stage2_steps == 0:
        return []
    out: list[Finding] = []
    scale = va.lora_alpha / va.lora_r
    ev = {"lora_r": va.lora_r, "lora_alpha": va.lora_alpha, "scale": scale}
    lo, hi = LORA_SCALE_RANGE
    if not lo <= scale <= hi:
        out.append(
            Finding(
                "lora",
                "warning",
                f"{VA}.lora_alpha",
                f"LoRA scale lora_alpha / lora_r = {va.lora_alpha:g} / {va.lora_r} = {scale:.3g}, outside "
                f"[{lo}, {hi}]: updates are {'tiny' if scale < lo else 'amplified'} relative to the usual "
                f"alpha = r to 2r.",
                f"set lora_alpha to {va.lora_r}–{2 * va.lora_r}",
                ev,
            )
        )
    mc = facts.model_config
    targets = va.lora_target_modules
    if isinstance(targets, list):
        if mc is None:
            out.append(
                missing(
                    "lora",
                    f"{VA}.lora_target_modules",
                    f"whether {targets} exist in the model: no model config",
                    "pass --model-config <model>/config.json",
                )
            )
        else:
            from ..model.keys import linear_module_names, unmatched_targets

            model = meta_model(mc)  # what training accepts, asked of a meta-device model
            if model is None:
                mt = str(mc.get("model_type", ""))
                out.append(
                    missing(
                        "lora",
                        f"{VA}.lora_target_modules",
                        f"whether {targets} exist in the model: transformers cannot build model_type '{mt}' here",
                        "check the names against model.named_modules()",
                        {"model_type": mt},
                    )
                )
            else:
                known, cls = linear_module_names(model), type(model).__name__
                bad = unmatched_targets(model, targets)
                if bad:
                    out.append(
                        Finding(
                            "lora",
                            "error",
                            f"{VA}.lora_target_modules",
                            f"{bad} are not linear projections of {cls} (built from the model config; it "
                            f"has {', '.join(known)}); training would refuse them at the start of stage 2.",
                            f"use names from that list, or null / '{ALL_LINEAR}' for every linear projection",
                            {"model_type": mc.get("model_type"), "model_class": cls, "unknown": bad, "known": known},
                        )
                    )
    if not out:
        out.append(
            Finding(
                "lora",
                "info",
                f"{VA}.lora_alpha",
                f"LoRA r={va.lora_r}, alpha={va.lora_alpha:g} (scale {scale:.3g}), targets "
                f"{targets if isinstance(targets, list) else 'every linear projection'}.",
                "",
                ev,
            )
        )
    return out


@rule("max_positions", order=90)
def check_max_positions(config: Config, facts: Facts) -> list[Finding]:
    """max_seq_length against the model's maximum positions."""
    L = (
        config.stage_training("stage1").max_seq_length
        if config.embedding_warmup.enabled
        else config.vocab_adaptation.max_seq_length
    )
    key = (
        f"{WARMUP}.max_seq_length"
        if config.embedding_warmup.max_seq_length is not None and config.embedding_warmup.enabled
        else f"{VA}.max_seq_length"
    )
    mc = facts.model_config
    if mc is None:
        return [
            missing(
                "max_positions",
                key,
                f"max_seq_length {L:,} against the model's maximum positions: no model config",
                "pass --model-config <model>/config.json",
            )
        ]
    P = cfg_value(mc, "max_position_embeddings", "n_positions", "max_sequence_length", "seq_length")
    if P is None:
        return [missing("max_positions", key, "maximum positions: not in the model config", "check the model card")]
    ev = {"max_seq_length": L, "max_position_embeddings": int(P)}
    if L > int(P):
        return [
            Finding(
                "max_positions",
                "error",
                key,
                f"max_seq_length {L:,} > the model's {int(P):,} positions.",
                f"set max_seq_length ≤ {int(P):,}",
                ev,
            )
        ]
    return []
