"""The config schema: one pydantic model per section, the only place a default lives.

A research config of the layout this tool replaces loads unchanged (sections `models`, `corpus`,
`term_mining`, `embedding`, `alignment`, `tokenization`, `evaluation`, `pipeline`,
`vocab_adaptation`); the extra keys vocabadapt needs all have defaults. Loading (YAML, `${VAR}`,
`--set`, messages with key paths) lives in vocabadapt.config.loading; the reference docs are
generated from this schema by vocabadapt.config.docs.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from .. import registry
from .alignment import (
    VECTOR_ALIGNMENT_KEYS,
    AlignmentConfig,
    EmbeddingConfig,
    FastTextConfig,
    TransplantConfig,
    VectorPlan,
)
from .common import ALL_LINEAR, PATH, PATH_OR_ID, ModuleNames, Section, module_names
from .data import (
    CorpusConfig,
    ModelsConfig,
    TargetTokenizerSpec,
    TermMiningConfig,
    TokenizationConfig,
    TokenizerExtendSpec,
    TokenizerTrainSpec,
)
from .evaluation import EvaluationConfig, LmEvalConfig, PipelineConfig, QAConfig
from .training import WARMUP_KEYS, EmbeddingWarmupConfig, VocabAdaptationConfig

# The section models live in one module per group (common, data, alignment, training, evaluation);
# they are re-exported here so `vocabadapt.config.schema.X` keeps naming each of them.
__all__ = [
    "ALL_LINEAR",
    "PATH",
    "PATH_OR_ID",
    "VECTOR_ALIGNMENT_KEYS",
    "WARMUP_KEYS",
    "AlignmentConfig",
    "Config",
    "CorpusConfig",
    "EmbeddingConfig",
    "EmbeddingWarmupConfig",
    "EvaluationConfig",
    "FastTextConfig",
    "LmEvalConfig",
    "ModelsConfig",
    "ModuleNames",
    "PipelineConfig",
    "QAConfig",
    "Section",
    "TargetTokenizerSpec",
    "TermMiningConfig",
    "TokenizationConfig",
    "TokenizerExtendSpec",
    "TokenizerTrainSpec",
    "TransplantConfig",
    "VectorPlan",
    "VocabAdaptationConfig",
    "module_names",
]


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
                f"vectors, or choose an alignment.init that reads none ({', '.join(registry.initialiser_names(False))})"
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
        (vocabadapt.registry.reads_vectors); true and false decide alone (false with such an init is refused at
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
    return registry.reads_vectors(init)


def _init_name(init: Optional[str]) -> str:
    return "null" if init is None else init


def _get_dotted(d: dict, key: str) -> Any:
    cur: Any = d
    for part in key.split("."):
        cur = cur[part]
    return cur
