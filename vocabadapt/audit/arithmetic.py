"""The arithmetic the rules share: data consumption per stage, corpus size, parameter counts, number formats."""

from __future__ import annotations

from typing import Any, Optional

from ..config import Config
from ..errors import InputError
from .findings import CorpusSize, Facts
from .model_meta import lora_parameter_count, parameter_count

# The TokAlign paper's stage-1 setting: 6.4e-4 with about 1,024 sequences × 2,048 tokens per step.
PAPER_LR_STAGE1 = 6.4e-4
PAPER_SEQUENCES_PER_STEP = 1024
PAPER_SEQ_LEN = 2048
PAPER_TOKENS_PER_STEP = PAPER_SEQUENCES_PER_STEP * PAPER_SEQ_LEN  # 2,097,152

# Bytes of text per token used when only bytes are known. Measured: the GPT-NeoX tokenizer (50k
# vocabulary) gives 4.71 bytes/token on the 2,276 PubMed documents in shared/data; 32k-vocabulary
# tokenizers (Mistral, Llama 2) split finer, so 4.0 is the working assumption. Always labelled.
ESTIMATED_BYTES_PER_TOKEN = 4.0

# Stage-1 learning rate judgement.
LR_WARN_FACTOR = 2.0  # warning above 2× the square-root-scaled paper value
LR_ERROR_FACTOR = 10.0  # error above 10× it
EMBEDDINGS_ONLY_LR_CAP = 1e-4  # embeddings-only training at small batch: above this is a warning
SMALL_BATCH_TOKENS = PAPER_TOKENS_PER_STEP // 4  # below 256 × 2,048 tokens per step counts as small

TINY_BATCH_SEQUENCES = 8
TINY_BATCH_TOKENS = 16_384

THRESHOLD_RANGE = (0.0, 0.95)  # sensible cosine thresholds for relative representations
LORA_SCALE_RANGE = (0.25, 4.0)  # lora_alpha / lora_r outside this is unusual
MEMORY_HEADROOM = 0.85  # warn when states alone take more than this share of the GPU
# Embeddings-only distillation (issue 26's prototype, SmolLM2-135M, 4 x 256 tokens a step): 3e-4 made the
# rows worse under both objectives, 3e-5 barely moved them. A working range, not a tuned optimum.
DISTILL_LR_RANGE = (1e-5, 3e-4)
LR_EMBEDDINGS_MAX_RATIO = 100.0  # lr_embeddings above 100x the backbone's rate is unusual


def sequences_per_step(config: Config, facts: Facts, stage: str = "stage2") -> int:
    """Sequences per optimiser step of a training stage (stage 1 = the embedding warm-up when enabled)."""
    va = config.stage_training(stage)
    return va.batch_size * va.gradient_accumulation * va.num_processes


def stage_consumption(config: Config, facts: Facts) -> tuple[int, int]:
    """Sequences stage 1 and stage 2 read: steps × batch × accumulation × processes.

    With embedding_warmup enabled, stage 1 is the warm-up (its steps and batch) and stage 2 does not
    run (vocab_adaptation.enabled is false then).
    """
    s1 = config.stage_training("stage1")
    c1 = s1.stage1_steps * sequences_per_step(config, facts, "stage1")
    c2 = (
        0
        if config.embedding_warmup.enabled
        else config.vocab_adaptation.stage2_steps * sequences_per_step(config, facts)
    )
    return c1, c2


def stage2_start(config: Config, facts: Facts) -> int:
    start = config.vocab_adaptation.train_start_idx_stage2
    return stage_consumption(config, facts)[0] if start == "auto" else int(start)


def corpus_size(config: Config, facts: Facts) -> Optional[CorpusSize]:
    """Packed sequences in the corpus: measured when the stats have them, else estimated (labelled)."""
    L = config.vocab_adaptation.max_seq_length
    if facts.sequences is not None:
        return CorpusSize(facts.sequences, facts.sequences * L, "packed sequences in the corpus statistics", True)
    if facts.tokens_target is not None:
        return CorpusSize(
            facts.tokens_target / L,
            facts.tokens_target,
            f"target tokens in the statistics / {L:,} tokens per sequence",
            True,
        )
    nbytes, source = facts.bytes, "bytes in the corpus statistics"
    if nbytes is None and config.corpus.budget_bytes() > 0:
        nbytes = config.corpus.budget_bytes()
        source = f"corpus budget ({nbytes / 1e9:g} GB from corpus.size_gb/byte_budget)"
        if facts.documents:
            source += f" over {facts.documents:,} documents = {nbytes / facts.documents:,.0f} bytes/document"
    if nbytes is None:
        return None
    tokens = nbytes / ESTIMATED_BYTES_PER_TOKEN
    basis = f"ESTIMATE: {source} / {ESTIMATED_BYTES_PER_TOKEN} bytes per token / {L:,} tokens per sequence"
    if facts.documents:
        basis += f" (≈ {tokens / facts.documents:,.0f} tokens per document)"
    return CorpusSize(tokens / L, tokens, basis, False)


def num(x: float) -> str:
    """Readable number: 2,560,000 / 0.26 / 1.6e-04."""
    if isinstance(x, int) or (isinstance(x, float) and x.is_integer() and abs(x) >= 1):
        return f"{int(x):,}"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 0.01:
        return f"{x:.3g}"
    return f"{x:.2g}"


def lr_text(x: float) -> str:
    """Learning rates as people write them: 6.4e-4, 4e-5, 1.6e-4."""
    short = f"{x:.2g}"
    mant, exp = short.split("e") if "e" in short else f"{x:.1e}".split("e")
    mant = mant.rstrip("0").rstrip(".") if "." in mant else mant
    return f"{mant}e{int(exp)}"


# --------------------------------------------------------------------------------------------------
# model arithmetic


def cfg_value(mc: dict, *names: str, default: Any = None) -> Any:
    for n in names:
        if mc.get(n) is not None:
            return mc[n]
    return default


def count_parameters(mc: dict[str, Any]) -> tuple[int, bool]:
    """Parameters of a causal LM from its config.json.

    Exact when transformers can build the architecture (counted on a meta-device model,
    vocabadapt.audit.model_meta); otherwise the approximation 12·L·h² + V·h (+ V·h when untied),
    flagged by returning exact=False.
    Returns (parameters, exact).
    Raises:
        InputError: the config lacks the sizes the approximation needs (and no model could be built).
    """
    exact = parameter_count(mc)
    if exact is not None:
        return exact, True
    V = int(cfg_value(mc, "vocab_size", default=0))
    h = int(cfg_value(mc, "hidden_size", "n_embd", "d_model", default=0))
    L = int(cfg_value(mc, "num_hidden_layers", "n_layer", "num_layers", default=0))
    if not (V and h and L):
        raise InputError(
            "model config lacks vocab_size, hidden_size or num_hidden_layers; pass the model's config.json"
        )
    head = 0 if bool(mc.get("tie_word_embeddings", False)) else V * h
    return 12 * L * h * h + V * h + head, False


def lora_params(mc: dict[str, Any], r: int, targets: list[str] | None = None) -> int:
    """LoRA parameters: r × (in + out) per targeted projection (None = every linear projection).

    Counted on the meta-device model; for an architecture transformers cannot build, approximated as
    a fused qkv (h -> 3h), an output (h -> h) and two MLP projections per layer.
    """
    counted = lora_parameter_count(mc, r, targets)
    if counted is not None:
        return counted
    h = int(cfg_value(mc, "hidden_size", "n_embd", "d_model", default=0))
    L = int(cfg_value(mc, "num_hidden_layers", "n_layer", "num_layers", default=0))
    inter = int(cfg_value(mc, "intermediate_size", "n_inner", default=None) or 4 * h)
    return r * L * ((h + 3 * h) + 2 * h + 2 * (h + inter))


def optimizer_state_bytes(name: str) -> tuple[float, str]:
    """Optimiser state bytes per trained parameter (fp32 states unless the name says 8-bit)."""
    n = name.lower()
    if "8bit" in n or "4bit" in n:
        return (2.0 if "lion" not in n else 1.0), "8-bit states"
    if "adafactor" in n or n in ("sgd", "lomo", "adalomo", "schedule_free_sgd"):
        return 0.0, "factored or no per-parameter state (approximately 0)"
    if "lion" in n or "rmsprop" in n or "adagrad" in n:
        return 4.0, "one fp32 state"
    return 8.0, "two fp32 states (Adam moments)"


def stage2_state(va: Any, mc: dict[str, Any]) -> dict[str, Any]:
    """Stage-2 training state bytes (weights, gradients, optimiser states) before activations, per option.

    Keys: parameters, exact, emb_head, lora, opt_bytes, opt_desc, full_fp32, full_bf16, full_8bit,
    lora_state, need (the configured option: LoRA or full fp32).
    """
    params, exact = count_parameters(mc)
    V = int(cfg_value(mc, "vocab_size", default=0))
    h = int(cfg_value(mc, "hidden_size", "n_embd", "d_model", default=0))
    tied = bool(mc.get("tie_word_embeddings", mc.get("model_type") == "gpt2"))
    emb_head = V * h * (1 if tied else 2)
    opt_bytes, opt_desc = optimizer_state_bytes(va.stage2_optimizer)
    full_fp32 = params * (4 + 4 + opt_bytes)  # fp32 weights + grads + states (HF bf16 autocast keeps fp32 masters)
    full_bf16 = params * (2 + 2 + opt_bytes / 2)  # model loaded in bf16: weights, grads and states in bf16
    full_8bit = params * (4 + 4 + 2)  # adamw_bnb_8bit
    targets = va.lora_target_modules
    lora = lora_params(mc, va.lora_r, targets if isinstance(targets, list) else None)  # all-linear = None
    lora_state = params * (2 if va.bf16 else 4) + (lora + emb_head) * (4 + 4 + opt_bytes)
    need = lora_state if va.stage2_use_lora else full_fp32
    return {
        "parameters": params,
        "exact": exact,
        "emb_head": emb_head,
        "lora": lora,
        "opt_bytes": opt_bytes,
        "opt_desc": opt_desc,
        "full_fp32": full_fp32,
        "full_bf16": full_bf16,
        "full_8bit": full_8bit,
        "lora_state": lora_state,
        "need": need,
    }


def stage1_state(va: Any, mc: dict[str, Any]) -> int:
    """Stage-1 state bytes: the model in fp32 (training loads fp32) + gradients and Adam states of embeddings/head."""
    st = stage2_state(va, mc)
    opt_bytes, _ = optimizer_state_bytes(va.stage1_optimizer)
    return int(st["parameters"] * 4 + st["emb_head"] * (4 + opt_bytes))


def teacher_bytes(va: Any, mc: dict[str, Any], stage: str) -> tuple[int, str]:
    """Memory the distillation teacher adds beside the student (weights only; its activations are not kept:
    it runs under no_grad). Stage 1 shares the frozen body, so only the source embedding and head (fp32)
    are extra; stage 2 trains the body, so a whole frozen copy runs beside it, in bf16 when bf16 is on.

    Returns (bytes, how they were counted).
    """
    st = stage2_state(va, mc)
    if stage == "stage1":
        return int(st["emb_head"] * 4), f"source embedding + head only ({num(st['emb_head'])} fp32 values; body shared)"
    per = 2 if va.bf16 else 4
    return int(st["parameters"] * per), f"a frozen copy of the source model ({num(st['parameters'])} × {per} bytes)"
