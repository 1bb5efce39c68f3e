"""`vocabadapt audit`: review a config with real numbers before anyone spends GPU hours on it.

A rule is a small named function `(config, facts) -> list[Finding]`, registered with `@rule(...)` in
the order it runs (RULES). Each finding has an id, a severity (error | warning | info), the config key
it is about, a message, a recommendation and `evidence`: the numbers behind it. A rule that needs a
fact nobody gave it (corpus statistics, the model's config.json, GPU memory) returns an info finding
that says what it could not check; a rule that does not apply (LoRA rules with LoRA off) returns [].

Facts (`gather_facts`):

* `--corpus-stats FILE`: a JSON object, read tolerantly. Accepted keys (top level, or under `train`
  or `corpus`; first match wins):
    - documents: `documents`, `num_documents`, `n_documents`, `docs`
    - bytes of training text: `bytes`, `num_bytes`, `text_bytes`, `train_bytes`
    - target-tokenizer tokens: `tokens_target`, `target_tokens`, `target.tokens`, `tokens.target`,
      `tokens_per_tokenizer.target`, or a bare `tokens` (the side training reads is the target)
    - source-tokenizer tokens: the same with `source`
    - packed training sequences: `sequences`, `packed_sequences`, `sequences_target`,
      `target.sequences`, `tokens.sequences`
    - identical-token pairs (pivot candidates): `identical_pairs`, `identical_tokens`,
      `identical_token_pairs`, `alignment.identical_pairs`
  Values that are not numbers are ignored. Packed sequences, when not given, are estimated as
  target tokens / max_seq_length; target tokens, when not given, as bytes / 4.0 bytes per token
  (ESTIMATED_BYTES_PER_TOKEN; every finding built on it says it is an estimate). With documents
  but no bytes, the bytes are taken from `corpus.size_gb`/`byte_budget` when set.
* `--model-config FILE|DIR`: the model's `config.json` (parameters, maximum positions, tied
  embeddings, architecture). Without it, `models.source_model` is used when it is a local directory.
* `--gpu-memory GB`: memory of one GPU in GiB (80 for an 80 GB H100); it also implies a GPU exists.
  Without it, on a machine where CUDA is available, the first GPU's memory (and bf16 support) is used.
* flash-attn: whether the `flash_attn` package is importable here.

Units: "GiB" is 2**30 bytes. World size (processes) is assumed 1: `batch_size` and
`gradient_accumulation` are per process, so on N GPUs every per-step number below grows N-fold.
"""

from __future__ import annotations

import ast
import difflib
import functools
import importlib
import importlib.util
import json
import logging
import math
import textwrap
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from .config import Config
from .errors import InputError

log = logging.getLogger(__name__)

SEVERITIES = ("error", "warning", "info")

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

# LoRA-able module names per architecture family (HF module names as peft matches them).
LLAMA_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
ARCH_MODULES: dict[str, tuple[str, ...]] = {
    "llama": LLAMA_MODULES + ("embed_tokens", "lm_head"),
    "mistral": LLAMA_MODULES + ("embed_tokens", "lm_head"),
    "mixtral": ("q_proj", "k_proj", "v_proj", "o_proj", "w1", "w2", "w3", "gate", "embed_tokens", "lm_head"),
    "qwen2": LLAMA_MODULES + ("embed_tokens", "lm_head"),
    "gemma": LLAMA_MODULES + ("embed_tokens", "lm_head"),
    "gpt_neox": ("query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h", "embed_in", "embed_out"),
    "gpt2": ("c_attn", "c_proj", "c_fc", "wte", "lm_head"),
}
LLAMA_FAMILY = ("llama", "mistral", "qwen2", "gemma")

GIB = 2**30


# --------------------------------------------------------------------------------------------------
# findings and facts


@dataclass
class Finding:
    """One audit result. `evidence` holds the numbers behind it (JSON-serialisable)."""

    id: str
    severity: str
    key: str
    message: str
    recommendation: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        assert self.severity in SEVERITIES, self.severity  # internal invariant: rules use the three names

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Facts:
    """What the rules may know besides the config. Every field may be missing (None)."""

    documents: Optional[int] = None
    bytes: Optional[int] = None
    tokens_source: Optional[int] = None
    tokens_target: Optional[int] = None
    sequences: Optional[int] = None
    identical_pairs: Optional[int] = None
    stats_path: Optional[str] = None
    model_config: Optional[dict[str, Any]] = None
    model_config_path: Optional[str] = None
    gpu_memory_gb: Optional[float] = None
    cuda_available: bool = False
    bf16_supported: Optional[bool] = None  # None: unknown (no GPU visible here)
    flash_attn_installed: bool = False

    @property
    def has_gpu(self) -> bool:
        return self.cuda_available or self.gpu_memory_gb is not None


@dataclass
class CorpusSize:
    """Packed training sequences the corpus holds, and how that number was obtained."""

    sequences: float
    tokens: float
    basis: str
    measured: bool  # False: an estimate from bytes at ESTIMATED_BYTES_PER_TOKEN


_STATS_KEYS: dict[str, tuple[str, ...]] = {
    "documents": ("documents", "num_documents", "n_documents", "docs"),
    "bytes": ("bytes", "num_bytes", "text_bytes", "train_bytes"),
    "tokens_target": ("tokens_target", "target_tokens", "target.tokens", "tokens.target",
                      "tokens_per_tokenizer.target", "target.num_tokens", "tokens"),
    "tokens_source": ("tokens_source", "source_tokens", "source.tokens", "tokens.source",
                      "tokens_per_tokenizer.source", "source.num_tokens"),
    "sequences": ("sequences", "packed_sequences", "sequences_target", "target.sequences", "tokens.sequences"),
    "identical_pairs": ("identical_pairs", "identical_tokens", "identical_token_pairs", "alignment.identical_pairs"),
}


def _lookup(data: dict, dotted: str) -> Any:
    cur: Any = data
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur


def parse_corpus_stats(data: dict[str, Any]) -> dict[str, Optional[int]]:
    """Pick the known facts out of a stats JSON object (see the module docstring for the keys)."""
    out: dict[str, Optional[int]] = {}
    scopes = [data] + [data[s] for s in ("train", "corpus") if isinstance(data.get(s), dict)]
    for name, keys in _STATS_KEYS.items():
        out[name] = None
        for scope in scopes:
            for k in keys:
                v = _lookup(scope, k)
                if isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0:
                    out[name] = int(v)
                    break
            if out[name] is not None:
                break
    return out


def _read_json(path: Path, what: str) -> Any:
    if not path.exists():
        raise InputError(f"{what} {path} does not exist; pass the file a run wrote (or leave the option out)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{what} {path} is not valid JSON ({e}); pass the JSON file itself") from None


def _read_model_config(path: str | Path) -> tuple[dict, str]:
    p = Path(path)
    if p.is_dir():
        p = p / "config.json"
    data = _read_json(p, "model config")
    if not isinstance(data, dict):
        raise InputError(f"model config {p} is a JSON {type(data).__name__}, not an object; pass config.json")
    return data, str(p)


def gather_facts(corpus_stats: str | None = None, model_config: str | None = None,
                 gpu_memory_gb: float | None = None) -> Facts:
    """Collect the facts the rules use.

    Args:
        corpus_stats: a run's corpus/stats.json (or any JSON with the keys the module docstring lists).
        model_config: the model's config.json, or the model directory holding it.
        gpu_memory_gb: memory of one GPU in GiB; implies that the run has a GPU.
    Returns:
        Facts, including whether CUDA, bf16 and flash-attn are available on this machine.
    Raises:
        InputError: a given file is missing, not JSON, or not a JSON object.
    """
    facts = Facts(gpu_memory_gb=gpu_memory_gb)
    if corpus_stats:
        data = _read_json(Path(corpus_stats), "corpus statistics")
        if not isinstance(data, dict):
            raise InputError(f"corpus statistics {corpus_stats} is a JSON {type(data).__name__}, not an object")
        for k, v in parse_corpus_stats(data).items():
            setattr(facts, k, v)
        facts.stats_path = str(corpus_stats)
    if model_config:
        facts.model_config, facts.model_config_path = _read_model_config(model_config)
    if gpu_memory_gb is not None and gpu_memory_gb <= 0:
        raise InputError(f"--gpu-memory {gpu_memory_gb}: give the memory of one GPU in GiB, e.g. 80")
    try:
        import torch

        facts.cuda_available = bool(torch.cuda.is_available())
        if facts.cuda_available:
            facts.bf16_supported = bool(torch.cuda.is_bf16_supported())
            if gpu_memory_gb is None:
                facts.gpu_memory_gb = torch.cuda.get_device_properties(0).total_memory / GIB
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    facts.flash_attn_installed = importlib.util.find_spec("flash_attn") is not None
    return facts


# --------------------------------------------------------------------------------------------------
# shared arithmetic


def sequences_per_step(config: Config, facts: Facts) -> int:
    va = config.vocab_adaptation
    return va.batch_size * va.gradient_accumulation * va.num_processes


def stage_consumption(config: Config, facts: Facts) -> tuple[int, int]:
    """Sequences stage 1 and stage 2 read: steps × batch × accumulation × processes."""
    s = sequences_per_step(config, facts)
    va = config.vocab_adaptation
    return va.stage1_steps * s, va.stage2_steps * s


def stage2_start(config: Config, facts: Facts) -> int:
    start = config.vocab_adaptation.train_start_idx_stage2
    return stage_consumption(config, facts)[0] if start == "auto" else int(start)


def corpus_size(config: Config, facts: Facts) -> Optional[CorpusSize]:
    """Packed sequences in the corpus: measured when the stats have them, else estimated (labelled)."""
    L = config.vocab_adaptation.max_seq_length
    if facts.sequences is not None:
        return CorpusSize(facts.sequences, facts.sequences * L, "packed sequences in the corpus statistics", True)
    if facts.tokens_target is not None:
        return CorpusSize(facts.tokens_target / L, facts.tokens_target,
                          f"target tokens in the statistics / {L:,} tokens per sequence", True)
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


def _n(x: float) -> str:
    """Readable number: 2,560,000 / 0.26 / 1.6e-04."""
    if isinstance(x, int) or (isinstance(x, float) and x.is_integer() and abs(x) >= 1):
        return f"{int(x):,}"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 0.01:
        return f"{x:.3g}"
    return f"{x:.2g}"


def _lr(x: float) -> str:
    """Learning rates as people write them: 6.4e-4, 4e-5, 1.6e-4."""
    mant, exp = f"{x:.2g}".split("e") if "e" in f"{x:.2g}" else (None, None)
    if mant is None:
        mant, exp = f"{x:.1e}".split("e")
    mant = mant.rstrip("0").rstrip(".") if "." in mant else mant
    return f"{mant}e{int(exp)}"


# --------------------------------------------------------------------------------------------------
# model arithmetic


def _cfg(mc: dict, *names: str, default: Any = None) -> Any:
    for n in names:
        if mc.get(n) is not None:
            return mc[n]
    return default


def count_parameters(mc: dict[str, Any]) -> tuple[int, bool]:
    """Parameters of a causal LM from its config.json.

    Exact (counted layer by layer) for Llama/Mistral/Qwen2/Gemma, GPT-NeoX and GPT-2 configs;
    otherwise the approximation 12·L·h² + V·h (×2 when untied), flagged by returning exact=False.
    Returns (parameters, exact).
    """
    mt = str(mc.get("model_type", ""))
    V = int(_cfg(mc, "vocab_size", default=0))
    h = int(_cfg(mc, "hidden_size", "n_embd", "d_model", default=0))
    L = int(_cfg(mc, "num_hidden_layers", "n_layer", "num_layers", default=0))
    tied = bool(mc.get("tie_word_embeddings", mt == "gpt2"))
    if not (V and h and L):
        raise InputError("model config lacks vocab_size, hidden_size or num_hidden_layers; pass the model's config.json")
    head = 0 if tied else V * h
    if mt in LLAMA_FAMILY:
        nh = int(_cfg(mc, "num_attention_heads"))
        kv = int(_cfg(mc, "num_key_value_heads", default=nh))
        hd = int(_cfg(mc, "head_dim", default=h // nh))
        inter = int(_cfg(mc, "intermediate_size"))
        qkv_bias = mt == "qwen2" or bool(mc.get("attention_bias", False))
        o_bias = bool(mc.get("attention_bias", False)) and mt != "qwen2"
        attn = h * nh * hd + 2 * h * kv * hd + nh * hd * h  # q, k, v, o weights
        attn += (nh * hd + 2 * kv * hd) * qkv_bias + h * o_bias
        mlp = 3 * h * inter + (2 * inter + h) * bool(mc.get("mlp_bias", False))  # gate, up, down
        per_layer = attn + mlp + 2 * h  # two RMSNorm weights
        return V * h + L * per_layer + h + head, True
    if mt == "gpt_neox":
        inter = int(_cfg(mc, "intermediate_size", default=4 * h))
        bias = bool(mc.get("attention_bias", True))
        per_layer = 4 * h + (3 * h * h + 3 * h * bias) + (h * h + h * bias) + (h * inter + inter + inter * h + h)
        return V * h + L * per_layer + 2 * h + head, True
    if mt == "gpt2":
        inter = int(_cfg(mc, "n_inner", default=None) or 4 * h)
        P = int(_cfg(mc, "n_positions", default=1024))
        per_layer = 4 * h + (3 * h * h + 3 * h) + (h * h + h) + (h * inter + inter + inter * h + h)
        return V * h + P * h + L * per_layer + 2 * h + head, True
    return 12 * L * h * h + V * h + head, False


def _lora_params(mc: dict[str, Any], r: int) -> int:
    """LoRA parameters with every linear projection targeted: r × (in + out) per projection."""
    mt = str(mc.get("model_type", ""))
    h = int(_cfg(mc, "hidden_size", "n_embd", "d_model", default=0))
    L = int(_cfg(mc, "num_hidden_layers", "n_layer", "num_layers", default=0))
    inter = int(_cfg(mc, "intermediate_size", "n_inner", default=None) or 4 * h)
    if mt in LLAMA_FAMILY:
        nh = int(_cfg(mc, "num_attention_heads"))
        kv = int(_cfg(mc, "num_key_value_heads", default=nh))
        hd = int(_cfg(mc, "head_dim", default=h // nh))
        per_layer = (h + nh * hd) * 2 + 2 * (h + kv * hd) + 3 * (h + inter)
    else:  # fused qkv (h -> 3h), out (h -> h), two MLP projections
        per_layer = (h + 3 * h) + 2 * h + 2 * (h + inter)
    return r * L * per_layer


def _optimizer_state_bytes(name: str) -> tuple[float, str]:
    """Optimiser state bytes per trained parameter (fp32 states unless the name says 8-bit)."""
    n = name.lower()
    if "8bit" in n or "4bit" in n:
        return (2.0 if "lion" not in n else 1.0), "8-bit states"
    if "adafactor" in n or n in ("sgd", "lomo", "adalomo", "schedule_free_sgd"):
        return 0.0, "factored or no per-parameter state (approximately 0)"
    if "lion" in n or "rmsprop" in n or "adagrad" in n:
        return 4.0, "one fp32 state"
    return 8.0, "two fp32 states (Adam moments)"


# --------------------------------------------------------------------------------------------------
# the registry

Rule = Callable[[Config, Facts], list[Finding]]
RULES: dict[str, Rule] = {}


def rule(rule_id: str) -> Callable[[Rule], Rule]:
    """Register a rule under `rule_id`; rules run in registration order."""

    def deco(fn: Rule) -> Rule:
        if rule_id in RULES:
            raise AssertionError(f"duplicate audit rule {rule_id}")
        RULES[rule_id] = fn
        fn.rule_id = rule_id  # type: ignore[attr-defined]
        return fn

    return deco


def _missing(rule_id: str, key: str, what: str, how: str, evidence: dict | None = None) -> Finding:
    return Finding(rule_id, "info", key, f"not checked: {what}", how, evidence or {})


VA = "vocab_adaptation"


# 1 ------------------------------------------------------------------------------------------------
@rule("lr_stage1")
def check_lr_stage1(config: Config, facts: Facts) -> list[Finding]:
    """Stage-1 learning rate against the tokens per optimiser step, scaled from the paper's setting."""
    va = config.vocab_adaptation
    if va.stage1_steps == 0:
        return []
    seqs = sequences_per_step(config, facts)
    tokens = seqs * va.max_seq_length
    ratio = tokens / PAPER_TOKENS_PER_STEP
    sqrt_lr = PAPER_LR_STAGE1 * math.sqrt(ratio)
    linear_lr = PAPER_LR_STAGE1 * ratio
    small = tokens < SMALL_BATCH_TOKENS
    lr = va.lr_stage1
    ev = {
        "lr_stage1": lr, "tokens_per_step": tokens, "sequences_per_step": seqs,
        "batch_size": va.batch_size, "gradient_accumulation": va.gradient_accumulation,
        "max_seq_length": va.max_seq_length, "world_size": va.num_processes,
        "paper_lr_stage1": PAPER_LR_STAGE1, "paper_tokens_per_step": PAPER_TOKENS_PER_STEP,
        "batch_ratio": ratio, "sqrt_scaled_lr": sqrt_lr, "linear_scaled_lr": linear_lr,
        "lr_over_sqrt_scaled": lr / sqrt_lr, "lr_over_linear_scaled": lr / linear_lr,
    }
    step = (f"{_n(tokens)} tokens per optimiser step ({va.batch_size} × {va.gradient_accumulation} × "
            f"{_n(va.max_seq_length)} × {va.num_processes} process{'es' if va.num_processes > 1 else ''})")
    scaled = (f"the paper's {_lr(PAPER_LR_STAGE1)} at {_n(PAPER_TOKENS_PER_STEP)} tokens/step "
              f"({PAPER_SEQUENCES_PER_STEP:,} × {PAPER_SEQ_LEN:,}) scales to {_lr(sqrt_lr)} (square-root, "
              f"Adam-style) or {_lr(linear_lr)} (linear) at {ratio:.4g}× the batch")
    hi = min(sqrt_lr, EMBEDDINGS_ONLY_LR_CAP) if small else sqrt_lr
    advice = (f"set lr_stage1 between {_lr(linear_lr)} (linear scaling) and {_lr(hi)}"
              + (f" (the embeddings-only cap at this batch; square-root scaling gives {_lr(sqrt_lr)})" if small
                 and hi < sqrt_lr else " (square-root scaling)")
              + f", e.g. lr_stage1: {_lr(linear_lr)}; or raise the batch towards "
              f"{PAPER_SEQUENCES_PER_STEP:,} sequences per step")
    problems = []
    severity = "info"
    if lr > LR_WARN_FACTOR * sqrt_lr:
        severity = "error" if lr > LR_ERROR_FACTOR * sqrt_lr else "warning"
        problems.append(f"{_lr(lr)} is {lr / sqrt_lr:.3g}× the square-root-scaled paper value ({_lr(sqrt_lr)}) "
                        f"and {lr / linear_lr:.3g}× the linear-scaled one ({_lr(linear_lr)})")
    if small and lr > EMBEDDINGS_ONLY_LR_CAP:
        if severity == "info":
            severity = "warning"
        problems.append(("it is" if problems else f"{_lr(lr)} is") + f" above {_lr(EMBEDDINGS_ONLY_LR_CAP)}, "
                        f"high for embeddings-only training at a small batch (< {_n(SMALL_BATCH_TOKENS)} tokens/step)")
    if problems:
        msg = "lr_stage1 " + "; ".join(problems) + f". At {step}, {scaled}."
        return [Finding("lr_stage1", severity, f"{VA}.lr_stage1", msg, advice, ev)]
    if lr < linear_lr / 10:
        return [Finding("lr_stage1", "info", f"{VA}.lr_stage1",
                        f"lr_stage1 {_lr(lr)} at {step} is below a tenth of the linear-scaled {_lr(linear_lr)}; "
                        f"{scaled}. Stage 1 may barely move the new rows.",
                        f"consider lr_stage1 ≥ {_lr(linear_lr)}", ev)]
    return [Finding("lr_stage1", "info", f"{VA}.lr_stage1",
                    f"lr_stage1 {_lr(lr)} at {step} is consistent with the paper: {scaled}.", "", ev)]


# 2 ------------------------------------------------------------------------------------------------
@rule("shuffle")
def check_shuffle(config: Config, facts: Facts) -> list[Finding]:
    """A fixed data order is a known failure of the original training code."""
    if config.vocab_adaptation.shuffle:
        return []
    return [Finding("shuffle", "error", f"{VA}.shuffle",
                    "shuffle is off: every epoch and every stage reads the packed sequences in file order, so "
                    "consecutive batches come from the same documents and sources (the original training code's "
                    "known failure).",
                    "set vocab_adaptation.shuffle: true (seeded by vocab_adaptation.seed, reproducible)",
                    {"shuffle": False})]


# 3 ------------------------------------------------------------------------------------------------
@rule("stage2_start")
def check_stage2_start(config: Config, facts: Facts) -> list[Finding]:
    """Where stage 2 starts in the data order, against stage 1's consumption and the corpus size."""
    va = config.vocab_adaptation
    key = f"{VA}.train_start_idx_stage2"
    if va.stage2_steps == 0:
        return []
    seqs = sequences_per_step(config, facts)
    c1, c2 = stage_consumption(config, facts)
    start = stage2_start(config, facts)
    is_auto = va.train_start_idx_stage2 == "auto"
    ev: dict[str, Any] = {
        "train_start_idx_stage2": va.train_start_idx_stage2, "start_sequence": start,
        "sequences_per_step": seqs, "stage1_sequences": c1, "stage2_sequences": c2,
        "stage1_tokens": c1 * va.max_seq_length, "stage2_tokens": c2 * va.max_seq_length,
        "auto_value": c1, "stage2_end_sequence": start + c2,
    }
    consumption = (f"stage 1 reads {_n(c1)} sequences ({va.stage1_steps:,} steps × {_n(seqs)}), stage 2 reads "
                   f"{_n(c2)} ({va.stage2_steps:,} × {_n(seqs)}) from sequence {_n(start)}"
                   + (" (auto)" if is_auto else ""))
    notes: list[str] = []
    # The paper's 2,560,000 is 2,500 steps × 1,024 sequences: stage 1's consumption at the paper's batch.
    for steps in {va.stage1_steps, 2500}:
        if not is_auto and start == steps * PAPER_SEQUENCES_PER_STEP and seqs != PAPER_SEQUENCES_PER_STEP:
            notes.append(f"{_n(start)} = {steps:,} steps × {PAPER_SEQUENCES_PER_STEP:,} sequences, stage 1's "
                         f"consumption at the paper's batch; at {_n(seqs)} sequences per step stage 1 consumes "
                         f"{_n(c1)}, which is what auto chooses")
            ev["matches_paper_batch"] = True
            break
    findings: list[Finding] = []
    severity = "info"
    problems: list[str] = []
    if not is_auto and start < c1:
        severity = "warning"
        problems.append(f"stage 2 re-reads {_n(c1 - start)} sequences stage 1 already trained on "
                        f"(start {_n(start)} < stage-1 consumption {_n(c1)})")
    elif not is_auto and start > c1:
        ev["skipped_sequences"] = start - c1
        problems.append(f"{_n(start - c1)} sequences between the end of stage 1 ({_n(c1)}) and the start of "
                        f"stage 2 are never used")
        severity = "warning"
    size = corpus_size(config, facts)
    if size is None:
        need_tokens = (start + c2) * va.max_seq_length
        ev["required_sequences"] = start + c2
        ev["required_tokens"] = need_tokens
        extra = f"; the corpus must hold ≥ {_n(start + c2)} packed sequences ({_n(need_tokens)} target tokens)"
        if facts.documents:
            per_doc = need_tokens / facts.documents
            ev["required_tokens_per_document"] = per_doc
            extra += f", i.e. ≥ {_n(per_doc)} tokens per document over its {_n(facts.documents)} documents"
        parts = problems + notes + [consumption + extra,
                                    "not checked against the corpus: no token or byte counts (--corpus-stats with "
                                    "tokens or bytes, or corpus.size_gb)",
                                    f"train_start_idx_stage2: auto means stage 1's consumption = {_n(c1)}, so "
                                    "stage 2 starts on data stage 1 never saw"]
        msg = ". ".join(p[0].upper() + p[1:] for p in parts) + "."
        findings.append(Finding("stage2_start", severity, key, msg,
                                f"set train_start_idx_stage2: auto (= {_n(c1)} here)" if not is_auto else
                                "pass --corpus-stats <run>/corpus/stats.json to check the data suffices", ev))
        return findings
    N = size.sequences
    ev.update({"corpus_sequences": N, "corpus_tokens": size.tokens, "corpus_basis": size.basis,
               "corpus_measured": size.measured, "stage1_fraction": c1 / N if N else math.inf,
               "stage2_fraction": c2 / N if N else math.inf, "start_fraction": start / N if N else math.inf})
    est = "" if size.measured else "about "
    if start >= N:
        # An estimate is trusted to within 2×; beyond that, or with measured counts, it is an error.
        severity = "error" if size.measured or start >= 2 * N else "warning"
        problems.insert(0, f"stage 2 starts at sequence {_n(start)}, past the end of the data "
                           f"({start / N:.2f}× the corpus{'' if size.measured else ', estimated'})" if N
                        else "the corpus is empty")
    elif start + c2 > N:
        severity = "error" if severity == "error" else "warning"
        problems.append(f"stage 2 runs past the end ({_n(start + c2)} > {_n(N)}) and wraps around into data "
                        f"already read")
    elif c1 > N:
        severity = "warning" if severity == "info" else severity
        problems.append(f"stage 1 alone reads {c1 / N:.2f} epochs, so stage 2's data was seen in stage 1")
    share = (f" = {c1 / N:.1%} of the corpus" if N else "", f" ({c2 / N:.1%})" if N else "")
    consumption = (f"stage 1 reads {_n(c1)} sequences ({va.stage1_steps:,} steps × {_n(seqs)}{share[0]}), "
                   f"stage 2 {_n(c2)}{share[1]} from sequence {_n(start)}" + (" (auto)" if is_auto else ""))
    parts = problems + [consumption] + notes + [f"corpus: {est}{_n(N)} sequences [{size.basis}]"]
    msg = ". ".join(p[0].upper() + p[1:] for p in parts)
    rec = ""
    if severity != "info" or not is_auto:
        rec = f"set train_start_idx_stage2: auto (= {_n(c1)} here)"
        if c1 + c2 > N:  # even with auto the two stages do not fit in one epoch
            rec += "; and use a larger corpus or fewer steps so both stages fit in one epoch"
    findings.append(Finding("stage2_start", severity, key, msg + ".", rec, ev))
    return findings


# 4 ------------------------------------------------------------------------------------------------
@rule("token_budget")
def check_token_budget(config: Config, facts: Facts) -> list[Finding]:
    """Tokens each stage trains on (steps × batch × accumulation × seq) against the corpus tokens."""
    va = config.vocab_adaptation
    L = va.max_seq_length
    c1, c2 = stage_consumption(config, facts)
    ev: dict[str, Any] = {"stage1_tokens": c1 * L, "stage2_tokens": c2 * L, "total_tokens": (c1 + c2) * L}
    size = corpus_size(config, facts)
    if size is None:
        return [_missing("token_budget", f"{VA}.stage1_steps",
                         f"the token budget (stage 1 {_n(c1 * L)} tokens, stage 2 {_n(c2 * L)} tokens) against the "
                         "corpus: no corpus token or byte counts",
                         "pass --corpus-stats <run>/corpus/stats.json (or set corpus.size_gb)", ev)]
    T = size.tokens
    ev.update({"corpus_tokens": T, "corpus_measured": size.measured, "corpus_basis": size.basis,
               "stage1_epochs": c1 * L / T if T else math.inf, "stage2_epochs": c2 * L / T if T else math.inf,
               "total_epochs": (c1 + c2) * L / T if T else math.inf})
    est = "" if size.measured else " (estimated)"
    over = [(name, toks / T) for name, toks in (("stage 1", c1 * L), ("stage 2", c2 * L)) if T and toks > T]
    desc = (f"stage 1 trains on {_n(c1 * L)} tokens ({c1 * L / T:.1%} of the corpus's {_n(T)}{est}), stage 2 on "
            f"{_n(c2 * L)} ({c2 * L / T:.1%}); together {(c1 + c2) * L / T:.2f} epochs" if T else "the corpus is empty")
    if over:
        return [Finding("token_budget", "warning", f"{VA}.stage1_steps" if over[0][0] == "stage 1" else f"{VA}.stage2_steps",
                        desc + "; " + ", ".join(f"{n} alone is {e:.2f} epochs" for n, e in over)
                        + ": repeated data, overfitting risk.",
                        "use more text (corpus.size_gb) or fewer steps so each stage stays within one epoch", ev)]
    return [Finding("token_budget", "info", f"{VA}.stage1_steps", desc + ".", "", ev)]


# 5 ------------------------------------------------------------------------------------------------
@rule("stage2_memory")
def check_stage2_memory(config: Config, facts: Facts) -> list[Finding]:
    """Stage-2 training state memory (weights, gradients, optimiser) against one GPU."""
    va = config.vocab_adaptation
    key = f"{VA}.stage2_use_lora"
    if va.stage2_steps == 0:
        return []
    mc = facts.model_config
    if mc is None:
        return [_missing("stage2_memory", key, "stage-2 memory: no model config",
                         "pass --model-config <model>/config.json and --gpu-memory GB "
                         "(full fine-tuning with AdamW in fp32 needs about 16 bytes per parameter before activations)")]
    params, exact = count_parameters(mc)
    V = int(_cfg(mc, "vocab_size", default=0))
    h = int(_cfg(mc, "hidden_size", "n_embd", "d_model", default=0))
    tied = bool(mc.get("tie_word_embeddings", mc.get("model_type") == "gpt2"))
    emb_head = V * h * (1 if tied else 2)
    opt_bytes, opt_desc = _optimizer_state_bytes(va.stage2_optimizer)
    full_fp32 = params * (4 + 4 + opt_bytes)  # fp32 weights + grads + states (HF bf16 autocast keeps fp32 masters)
    full_bf16 = params * (2 + 2 + opt_bytes / 2)  # model loaded in bf16: weights, grads and states in bf16
    full_8bit = params * (4 + 4 + 2)  # adamw_bnb_8bit
    lora = _lora_params(mc, va.lora_r)
    lora_state = params * (2 if va.bf16 else 4) + (lora + emb_head) * (4 + 4 + opt_bytes)
    need = lora_state if va.stage2_use_lora else full_fp32
    ev = {
        "parameters": params, "parameters_exact": exact, "embedding_and_head_parameters": emb_head,
        "lora_parameters": lora, "optimizer": va.stage2_optimizer, "optimizer_state_bytes_per_param": opt_bytes,
        "full_fp32_gib": full_fp32 / GIB, "full_bf16_weights_gib": full_bf16 / GIB,
        "full_fp32_8bit_adam_gib": full_8bit / GIB, "lora_gib": lora_state / GIB, "needed_gib": need / GIB,
        "gpu_memory_gib": facts.gpu_memory_gb, "bytes_per_param_full": 8 + opt_bytes,
    }
    how = "" if exact else " (approximate: 12·L·h² + V·h, architecture not counted layer by layer)"
    mode = (f"LoRA r={va.lora_r} (frozen base in {'bf16' if va.bf16 else 'fp32'} + {_n(lora + emb_head)} trainable "
            f"incl. embeddings/head)" if va.stage2_use_lora else
            f"full fine-tuning with {va.stage2_optimizer} ({_n(8 + opt_bytes)} bytes/param: fp32 weights, grads, "
            f"{opt_desc})")
    msg = (f"{_n(params)} parameters{how}; {mode}: {need / GIB:.1f} GiB before activations. Alternatives: "
           f"full fp32 AdamW {full_fp32 / GIB:.1f} GiB, bf16 weights {full_bf16 / GIB:.1f} GiB, 8-bit Adam "
           f"{full_8bit / GIB:.1f} GiB, LoRA {lora_state / GIB:.1f} GiB")
    if facts.gpu_memory_gb is None:
        return [Finding("stage2_memory", "info", key, msg + ". Not compared with a GPU: no --gpu-memory.",
                        "pass --gpu-memory GB", ev)]
    gpu = facts.gpu_memory_gb
    options = [("LoRA (stage2_use_lora: true)", lora_state), ("bf16 model weights", full_bf16),
               ("8-bit Adam (stage2_optimizer: adamw_bnb_8bit)", full_8bit)]
    fitting = [f"{name}: {b / GIB:.1f} GiB" for name, b in options if b < MEMORY_HEADROOM * gpu * GIB]
    rec = ("use " + ", or ".join(fitting) + "; " if fitting else "") + \
        "or shard the states across GPUs (accelerate with FSDP / DeepSpeed ZeRO-3)"
    if need > gpu * GIB:
        return [Finding("stage2_memory", "error", key, msg + f"; one GPU has {gpu:g} GiB: it does not fit.", rec, ev)]
    if need > MEMORY_HEADROOM * gpu * GIB:
        return [Finding("stage2_memory", "warning", key,
                        msg + f"; that is {need / (gpu * GIB):.0%} of {gpu:g} GiB, little left for activations.",
                        rec + "; or enable gradient_checkpointing", ev)]
    return [Finding("stage2_memory", "info", key, msg + f"; fits in {gpu:g} GiB ({need / (gpu * GIB):.0%}).", "", ev)]


# 6 ------------------------------------------------------------------------------------------------
@rule("lora")
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
        out.append(Finding("lora", "warning", f"{VA}.lora_alpha",
                           f"LoRA scale lora_alpha / lora_r = {va.lora_alpha:g} / {va.lora_r} = {scale:.3g}, outside "
                           f"[{lo}, {hi}]: updates are {'tiny' if scale < lo else 'amplified'} relative to the usual "
                           f"alpha = r to 2r.", f"set lora_alpha to {va.lora_r}–{2 * va.lora_r}", ev))
    mc = facts.model_config
    if va.lora_target_modules:
        if mc is None:
            out.append(_missing("lora", f"{VA}.lora_target_modules",
                                f"whether {va.lora_target_modules} exist in the model: no model config",
                                "pass --model-config <model>/config.json"))
        else:
            mt = str(mc.get("model_type", ""))
            known = ARCH_MODULES.get(mt)
            if known is None:
                out.append(_missing("lora", f"{VA}.lora_target_modules",
                                    f"module names for model_type '{mt}' (known: {', '.join(ARCH_MODULES)})",
                                    "check the names against model.named_modules()", {"model_type": mt}))
            else:
                bad = [m for m in va.lora_target_modules if m.split(".")[-1] not in known]
                if bad:
                    out.append(Finding("lora", "error", f"{VA}.lora_target_modules",
                                       f"{bad} are not modules of a {mt} model (it has {', '.join(known)}); peft "
                                       "would fail at the start of stage 2.",
                                       "use names from that list, or null for every linear projection",
                                       {"model_type": mt, "unknown": bad, "known": list(known)}))
    if not out:
        out.append(Finding("lora", "info", f"{VA}.lora_alpha",
                           f"LoRA r={va.lora_r}, alpha={va.lora_alpha:g} (scale {scale:.3g}), targets "
                           f"{va.lora_target_modules or 'every linear projection'}.", "", ev))
    return out


# 7 ------------------------------------------------------------------------------------------------
@rule("alignment")
def check_alignment(config: Config, facts: Facts) -> list[Finding]:
    """Similarity threshold as a cosine; pivot count against the identical-token pairs available."""
    al = config.alignment
    out: list[Finding] = []
    lo, hi = THRESHOLD_RANGE
    t = al.similarity_threshold
    if not lo <= t <= hi:
        what = ("accepts anti-correlated pairs, so almost every target token counts as aligned" if t < lo else
                "only near-identical representations pass, so most tokens fall back")
        out.append(Finding("similarity_threshold", "warning", "alignment.similarity_threshold",
                           f"similarity_threshold {t:g} is a cosine of relative representations outside "
                           f"[{lo}, {hi}]: it {what}.",
                           "pick it from align/summary.json's similarity histogram; 0.3–0.7 is typical",
                           {"similarity_threshold": t, "range": [lo, hi]}))
    if facts.identical_pairs is None:
        out.append(_missing("pivot_count", "alignment.pivot_count",
                            f"pivot_count {al.pivot_count:,} against the identical-token pairs: not in the statistics",
                            "pass --corpus-stats with identical_pairs (the align stage's summary)",
                            {"pivot_count": al.pivot_count}))
    elif al.pivot_count > facts.identical_pairs:
        out.append(Finding("pivot_count", "error", "alignment.pivot_count",
                           f"pivot_count {al.pivot_count:,} > {facts.identical_pairs:,} identical-token pairs available.",
                           f"set pivot_count ≤ {facts.identical_pairs:,} (paper: 300)",
                           {"pivot_count": al.pivot_count, "identical_pairs": facts.identical_pairs}))
    return out


# 8 ------------------------------------------------------------------------------------------------
@rule("eval_leak")
def check_eval_leak(config: Config, facts: Facts) -> list[Finding]:
    """Evaluation data that is the training data."""
    ev_cfg, corpus = config.evaluation, config.corpus
    if not ev_cfg.enabled:
        return []
    out: list[Finding] = []
    train = {str(Path(p).resolve()) for p in corpus.inputs}

    def trains_on(p: str) -> bool:
        rp = Path(p).resolve()
        return str(rp) in train or any(rp.match(t) for t in train if any(c in t for c in "*?["))

    if "heldout" in ev_cfg.datasets and not corpus.heldout_inputs and corpus.heldout_fraction == 0:
        out.append(Finding("eval_leak", "error", "corpus.heldout_fraction",
                           "evaluation uses 'heldout' but heldout_fraction is 0 and no heldout_inputs are given: "
                           "bits per byte would be measured on training text.",
                           "set corpus.heldout_fraction (e.g. 0.01) or corpus.heldout_inputs",
                           {"heldout_fraction": 0.0}))
    leaked = [p for p in ev_cfg.datasets if p not in ("heldout", "pubmedqa") and trains_on(p)]
    leaked += [p for p in corpus.heldout_inputs if trains_on(p)]
    if ev_cfg.qa.enabled and ev_cfg.qa.file and trains_on(ev_cfg.qa.file):
        leaked.append(ev_cfg.qa.file)
    if leaked:
        out.append(Finding("eval_leak", "error", "evaluation.datasets",
                           f"evaluation files are also training inputs (corpus.inputs): {leaked}.",
                           "remove them from corpus.inputs or evaluate on other files",
                           {"files": leaked}))
    return out


# 9 ------------------------------------------------------------------------------------------------
@rule("max_positions")
def check_max_positions(config: Config, facts: Facts) -> list[Finding]:
    """max_seq_length against the model's maximum positions."""
    L = config.vocab_adaptation.max_seq_length
    mc = facts.model_config
    if mc is None:
        return [_missing("max_positions", f"{VA}.max_seq_length",
                         f"max_seq_length {L:,} against the model's maximum positions: no model config",
                         "pass --model-config <model>/config.json")]
    P = _cfg(mc, "max_position_embeddings", "n_positions", "max_sequence_length", "seq_length")
    if P is None:
        return [_missing("max_positions", f"{VA}.max_seq_length", "maximum positions: not in the model config",
                         "check the model card")]
    ev = {"max_seq_length": L, "max_position_embeddings": int(P)}
    if L > int(P):
        return [Finding("max_positions", "error", f"{VA}.max_seq_length",
                        f"max_seq_length {L:,} > the model's {int(P):,} positions.",
                        f"set max_seq_length ≤ {int(P):,}", ev)]
    return []


# 10 -----------------------------------------------------------------------------------------------
@rule("fasttext_ngrams")
def check_fasttext_ngrams(config: Config, facts: Facts) -> list[Finding]:
    """Character n-grams over token-id corpora share subwords between unrelated ids ('123' in '4123')."""
    ft = config.embedding.fasttext
    if ft.minn == 0 and ft.maxn == 0:
        return []
    return [Finding("fasttext_ngrams", "warning", "embedding.fasttext.minn",
                    f"fastText character n-grams are on (minn {ft.minn}, maxn {ft.maxn}) over a corpus of numeric "
                    "token ids: ids that share digits (e.g. 123 and 4123) share vectors, which is noise.",
                    "set embedding.fasttext.minn: 0 and maxn: 0", {"minn": ft.minn, "maxn": ft.maxn})]


# 11 -----------------------------------------------------------------------------------------------
@rule("precision")
def check_precision(config: Config, facts: Facts) -> list[Finding]:
    """bf16 requested where unsupported; flash-attn requested but not installed."""
    va = config.vocab_adaptation
    out: list[Finding] = []
    if va.bf16:
        if not facts.has_gpu:
            out.append(Finding("bf16", "info", f"{VA}.bf16",
                               "bf16 is requested but no GPU is visible here: a run on this machine falls back to "
                               "fp32 (with a notice).", "pass --gpu-memory GB to audit for the GPU machine",
                               {"cuda_available": False}))
        elif facts.bf16_supported is False:
            out.append(Finding("bf16", "warning", f"{VA}.bf16",
                               "bf16 is requested but this GPU does not support it (pre-Ampere); training runs "
                               "in fp32, about twice the activation memory.",
                               "run on an Ampere or newer GPU, or set bf16: false knowingly",
                               {"bf16_supported": False}))
    elif facts.has_gpu or va.stage2_steps or va.stage1_steps:
        out.append(Finding("bf16", "info", f"{VA}.bf16",
                           "bf16 is off: fp32 training on a GPU that has bf16 (A100, H100) is slower and needs "
                           "about twice the activation memory.",
                           "set bf16: true on Ampere or newer GPUs", {"bf16": False}))
    if va.use_flash_attn and not facts.flash_attn_installed:
        out.append(Finding("flash_attn", "warning", f"{VA}.use_flash_attn",
                           "use_flash_attn is on but the flash_attn package is not installed here; the run "
                           "would use SDPA attention instead.",
                           "pip install flash-attn on the GPU machine, or set use_flash_attn: false",
                           {"flash_attn_installed": False}))
    return out


# 12 -----------------------------------------------------------------------------------------------
@rule("batch_and_steps")
def check_batch_and_steps(config: Config, facts: Facts) -> list[Finding]:
    """Tiny effective batch and stages with zero steps."""
    va = config.vocab_adaptation
    out: list[Finding] = []
    seqs = sequences_per_step(config, facts)
    tokens = seqs * va.max_seq_length
    if va.enabled and (seqs < TINY_BATCH_SEQUENCES or tokens < TINY_BATCH_TOKENS):
        out.append(Finding("tiny_batch", "warning", f"{VA}.gradient_accumulation",
                           f"effective batch is {seqs} sequences = {_n(tokens)} tokens per optimiser step "
                           f"(< {TINY_BATCH_SEQUENCES} sequences or < {_n(TINY_BATCH_TOKENS)} tokens): noisy "
                           "gradients.", "raise gradient_accumulation",
                           {"sequences_per_step": seqs, "tokens_per_step": tokens}))
    if va.enabled:
        if va.stage1_steps == 0 and va.stage2_steps == 0:
            out.append(Finding("zero_steps", "warning", f"{VA}.stage1_steps",
                               "both stages have 0 steps but vocab_adaptation is enabled: the transplanted model "
                               "is never trained.", "set stage1_steps/stage2_steps, or enabled: false",
                               {"stage1_steps": 0, "stage2_steps": 0}))
        elif va.stage1_steps == 0:
            out.append(Finding("zero_steps", "warning", f"{VA}.stage1_steps",
                               "stage 1 has 0 steps: stage 2 updates the whole model while the new embedding rows "
                               "are still untrained, which disturbs the transformer layers.",
                               "give stage 1 steps (paper: 2,500)", {"stage1_steps": 0}))
        elif va.stage2_steps == 0:
            out.append(Finding("zero_steps", "info", f"{VA}.stage2_steps",
                               "stage 2 has 0 steps: only embeddings and head are trained.", "",
                               {"stage2_steps": 0}))
    return out


@functools.lru_cache(maxsize=None)
def _enum_values_cached(module: str, cls: str) -> tuple[str, ...]:
    # Importing transformers.training_args costs ~8 s of CPU (it pulls in torch and the Trainer), so
    # the enum's string members are read from its source with ast; the import is the fallback.
    try:
        spec = importlib.util.find_spec(module)
        tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))  # type: ignore[union-attr, arg-type]
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and node.name == cls:
                values = tuple(s.value.value for s in node.body if isinstance(s, ast.Assign)
                               and isinstance(s.value, ast.Constant) and isinstance(s.value.value, str))
                if values:
                    return values
    except (ImportError, AttributeError, OSError, SyntaxError, TypeError):
        pass
    return tuple(m.value for m in getattr(importlib.import_module(module), cls))


def _enum_values(module: str, cls: str) -> list[str]:
    return list(_enum_values_cached(module, cls))


@rule("names")
def check_names(config: Config, facts: Facts) -> list[Finding]:
    """Optimiser and scheduler names that transformers does not know (the Trainer would fail at start)."""
    va = config.vocab_adaptation
    out: list[Finding] = []
    optimizers = _enum_values("transformers.training_args", "OptimizerNames")

    for key, name in (("stage1_optimizer", va.stage1_optimizer), ("stage2_optimizer", va.stage2_optimizer)):
        if name not in optimizers:
            near = difflib.get_close_matches(name, optimizers, n=1)
            out.append(Finding("optimizer_name", "error", f"{VA}.{key}",
                               f"{key} '{name}' is not a transformers optimiser name"
                               + (f"; did you mean '{near[0]}'?" if near else "."),
                               f"use one of transformers OptimizerNames, e.g. {near[0] if near else 'adamw_torch'}",
                               {"name": name}))
    schedulers = _enum_values("transformers.trainer_utils", "SchedulerType")
    if va.lr_scheduler not in schedulers:
        near = difflib.get_close_matches(va.lr_scheduler, schedulers, n=1)
        out.append(Finding("scheduler_name", "error", f"{VA}.lr_scheduler",
                           f"lr_scheduler '{va.lr_scheduler}' is not a transformers scheduler name.",
                           f"use one of {', '.join(schedulers)}", {"name": va.lr_scheduler}))
    return out


# --------------------------------------------------------------------------------------------------
# running and printing


def _local_model_config(config: Config) -> tuple[Optional[dict], Optional[str]]:
    src = config.models.source_model
    if src and (Path(src) / "config.json").is_file():
        try:
            return _read_model_config(src)
        except InputError as e:
            log.warning("ignoring the source model's config: %s", e)
    return None, None


def audit(config: Config, facts: Facts | None = None) -> list[Finding]:
    """Run every rule in RULES over a config.

    Args:
        config: a validated Config.
        facts: what is known besides the config (gather_facts); None = nothing. When it holds no model
            config and models.source_model is a local directory, that directory's config.json is used.
    Returns:
        Findings, errors first, then warnings, then info, each group in rule order.
    """
    facts = facts or Facts()
    if facts.model_config is None:
        mc, path = _local_model_config(config)
        if mc is not None:
            facts = Facts(**{**facts.__dict__, "model_config": mc, "model_config_path": path})
    findings: list[Finding] = []
    for rule_id, fn in RULES.items():
        found = fn(config, facts)
        log.debug("audit rule %s: %d finding(s)", rule_id, len(found))
        findings.extend(found)
    order = {s: i for i, s in enumerate(SEVERITIES)}
    return sorted(findings, key=lambda f: order[f.severity])  # stable: rule order within a severity


def summarize(findings: list[Finding]) -> dict[str, int]:
    return {s: sum(f.severity == s for f in findings) for s in SEVERITIES}


def format_text(findings: list[Finding], config_path: str, width: int = 110) -> str:
    """A table: severity, config key, finding (wrapped), recommendation after an arrow; then a summary."""
    counts = summarize(findings)
    verdict = "FAIL" if counts["error"] else ("OK with warnings" if counts["warning"] else "OK")
    summary = (f"{config_path}: {counts['error']} error(s), {counts['warning']} warning(s), "
               f"{counts['info']} info — {verdict}")
    if not findings:
        return f"audit {summary}"
    keys = [f.key.replace(f"{VA}.", "va.") for f in findings]
    kw = min(max(len(k) for k in keys), 34)
    sw = 8
    text_w = max(40, width - sw - kw - 4)
    lines = [f"audit of {config_path}  (va. = vocab_adaptation.)", "",
             f"{'SEVERITY':<{sw}}  {'KEY':<{kw}}  FINDING", f"{'-' * sw}  {'-' * kw}  {'-' * text_w}"]
    pad = " " * (sw + kw + 4)
    for f, k in zip(findings, keys):
        body = textwrap.wrap(f.message, text_w) or [""]
        if f.recommendation:
            body += textwrap.wrap("→ " + f.recommendation, text_w, subsequent_indent="  ")
        first = f"{f.severity.upper():<{sw}}  {k:<{kw}}  "
        if len(k) > kw:
            lines.append(f"{f.severity.upper():<{sw}}  {k}")
            first = pad
        lines.append(first + body[0])
        lines.extend(pad + b for b in body[1:])
    lines += ["", summary]
    return "\n".join(lines)
