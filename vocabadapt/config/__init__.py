"""The validated YAML config: schema (the only place a default lives), loading, reference docs."""

from .docs import schema_reference
from .loading import load_config, parse_override, validate_dict
from .schema import (
    ALL_LINEAR,
    AlignmentConfig,
    Config,
    CorpusConfig,
    EmbeddingConfig,
    EmbeddingWarmupConfig,
    EvaluationConfig,
    FastTextConfig,
    ModelsConfig,
    ModuleNames,
    PipelineConfig,
    QAConfig,
    TargetTokenizerSpec,
    TermMiningConfig,
    TokenizationConfig,
    TokenizerTrainSpec,
    TransplantConfig,
    VocabAdaptationConfig,
)

__all__ = [
    "ALL_LINEAR",
    "AlignmentConfig",
    "Config",
    "CorpusConfig",
    "EmbeddingConfig",
    "EmbeddingWarmupConfig",
    "EvaluationConfig",
    "FastTextConfig",
    "ModelsConfig",
    "ModuleNames",
    "PipelineConfig",
    "QAConfig",
    "TargetTokenizerSpec",
    "TermMiningConfig",
    "TokenizationConfig",
    "TokenizerTrainSpec",
    "TransplantConfig",
    "VocabAdaptationConfig",
    "load_config",
    "parse_override",
    "schema_reference",
    "validate_dict",
]
