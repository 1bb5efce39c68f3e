"""The config schema: one pydantic model per section, the only place a default lives.

A research config of the layout this tool replaces loads unchanged (sections `models`, `corpus`,
`term_mining`, `embedding`, `alignment`, `tokenization`, `evaluation`, `pipeline`,
`vocab_adaptation`); the extra keys vocabadapt needs all have defaults. Loading does, in order:

1. parse YAML with floats as YAML 1.2 reads them (`5e-5` is a float, not a string);
2. expand `${VAR}` and `${VAR:-default}` in string values;
3. apply `--set section.key=value` overrides (values parsed as YAML);
4. validate; every problem of the file is collected and reported together, each with its key path,
   its line in the file, and for a misspelt key the nearest valid key;
5. resolve relative paths against the config file's folder.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import ConfigError

# Marker put in a field's json_schema_extra: the value is a filesystem path (resolved against the
# config folder) or, for "path_or_id", a path when it exists locally and a hub id otherwise.
PATH = {"path": "path"}
PATH_OR_ID = {"path": "path_or_id"}


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


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
        None, description="Source causal LM: local directory or Hugging Face id.", json_schema_extra=PATH_OR_ID
    )
    source_tokenizer: Optional[str] = Field(
        None,
        description="Source tokenizer (path or id); null = the source model's own tokenizer.",
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
    backend: Literal["fasttext"] = Field("fasttext", description="Token co-occurrence embedding trainer.")
    fasttext: FastTextConfig = Field(default_factory=FastTextConfig, description="fastText options.")


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
        None, description="Row initialiser for every row (tokalign, soft, fvt, mean, random); null = per-token method."
    )
    norm_match: bool = Field(False, description="Rescale each built row to the mean norm of its source rows.")
    block_size: int = Field(4096, ge=16, description="Target rows per similarity block (bounds memory).")
    seed: int = Field(0, description="Seed for pivot choice and random rows.")


class TransplantConfig(Section):
    pad_to_multiple_of: int = Field(64, ge=1, description="Pad embedding rows to a multiple of this.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="dtype of the written model; auto = the source checkpoint's."
    )


# --------------------------------------------------------------------------------------------------
# training


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
    stage2_use_lora: bool = Field(False, description="Stage 2 trains LoRA adapters (+ embeddings/head), merged at the end.")
    stage2_optimizer: str = Field("adamw_torch", description="transformers optimiser name for stage 2.")
    stage1_optimizer: str = Field("adamw_torch", description="transformers optimiser name for stage 1.")
    lora_r: int = Field(64, ge=1, description="LoRA rank.")
    lora_alpha: float = Field(128, gt=0, description="LoRA alpha (scale = alpha / r).")
    lora_dropout: float = Field(0.05, ge=0, lt=1, description="LoRA dropout.")
    lora_target_modules: Optional[list[str]] = Field(
        None, description="Module names for LoRA; null = every linear projection of the architecture."
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
        None, description="accelerate config file (DDP, FSDP, DeepSpeed) passed to `accelerate launch`.",
        json_schema_extra=PATH,
    )


# --------------------------------------------------------------------------------------------------
# evaluation and pipeline


class QAConfig(Section):
    enabled: bool = Field(True, description="Evaluate PubMedQA-format question answering.")
    file: Optional[str] = Field(None, description="PQA-L format JSON/JSONL file.", json_schema_extra=PATH)
    split_ids: Optional[str] = Field(
        None, description="JSON file whose keys are the ids to evaluate (e.g. test_ground_truth.json).", json_schema_extra=PATH
    )
    fewshot_file: Optional[str] = Field(None, description="Records for few-shot examples.", json_schema_extra=PATH)
    fewshot_k: int = Field(0, ge=0, description="Few-shot examples per prompt (0 = zero-shot only).")
    bootstrap: int = Field(1000, ge=0, description="Bootstrap resamples for intervals.")


class EvaluationConfig(Section):
    enabled: bool = Field(True, description="Run the evaluate stage.")
    datasets: list[str] = Field(
        default_factory=lambda: ["heldout", "pubmedqa"],
        description="What to evaluate: 'heldout' (bits per byte), 'pubmedqa', or paths of extra text files.",
    )
    max_samples: Optional[int] = Field(None, ge=1, description="Cap on QA questions and held-out documents.")
    qa: QAConfig = Field(default_factory=QAConfig, description="Question answering set.")
    baseline_model: Optional[str] = Field(
        None, description="Baseline model; null = the source model with its own tokenizer.", json_schema_extra=PATH_OR_ID
    )
    stride: Optional[int] = Field(None, ge=1, description="Sliding-window stride in tokens; null = half the context.")
    batch_size: int = Field(8, ge=1, description="Sequences per evaluation forward pass.")
    context_length: Optional[int] = Field(
        None, ge=2, description="Tokens per scoring window; null = the model's context (max_position_embeddings)."
    )

    @field_validator("qa", mode="before")
    @classmethod
    def _qa_bool(cls, v: Any) -> Any:
        # Research configs write `qa: true|false`; that is the `enabled` switch with defaults.
        return {"enabled": v} if isinstance(v, bool) else v


class PipelineConfig(Section):
    run_root: str = Field("runs", description="Folder that holds run directories.", json_schema_extra=PATH)
    max_retries: int = Field(2, ge=0, description="Retries of a stage after a transient error.")
    retry_backoff: float = Field(5.0, ge=0, description="Seconds before the first retry; doubles each time.")
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

    @model_validator(mode="after")
    def _cross_checks(self) -> "Config":
        ft = self.embedding.fasttext
        if ft.maxn < ft.minn:
            raise ValueError(f"embedding.fasttext.maxn ({ft.maxn}) must be >= minn ({ft.minn})")
        return self

    # --- helpers used across stages -------------------------------------------------------------
    def section_hash(self, keys: tuple[str, ...] | list[str]) -> str:
        """sha256 of the config values under `keys` (dotted section or key paths), for the manifest."""
        dumped = self.model_dump(mode="json")
        picked = {k: _get_dotted(dumped, k) for k in sorted(keys)}
        return hashlib.sha256(json.dumps(picked, sort_keys=True).encode()).hexdigest()

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False, allow_unicode=True)


def _get_dotted(d: dict, key: str) -> Any:
    cur: Any = d
    for part in key.split("."):
        cur = cur[part]
    return cur


# --------------------------------------------------------------------------------------------------
# YAML loading


class _Loader(yaml.SafeLoader):
    """SafeLoader that reads floats as YAML 1.2 does: `5e-5` and `1E3` are floats, not strings."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+][0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _expand_env(value: Any, where: str, problems: list[str]) -> Any:
    """Expand ${VAR} and ${VAR:-default} in every string of a parsed YAML tree."""
    if isinstance(value, dict):
        return {k: _expand_env(v, f"{where}.{k}" if where else str(k), problems) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_env(v, f"{where}[{i}]", problems) for i, v in enumerate(value)]
    if isinstance(value, str) and "\x00" in value:
        # No path, id or name holds a NUL byte; os calls would fail on it later with a bare ValueError.
        problems.append(f"{where or '(top level)'}: the value contains a NUL byte (\\x00); remove it")
        return value
    if not isinstance(value, str) or "${" not in value:
        return value

    def sub(m: re.Match) -> str:
        name, default = m.group(1), m.group(2)
        if name in os.environ:
            return os.environ[name]
        if default is not None:
            return default
        problems.append(f"{where or '(top level)'}: environment variable ${{{name}}} is not set (set it, or write ${{{name}:-default}})")
        return m.group(0)

    expanded = _ENV.sub(sub, value)
    # A value that was only a variable takes the type YAML would give it (`${STEPS:-100}` -> 100).
    if _ENV.fullmatch(value.strip()):
        try:
            return yaml.load(expanded, Loader=_Loader)
        except yaml.YAMLError:
            return expanded
    return expanded


def _line_map(node: yaml.Node, prefix: str = "", out: dict[str, int] | None = None) -> dict[str, int]:
    """Map dotted key paths to 1-based line numbers, so errors can point into the file."""
    out = {} if out is None else out
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            path = f"{prefix}.{k.value}" if prefix else str(k.value)
            out[path] = k.start_mark.line + 1
            _line_map(v, path, out)
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            out[f"{prefix}[{i}]"] = v.start_mark.line + 1
            _line_map(v, f"{prefix}[{i}]", out)
    return out


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parse one `--set section.key=value`; the value is read as YAML (`true`, `5e-5`, `[a, b]`)."""
    if "=" not in text:
        raise ConfigError("--set", [f"'{text}' is not KEY=VALUE (example: --set vocab_adaptation.lr_stage1=3e-5)"])
    key, raw = text.split("=", 1)
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise ConfigError("--set", [f"{text!r} has an empty key"])
    try:
        value = yaml.load(raw, Loader=_Loader) if raw.strip() else ""
    except yaml.YAMLError as e:
        problem = " ".join(str(getattr(e, "problem", None) or e).split())
        raise ConfigError("--set", [f"{'.'.join(parts)}: value {raw!r} is not valid YAML ({problem})"]) from None
    return parts, value


def _apply_override(data: dict, parts: list[str], value: Any) -> None:
    cur = data
    for p in parts[:-1]:
        nxt = cur.get(p)
        if not isinstance(nxt, dict):
            nxt = {}
            cur[p] = nxt
        cur = nxt
    cur[parts[-1]] = value


def _field_names(model: type[BaseModel]) -> list[str]:
    return list(model.model_fields)


def _describe(err: dict, lines: dict[str, int], overridden: set[str]) -> str:
    # pydantic puts union branch tags ('str', 'TargetTokenizerSpec', 'literal[...]') into `loc`; keep only
    # real key names and list indices, following the branch a tag names.
    clean: list = []
    model: Any = Config
    branches: list[type[BaseModel]] = []
    loc = err["loc"]
    bad_key = None
    if err["type"] == "invalid_key" and loc:
        # The last loc item is the offending mapping key (a number, say), not a list index.
        loc, bad_key = loc[:-1], loc[-1]
    for i, part in enumerate(loc):
        if isinstance(part, int):
            clean.append(part)
            continue
        if model is not None and part in model.model_fields:
            clean.append(part)
            ann = model.model_fields[part].annotation
            branches = [c for c in (ann, *getattr(ann, "__args__", ())) if isinstance(c, type) and issubclass(c, BaseModel)]
            model = branches[0] if len(branches) == 1 else None
        elif any(b.__name__ == part for b in branches):
            model = next(b for b in branches if b.__name__ == part)
        elif err["type"] == "extra_forbidden" and i == len(loc) - 1:
            clean.append(part)
    # A key with blanks, separators or control characters is quoted, so the message stays one readable line.
    path = ".".join(f"[{p}]" if isinstance(p, int) else str(p) if re.fullmatch(r"[\w\-]+", str(p)) else repr(p)
                    for p in clean).replace(".[", "[")
    if bad_key is not None:
        path = f"{path}.{bad_key!r}" if path else repr(bad_key)
    path = path or "(top level)"
    msg = err["msg"]
    if bad_key is not None:
        msg = f"keys must be text, got {type(bad_key).__name__} {bad_key!r}; write it as a known key name"
    if err["type"] == "extra_forbidden":
        owner = model
        names = _field_names(owner) if owner else []
        near = difflib.get_close_matches(str(clean[-1]), names, n=1, cutoff=0.5)
        kind = "section" if len(clean) == 1 else "key"
        msg = f"unknown {kind}" + (f"; did you mean '{near[0]}'?" if near else "")
        if names:
            msg += f" (valid: {', '.join(names)})"
    elif err["type"].startswith(("greater", "less")) or err["type"] in ("float_parsing", "int_parsing", "bool_parsing"):
        msg = f"{msg} (got {err.get('input')!r})"
    elif err["type"] in ("model_type", "dict_type"):
        msg = f"expected a mapping of keys, got {type(err.get('input')).__name__} {err.get('input')!r}"
    where = ""
    if path in overridden:
        where = " [from --set]"
    elif path in lines:
        where = f" (line {lines[path]})"
    return f"{path}{where}: {msg}"


def validate_dict(data: Any, source: str, lines: dict[str, int] | None = None, overridden: set[str] | None = None) -> Config:
    """Validate a parsed config mapping; raise ConfigError listing every problem."""
    if data is None:
        raise ConfigError(source, ["the file is empty; start from configs/demo.yaml or configs/research.yaml"])
    if not isinstance(data, dict):
        raise ConfigError(source, [f"the top level must be a mapping of sections, got {type(data).__name__}"])
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        # For a union such as `str | {train: ...}` given a mapping, the "not a string" branch error is noise.
        # A whole-config check (model_validator) has an empty loc; its message names the keys itself.
        errors = [err for err in e.errors()
                  if not (err["loc"] and err["loc"][-1] == "str" and isinstance(err.get("input"), dict))]
        problems = [_describe(err, lines or {}, overridden or set()) for err in errors]
        raise ConfigError(source, problems) from None


def _resolve_paths(cfg: Config, base: Path) -> None:
    """Make relative paths absolute against the config file's folder (in place)."""
    for section_name in Config.model_fields:
        section = getattr(cfg, section_name)
        _resolve_in(section, base)


def _resolve_in(model: BaseModel, base: Path) -> None:
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            _resolve_in(value, base)
            continue
        kind = (field.json_schema_extra or {}).get("path") if isinstance(field.json_schema_extra, dict) else None
        if kind is None or value is None:
            continue
        if isinstance(value, list):
            object.__setattr__(model, name, [_resolve_one(v, base, kind) for v in value])
        elif isinstance(value, str):
            object.__setattr__(model, name, _resolve_one(value, base, kind))


def _resolve_one(value: str, base: Path, kind: str) -> str:
    p = Path(os.path.expanduser(value))
    if p.is_absolute():
        return str(p)
    candidate = (base / p).resolve()
    if kind == "path":
        return str(candidate)
    # path_or_id: a hub id like "BioMistral/BioMistral-7B" stays as it is unless it exists locally
    # or is written as an explicit relative path.
    if candidate.exists() or value.startswith((".", "~")):
        return str(candidate)
    return value


def load_config(path: str | os.PathLike, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Load, expand, override, validate and resolve a config file.

    Args:
        path: the YAML file.
        overrides: `section.key=value` strings (the CLI's --set).
    Returns:
        The validated Config with absolute paths.
    Raises:
        ConfigError: with every problem found, each naming its key path (and line).
    """
    path = Path(path)
    source = str(path)
    if not path.exists():
        raise ConfigError(source, ["file not found; pass the path of a YAML config (see configs/)"])
    if path.is_dir():
        raise ConfigError(source, ["this is a directory; pass a YAML config file"])
    text = path.read_text(encoding="utf-8", errors="replace")
    try:
        node = yaml.compose(text, Loader=_Loader)
        data = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError(source, [f"{where}YAML syntax error: {problem}"]) from None
    problems: list[str] = []
    try:
        lines = _line_map(node) if node is not None else {}
        data = _expand_env(data, "", problems)
    except RecursionError:
        # A YAML alias inside its own anchor (`a: &x [*x]`) makes an endless structure.
        raise ConfigError(source, ["the YAML nests too deeply or an alias (*name) refers to its own anchor "
                                   "(&name); write the values out"]) from None
    overridden: set[str] = set()
    for text_override in overrides:
        parts, value = parse_override(text_override)
        if data is None:
            data = {}
        if isinstance(data, dict):
            _apply_override(data, parts, value)
        overridden.add(".".join(parts))
    if problems:
        raise ConfigError(source, problems)
    cfg = validate_dict(data, source, lines, overridden)
    _resolve_paths(cfg, path.resolve().parent)
    return cfg


def schema_reference() -> str:
    """Markdown reference of every key, its type, default and description (docs/config.md)."""
    out = [
        "# Config reference",
        "",
        "Generated from `vocabadapt/config.py` by `vocabadapt config docs > docs/config.md`; a test checks",
        "that this file matches the schema. Relative paths resolve against the config file's folder;",
        "`${VAR}` and `${VAR:-default}` expand; `--set section.key=value` overrides any key.",
        "",
    ]

    def walk(model: type[BaseModel], prefix: str) -> None:
        rows = []
        subs = []
        for name, f in model.model_fields.items():
            ann = f.annotation
            cands = [ann, *getattr(ann, "__args__", ())]
            sub = next((c for c in cands if isinstance(c, type) and issubclass(c, BaseModel) and c is not TargetTokenizerSpec), None)
            if sub is not None and ann is sub:
                subs.append((name, sub, f))
                continue
            default = f.get_default(call_default_factory=True)
            rows.append(f"| `{prefix}{name}` | {json.dumps(default)} | {f.description or ''} |")
        if rows:
            out.extend(["| key | default | meaning |", "|---|---|---|", *rows, ""])
        for name, sub, f in subs:
            out.extend([f"## `{prefix}{name}`", "", f.description or "", ""])
            walk(sub, f"{prefix}{name}.")

    walk(Config, "")
    return "\n".join(out).rstrip() + "\n"
