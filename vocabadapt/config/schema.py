"""The config schema: one pydantic model per section, the only place a default lives.

A research config of the layout this tool replaces loads unchanged (sections `models`, `corpus`,
`term_mining`, `embedding`, `alignment`, `tokenization`, `evaluation`, `pipeline`,
`vocab_adaptation`); the extra keys vocabadapt needs all have defaults. Loading (YAML, `${VAR}`,
`--set`, messages with key paths) lives in vocabadapt.config.loading; the reference docs are
generated from this schema by vocabadapt.config.docs.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Optional, Union

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

# Marker put in a field's json_schema_extra: the value is a filesystem path (resolved against the
# config folder) or, for "path_or_id", a path when it exists locally and a hub id otherwise.
PATH: dict[str, Any] = {"path": "path"}
PATH_OR_ID: dict[str, Any] = {"path": "path_or_id"}


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# --------------------------------------------------------------------------------------------------
# lists of module names (LoRA targets)

# peft's own word for "every linear layer except the output head".
ALL_LINEAR = "all-linear"
# A module name as peft matches it: a leaf name (q_proj) or a dotted suffix of the full name
# (self_attn.q_proj, layers.0.mlp.up_proj). Regular expressions are not accepted: they would silently
# match nothing or too much, and the names are checked against the model.
_MODULE_NAME = re.compile(r"[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*")


def module_names(value: Any) -> Any:
    """A list of module names as configs write it -> None, "all-linear" or a list of names.

    Accepts a YAML list, one comma-separated string ("q_proj,k_proj, v_proj", as the research configs
    write it), "all-linear" (peft) or null. Raises ValueError (a config problem naming the value) for an
    empty list, an empty name, a duplicate, a regular expression, or "all-linear" mixed with names.
    """
    if value is None:
        return None
    if isinstance(value, str):
        if value.strip() == ALL_LINEAR:
            return ALL_LINEAR
        names = [part.strip() for part in value.split(",")]
    elif isinstance(value, (list, tuple)):
        if not all(isinstance(v, str) for v in value):
            bad = next(v for v in value if not isinstance(v, str))
            raise ValueError(f"module names are text, got {type(bad).__name__} {bad!r}")
        names = [v.strip() for v in value]
    else:
        raise ValueError(
            f"expected a list of module names or one comma-separated string, got {type(value).__name__} {value!r}"
        )
    if not names or names == [""]:
        raise ValueError(f"no module names given; write null (or '{ALL_LINEAR}') for every linear projection")
    if ALL_LINEAR in names:
        raise ValueError(f"'{ALL_LINEAR}' stands alone; write it without other names, or list the names only")
    for n in names:
        if not n:
            raise ValueError(f"an empty module name in {value!r}; remove the extra comma")
        if not _MODULE_NAME.fullmatch(n):
            raise ValueError(
                f"{n!r} is not a module name (letters, digits, _ and dots, e.g. q_proj or "
                f"self_attn.q_proj); regular expressions are not supported: list the names"
            )
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"{dupes} listed twice; list each module once")
    return names


ModuleNames = Annotated[Union[Literal["all-linear"], list[str], None], BeforeValidator(module_names)]


# --------------------------------------------------------------------------------------------------
# models


class TokenizerTrainSpec(BaseModel):
    """Train the target tokenizer on the run's training corpus instead of loading one."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["bpe", "unigram"] = Field("bpe", description="Tokenizer model: byte-level BPE or Unigram.")
    vocab_size: int = Field(32000, ge=256, description="Vocabulary size including special tokens.")
    min_frequency: int = Field(2, ge=1, description="BPE: minimum pair frequency to merge.")
    special_tokens: list[str] = Field(
        default_factory=lambda: ["<|endoftext|>", "<|pad|>"],
        description="Special tokens; the first is bos/eos, the second pad.",
    )


class TargetTokenizerSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    train: TokenizerTrainSpec = Field(description="How to train the target tokenizer.")


class ModelsConfig(Section):
    source_model: Optional[str] = Field(
        None,
        description="Source causal LM: local directory, Hugging Face id, or a .gguf file (dequantised once into a "
        "cached HF directory); `pkg:<package>/<file>` names a file inside an installed Python package.",
        json_schema_extra=PATH_OR_ID,
    )
    source_tokenizer: Optional[str] = Field(
        None,
        description="Source tokenizer (path, id, .gguf file or pkg: path); null = the source model's own tokenizer.",
        json_schema_extra=PATH_OR_ID,
    )
    target_tokenizer: Union[str, TargetTokenizerSpec, None] = Field(
        None,
        description="Target tokenizer: path or id, or {train: {...}} to train one on the corpus.",
        json_schema_extra=PATH_OR_ID,
    )
    trust_remote_code: bool = Field(
        False, description="Allow models/tokenizers that ship their own Python code (off: refuse them)."
    )
    allow_pickle: bool = Field(
        False, description="Allow loading pickle (.bin) weights (with weights_only=True); off: safetensors only."
    )


# --------------------------------------------------------------------------------------------------
# corpus and tokenization


class CorpusConfig(Section):
    inputs: list[str] = Field(
        default_factory=list,
        description="Training text files: .jsonl/.txt/.parquet, optionally .gz; globs allowed.",
        json_schema_extra=PATH,
    )
    heldout_inputs: list[str] = Field(
        default_factory=list,
        description="Separate held-out text files; when given, heldout_fraction is not used.",
        json_schema_extra=PATH,
    )
    text_fields: list[str] = Field(
        default_factory=lambda: ["text"],
        description="JSONL/parquet fields joined (newline) to make a document's text.",
    )
    txt_document: Literal["block", "line"] = Field(
        "block", description=".txt files: one document per blank-line separated block, or per line."
    )
    size_gb: float = Field(0.0, ge=0, description="Corpus size to use in GB (1e9 bytes); 0 = all of it.")
    byte_budget: int = Field(0, ge=0, description="Training text bytes to use; 0 = derive from size_gb.")
    deduplicate: bool = Field(True, description="Drop exact duplicates (whitespace-normalised hash).")
    hash_name: str = Field("sha1", description="hashlib algorithm for dedup and the held-out split.")
    heldout_fraction: float = Field(
        0.01, ge=0.0, lt=1.0, description="Share of documents held out (chosen by document hash)."
    )
    heldout_max_bytes: int = Field(
        2_000_000, ge=0, description="Cap on held-out bytes kept for evaluation (0 = no cap)."
    )

    @field_validator("hash_name")
    @classmethod
    def _known_hash(cls, v: str) -> str:
        if v not in hashlib.algorithms_available:
            near = difflib.get_close_matches(v, sorted(hashlib.algorithms_guaranteed), n=1)
            hint = f" (did you mean '{near[0]}'?)" if near else ""
            raise ValueError(f"unknown hash '{v}'{hint}; use one of {sorted(hashlib.algorithms_guaranteed)}")
        return v

    def budget_bytes(self) -> int:
        """Training bytes to read; 0 means no limit."""
        return self.byte_budget or int(self.size_gb * 1e9)


class TokenizationConfig(Section):
    workers: Optional[int] = Field(None, ge=1, description="Tokenizer processes; null = CPU count.")
    cache_dir: Optional[str] = Field(
        None, description="Hugging Face cache folder for models/tokenizers; null = HF default.", json_schema_extra=PATH
    )
    min_line_length: int = Field(0, ge=0, description="Documents shorter than this many characters are dropped.")
    batch_size: int = Field(1000, ge=1, description="Documents per tokenizer batch.")
    shard_tokens: int = Field(50_000_000, ge=1000, description="Token ids per uint32 shard file.")


# --------------------------------------------------------------------------------------------------
# term mining, embeddings, alignment, transplant


class TermMiningConfig(Section):
    enabled: bool = Field(True, description="Mine frequent domain words into terms/terms.txt.")
    top_k: int = Field(1000, ge=1, description="Number of terms to keep.")
    min_frequency: int = Field(5, ge=1, description="Minimum corpus count of a term (both modes).")
    use_tfidf: bool = Field(True, description="Rank by TF-IDF against document frequency; false = by count.")
    add_to_target: bool = Field(False, description="Add mined terms to the target tokenizer as whole tokens.")


class FastTextConfig(Section):
    epochs: int = Field(5, ge=1, description="Training epochs over the token-id corpus.")
    mincount: int = Field(1, ge=1, description="Minimum count of a token id to get a vector.")
    lr: float = Field(0.05, gt=0, description="Learning rate.")
    thread: Optional[int] = Field(None, ge=1, description="Threads; null = CPU count (use 1 for bitwise determinism).")
    dim: int = Field(100, ge=2, description="Vector dimension.")
    window: int = Field(5, ge=1, description="Context window (tokens each side).")
    minn: int = Field(0, ge=0, description="Min character n-gram; 0 = off (n-grams of numeric ids are noise).")
    maxn: int = Field(0, ge=0, description="Max character n-gram; 0 = off.")
    model: Literal["skipgram", "cbow"] = Field("skipgram", description="fastText objective.")
    neg: int = Field(5, ge=1, description="Negative samples.")
    seed: int = Field(0, ge=0, description="fastText seed (bitwise reproducible with thread: 1).")


class EmbeddingConfig(Section):
    enabled: Union[Literal["auto"], bool] = Field(
        "auto",
        description="Train co-occurrence vectors (embed stage) and align with them: auto = only when "
        "alignment.init reads them (tokalign, soft, null); true = always (the align summary then reports the "
        "alignment); false = never (refused with an init that needs them).",
    )
    backend: Literal["fasttext"] = Field("fasttext", description="Token co-occurrence embedding trainer.")
    fasttext: FastTextConfig = Field(default_factory=FastTextConfig, description="fastText options.")


# The settings that shape only the vector alignment (pivots, threshold, top-k): they have no effect when no
# vectors are trained (Config.vector_plan), so align's hash and the audit leave them out then.
VECTOR_ALIGNMENT_KEYS = (
    "alignment.pivot_count",
    "alignment.pivot_strategy",
    "alignment.similarity_threshold",
    "alignment.method",
    "alignment.top_k",
    "alignment.soft_temperature",
)


@dataclass(frozen=True)
class VectorPlan:
    """Whether the embed stage trains vectors (and align uses them), and why, in words for the user."""

    trained: bool
    reason: str


class AlignmentConfig(Section):
    pivot_count: int = Field(300, ge=1, description="Identical-token pairs used as pivots (paper: 300).")
    pivot_strategy: Literal["random", "frequent"] = Field(
        "random", description="How pivots are chosen among identical pairs (random: the paper; seeded)."
    )
    similarity_threshold: float = Field(
        0.5,
        ge=-1.0,
        le=1.0,
        description="Cosine of relative representations at or above which a token counts as aligned.",
    )
    method: Literal["hard", "soft"] = Field(
        "hard", description="hard: copy the top-1 source row (paper); soft: softmax over top-k sources."
    )
    top_k: int = Field(5, ge=1, description="Candidates kept per target token (soft mapping, precision@k).")
    soft_temperature: float = Field(0.05, gt=0, description="Softmax temperature over top-k cosines (soft).")
    fallback: Literal["fvt", "mean", "random", "zero"] = Field(
        "fvt",
        description="Rows for tokens below the threshold or unseen: fvt (then mean), mean, random or zero.",
    )
    init: Optional[str] = Field(
        "fvt_prior",
        description="Row initialiser for every row (fvt_prior, tokalign, soft, fvt, mean, random); null = the "
        "mapping's per-token method (TokAlign match above the threshold, else the fallback).",
    )
    calibration_bytes: int = Field(
        2_000_000,
        ge=0,
        description="Training text (bytes, corpus order) that initialisers with a refine step (fvt_prior) count "
        "tokens in and run the source model on.",
    )
    calibration_tokens: int = Field(
        4096,
        ge=16,
        description="Source tokens run through the source model to fit fvt_prior's bias direction (about 15 s "
        "for a 135M model on 2 idle CPU cores).",
    )
    norm_match: bool = Field(False, description="Rescale each built row to the mean norm of its source rows.")
    block_size: int = Field(4096, ge=16, description="Target rows per similarity block (bounds memory).")
    seed: int = Field(0, description="Seed for pivot choice and random rows.")

    @field_validator("init")
    @classmethod
    def _known_initialiser(cls, v: Optional[str]) -> Optional[str]:
        # Checked against the registry at load, so a typo fails here, not in the fifth stage.
        from ..init import REGISTRY

        if v is not None and v not in REGISTRY:
            near = difflib.get_close_matches(v, list(REGISTRY), n=1)
            hint = f" (did you mean '{near[0]}'?)" if near else ""
            raise ValueError(
                f"unknown initialiser '{v}'{hint}; valid: {', '.join(REGISTRY)}, or null for the "
                f"mapping's per-token method"
            )
        return v


class TransplantConfig(Section):
    pad_to_multiple_of: int = Field(64, ge=1, description="Pad embedding rows to a multiple of this.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="dtype of the written model; auto = the source checkpoint's."
    )


# --------------------------------------------------------------------------------------------------
# training


Objective = Literal["ce", "distill", "distill+ce"]


class DistillConfig(Section):
    """The distillation objective (vocab_adaptation.objective_stage1/2: distill or distill+ce).

    The teacher is the source model (models.source_model) on the source tokenization of the same bytes,
    run live under no_grad; in stage 1 it shares the student's frozen body. Losses (each alone or
    together, by weight; vocabadapt.training.distill.LOSSES): `hidden` = hidden-state MSE at byte
    offsets where both tokenizations end a token, over the teacher's mean square (Token Distillation);
    `chunk` = distance of the log-likelihoods both models give the bytes between two such offsets
    (tokenkit's ALM); `kl` = KL(teacher || student) over the shared vocabulary where the next tokens
    cover the same bytes.
    """

    hidden_weight: float = Field(1.0, ge=0, description="Weight of the hidden-state loss at shared boundaries.")
    chunk_weight: float = Field(1.0, ge=0, description="Weight of the chunk-likelihood loss (ALM).")
    kl_weight: float = Field(0.0, ge=0, description="Weight of the next-token KL over the shared vocabulary.")
    ce_weight: float = Field(1.0, ge=0, description="Weight of the next-token loss under objective distill+ce.")
    hidden_layers: list[int] = Field(
        [-1],
        min_length=1,
        description="hidden_states indices the hidden loss matches (0 = embedding output, -1 = the last "
        "layer after the final norm); the mean over them.",
    )
    temperature: float = Field(1.0, gt=0, description="Temperature of the KL term and of chunk_distance binary_kl.")
    chunk_distance: str = Field(
        "abs",
        description="How chunk log-likelihoods are compared: abs (|log p_s - log p_t|) or binary_kl "
        "(KL of the Bernoulli chunk probabilities at the temperature; ALM's binarised form).",
    )

    @field_validator("chunk_distance")
    @classmethod
    def _known_distance(cls, v: str) -> str:
        from ..training.distill import CHUNK_DISTANCES

        if v not in CHUNK_DISTANCES:
            raise ValueError(f"unknown chunk_distance {v!r} (valid: {', '.join(CHUNK_DISTANCES)})")
        return v


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
    objective_stage1: Objective = Field(
        "ce",
        description="Stage-1 loss: ce (next token), distill (the source model teaches; see distill) or distill+ce.",
    )
    objective_stage2: Objective = Field("ce", description="Stage-2 loss: ce, distill or distill+ce.")
    distill: DistillConfig = Field(default_factory=DistillConfig, description="Distillation losses and weights.")
    train_rows: Literal["all", "new"] = Field(
        "all",
        description="Embedding/head rows trained: all, or new (rows the transplant copied from the source, "
        "identical and special tokens, stay bitwise frozen: gradient mask, no weight decay on the matrices).",
    )
    lr_embeddings: Optional[float] = Field(
        None, gt=0, description="Stage 2: peak rate of the embeddings and head; null = lr_stage2 (one rate)."
    )
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

    @model_validator(mode="after")
    def _distill_has_a_loss(self) -> VocabAdaptationConfig:
        d = self.distill
        for stage, objective in (("stage1", self.objective_stage1), ("stage2", self.objective_stage2)):
            if objective != "ce" and not (d.hidden_weight or d.chunk_weight or d.kl_weight):
                raise ValueError(
                    f"objective_{stage} is {objective} but every distill weight (hidden_weight, chunk_weight, "
                    "kl_weight) is 0: give one a positive weight, or set the objective to ce"
                )
        return self


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


# --------------------------------------------------------------------------------------------------
# evaluation and pipeline


class QAConfig(Section):
    enabled: bool = Field(True, description="Evaluate PubMedQA-format question answering.")
    file: Optional[str] = Field(None, description="PQA-L format JSON/JSONL file.", json_schema_extra=PATH)
    split_ids: Optional[str] = Field(
        None,
        description="JSON file whose keys are the ids to evaluate (e.g. test_ground_truth.json).",
        json_schema_extra=PATH,
    )
    fewshot_file: Optional[str] = Field(None, description="Records for few-shot examples.", json_schema_extra=PATH)
    fewshot_k: int = Field(0, ge=0, description="Few-shot examples per prompt (0 = zero-shot only).")
    bootstrap: int = Field(1000, ge=0, description="Bootstrap resamples for intervals.")


class LmEvalConfig(Section):
    """lm-evaluation-harness tasks run on the source model and every stage's model."""

    tasks: list[str] = Field(
        default_factory=list,
        description="lm-eval task or group names ([] = none), run on every model (the 'lm_eval' evaluation task); "
        "needs `pip install 'vocabadapt[lm-eval]'`.",
    )
    include_path: Optional[str] = Field(
        None,
        description="Folder of your own lm-eval task YAMLs (e.g. dataset_path: json over local files).",
        json_schema_extra=PATH,
    )
    limit: Optional[int] = Field(None, ge=1, description="Documents per task (lm-eval's --limit); null = all.")
    num_fewshot: Optional[int] = Field(
        None, ge=0, description="Few-shot examples (lm-eval's --num_fewshot); null = each task's own default."
    )

    @model_validator(mode="after")
    def _lm_eval_installed(self) -> LmEvalConfig:
        import importlib.util

        if self.tasks and importlib.util.find_spec("lm_eval") is None:
            raise ValueError(
                "evaluation.lm_eval.tasks needs lm-evaluation-harness, which is not installed: "
                "pip install 'vocabadapt[lm-eval]' (or set evaluation.lm_eval.tasks: [])"
            )
        return self


class EvaluationConfig(Section):
    enabled: bool = Field(True, description="Run the evaluate stage.")
    datasets: list[str] = Field(
        default_factory=lambda: ["heldout", "pubmedqa"],
        description="Evaluation tasks (vocabadapt.evaluation.tasks: 'heldout' bits per byte, 'pubmedqa', 'lm_eval') "
        "or paths of text files.",
    )
    max_samples: Optional[int] = Field(None, ge=1, description="Cap on QA questions and held-out documents.")
    qa: QAConfig = Field(default_factory=QAConfig, description="Question answering set.")
    baseline_model: Optional[str] = Field(
        None,
        description="Baseline model; null = the source model with its own tokenizer.",
        json_schema_extra=PATH_OR_ID,
    )
    stride: Optional[int] = Field(
        None, ge=1, description="Tokens scored per window after the first; null = the context (lm-eval's windows)."
    )
    batch_size: int = Field(8, ge=1, description="Sequences per evaluation forward pass.")
    context_length: Optional[int] = Field(
        None, ge=2, description="Tokens per scoring window; null = the model's context (max_position_embeddings)."
    )
    lm_eval: LmEvalConfig = Field(default_factory=LmEvalConfig, description="lm-evaluation-harness tasks.")

    @field_validator("datasets")
    @classmethod
    def _known_tasks(cls, v: list[str]) -> list[str]:
        # Checked against the evaluation task registry at load, so a typo fails here, not after training.
        from ..evaluation import tasks

        bad = [tasks.unknown_message(e) for e in v if e not in tasks.TASKS and not tasks.looks_like_path(e)]
        if bad:
            raise ValueError("; ".join(bad))
        return v

    @field_validator("qa", mode="before")
    @classmethod
    def _qa_bool(cls, v: Any) -> Any:
        # Research configs write `qa: true|false`; that is the `enabled` switch with defaults.
        return {"enabled": v} if isinstance(v, bool) else v


class PipelineConfig(Section):
    run_root: str = Field("runs", description="Folder that holds run directories.", json_schema_extra=PATH)
    max_retries: int = Field(
        2, ge=0, description="Retries of a model or tokenizer download after a network error (never a whole stage)."
    )
    retry_backoff: float = Field(5.0, ge=0, description="Seconds before a download's first retry; doubles each time.")
    torch_threads: Optional[int] = Field(
        None, ge=1, description="CPU threads for torch (null = torch's default); 1 suits tiny models on few cores."
    )
    checkpoint_fingerprints: Literal["sha256", "size"] = Field(
        "sha256", description="How outputs are fingerprinted in the manifest."
    )


class Config(BaseModel):
    """The whole config. Sections may be omitted; every key has a default except the model paths."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    models: ModelsConfig = Field(default_factory=ModelsConfig, description="Models and tokenizers.")
    corpus: CorpusConfig = Field(default_factory=CorpusConfig, description="Training and held-out text.")
    term_mining: TermMiningConfig = Field(default_factory=TermMiningConfig, description="Domain term mining.")
    embedding: EmbeddingConfig = Field(default_factory=EmbeddingConfig, description="Token embeddings.")
    alignment: AlignmentConfig = Field(default_factory=AlignmentConfig, description="Token alignment.")
    transplant: TransplantConfig = Field(default_factory=TransplantConfig, description="Model rebuild.")
    tokenization: TokenizationConfig = Field(default_factory=TokenizationConfig, description="Tokenization.")
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig, description="Evaluation.")
    pipeline: PipelineConfig = Field(default_factory=PipelineConfig, description="Run directory, retries.")
    vocab_adaptation: VocabAdaptationConfig = Field(
        default_factory=VocabAdaptationConfig, description="Two-stage training."
    )
    embedding_warmup: EmbeddingWarmupConfig = Field(
        default_factory=EmbeddingWarmupConfig,
        description="Embedding-and-head-only warm-up (stage 1 with its own settings).",
    )

    @model_validator(mode="after")
    def _cross_checks(self) -> Config:
        ft = self.embedding.fasttext
        if ft.maxn < ft.minn:
            raise ValueError(f"embedding.fasttext.maxn ({ft.maxn}) must be >= minn ({ft.minn})")
        init = self.alignment.init
        if self.embedding.enabled is False and _reads_vectors(init):
            raise ValueError(
                f"embedding.enabled is false but alignment.init = {_init_name(init)} reads the vector alignment "
                "(aligned tokens from co-occurrence vectors): set embedding.enabled: auto (or true) to train the "
                "vectors, or choose an alignment.init that reads none (fvt_prior, fvt, mean, random)"
            )
        if self.embedding_warmup.enabled and self.vocab_adaptation.enabled:
            raise ValueError(
                "embedding_warmup.enabled and vocab_adaptation.enabled are both true: the warm-up is the "
                "embedding-and-head-only stage (stage 1 with its own settings), so stage 1 would train the same "
                "rows twice. Set vocab_adaptation.enabled: false to train the warm-up alone, or "
                "embedding_warmup.enabled: false to train the two stages (to warm up and then train the whole "
                "model, put the warm-up's steps and lr in vocab_adaptation.stage1_steps and lr_stage1)"
            )
        return self

    def stage_training(self, stage: str) -> VocabAdaptationConfig:
        """vocab_adaptation as training stage `stage` ("stage1" | "stage2") runs it.

        With embedding_warmup enabled, stage 1 is the warm-up: its keys replace their vocab_adaptation
        counterparts (see EmbeddingWarmupConfig). Otherwise, and for stage 2, vocab_adaptation itself.
        """
        overrides = self.embedding_warmup.stage1_overrides() if stage == "stage1" else {}
        return self.vocab_adaptation.model_copy(update=overrides) if overrides else self.vocab_adaptation

    def vector_plan(self) -> VectorPlan:
        """Whether co-occurrence vectors are trained (embed) and aligned with (align), and why.

        `embedding.enabled: auto` trains them only for an alignment.init that reads them
        (vocabadapt.init.READS_VECTORS); true and false decide alone (false with such an init is refused at
        load). The embed and align stages, their fingerprints and the audit all ask this one method.
        """
        enabled, init = self.embedding.enabled, _init_name(self.alignment.init)
        if enabled == "auto":
            if _reads_vectors(self.alignment.init):
                return VectorPlan(True, f"alignment.init = {init} reads the vector alignment")
            return VectorPlan(False, f"alignment.init = {init} reads no vectors (embedding.enabled: auto)")
        if enabled:
            return VectorPlan(True, "embedding.enabled: true")
        return VectorPlan(False, f"embedding.enabled: false (alignment.init = {init} reads no vectors)")

    # --- helpers used across stages -------------------------------------------------------------
    def section_hash(self, keys: tuple[str, ...] | list[str], facts: dict[str, Any] | None = None) -> str:
        """sha256 of the config values under `keys` (dotted section or key paths), for the manifest.

        `facts` (values derived from the config, e.g. whether vectors are trained) join the hash when given;
        without them the hash is that of the keys alone.
        """
        dumped = self.model_dump(mode="json")
        picked: dict[str, Any] = {k: _get_dotted(dumped, k) for k in sorted(keys)}
        if facts:
            picked = {"keys": picked, "facts": facts}
        return hashlib.sha256(json.dumps(picked, sort_keys=True).encode()).hexdigest()

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False, allow_unicode=True)


def _reads_vectors(init: Optional[str]) -> bool:
    from ..init import reads_vectors

    return reads_vectors(init)


def _init_name(init: Optional[str]) -> str:
    return "null" if init is None else init


def _get_dotted(d: dict, key: str) -> Any:
    cur: Any = d
    for part in key.split("."):
        cur = cur[part]
    return cur
