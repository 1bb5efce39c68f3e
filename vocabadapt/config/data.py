"""Config sections of the inputs: models and tokenizers, corpus, tokenization, term mining."""

from __future__ import annotations

import difflib
import hashlib
from typing import Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .common import PATH, PATH_OR_ID, Section

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


class TokenizerExtendSpec(BaseModel):
    """Extend the source tokenizer: its tokens, ids and merges, plus new merges learned on corpus/train."""

    model_config = ConfigDict(extra="forbid")
    new_tokens: int = Field(
        ge=1, description="Tokens to add after the source's ids (fewer, with a warning, if the corpus has fewer pairs)."
    )
    min_frequency: int = Field(2, ge=1, description="Minimum count of a pair of tokens to merge.")


class TargetTokenizerSpec(BaseModel):
    """A target tokenizer made in the run: trained from scratch, or the source tokenizer extended."""

    model_config = ConfigDict(extra="forbid")
    train: Optional[TokenizerTrainSpec] = Field(None, description="How to train the target tokenizer from scratch.")
    extend: Optional[TokenizerExtendSpec] = Field(
        None,
        description="Extend the source tokenizer instead (source segmentation kept, new tokens only join source tokens).",
    )

    @model_validator(mode="after")
    def _one_way(self) -> TargetTokenizerSpec:
        if (self.train is None) == (self.extend is None):
            raise ValueError("give exactly one of train: {...} (a new tokenizer) or extend: {new_tokens: N}")
        return self


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
        description="Target tokenizer: path or id, {train: {...}} to train one on the corpus, or {extend: {new_tokens: N}} "
        "to add N tokens learned on the corpus to the source tokenizer.",
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
    exclude_inputs: list[str] = Field(
        default_factory=list,
        description="Evaluation documents (read with text_fields) that must never be trained on: a corpus "
        "document whose whitespace-normalised text or first line (title) matches one is dropped.",
        json_schema_extra=PATH,
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


class TermMiningConfig(Section):
    enabled: bool = Field(True, description="Mine frequent domain words into terms/terms.txt.")
    top_k: int = Field(1000, ge=1, description="Number of terms to keep.")
    min_frequency: int = Field(5, ge=1, description="Minimum corpus count of a term (both modes).")
    use_tfidf: bool = Field(True, description="Rank by TF-IDF against document frequency; false = by count.")
    add_to_target: bool = Field(
        False,
        description="Add mined terms to the target tokenizer as whole tokens (matched before the BPE, so words "
        "that contain one are re-split; models.target_tokenizer: {extend: ...} adds domain tokens without that).",
    )
