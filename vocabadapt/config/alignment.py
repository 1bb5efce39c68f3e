"""Config sections of the method: co-occurrence embeddings, alignment, transplant."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional, Union

from pydantic import Field, field_validator

from .. import registry
from .common import Section


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
        registry.DEFAULT_INITIALISER,
        description=f"Row initialiser for every row ({', '.join(registry.initialiser_names())}); null = the "
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
        # Checked against the registry's torch-free table at load, so a typo fails here, not in the fifth stage.
        if v is not None and v not in registry.initialiser_names():
            raise ValueError(registry.unknown_initialiser(v))
        return v


class TransplantConfig(Section):
    pad_to_multiple_of: int = Field(64, ge=1, description="Pad embedding rows to a multiple of this.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="dtype of the written model; auto = the source checkpoint's."
    )
