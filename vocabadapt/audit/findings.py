"""Findings, the facts rules may use, and the rule registry.

A rule is a small named function `(config, facts) -> list[Finding]`, registered with
`@rule(id, order=N)`; `audit()` runs them in `order` (then registration order). Adding a rule is a
new function in a topic module (or a new module imported by vocabadapt.audit) with the decorator.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Optional

if TYPE_CHECKING:
    from ..config import Config

SEVERITIES = ("error", "warning", "info")
VA = "vocab_adaptation"
WARMUP = "embedding_warmup"
GIB = 2**30


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


Rule = Callable[["Config", Facts], list[Finding]]
RULES: dict[str, Rule] = {}
_ORDER: dict[str, int] = {}


def rule(rule_id: str, order: int = 1000) -> Callable[[Rule], Rule]:
    """Register a rule under `rule_id`; rules run by `order`, ties in registration order."""

    def deco(fn: Rule) -> Rule:
        if rule_id in RULES:
            raise AssertionError(f"duplicate audit rule {rule_id}")
        RULES[rule_id] = fn
        _ORDER[rule_id] = order
        ranked = sorted(RULES.items(), key=lambda kv: _ORDER[kv[0]])  # stable: registration order on ties
        RULES.clear()
        RULES.update(ranked)
        fn.rule_id = rule_id  # type: ignore[attr-defined]
        return fn

    return deco


def missing(rule_id: str, key: str, what: str, how: str, evidence: dict | None = None) -> Finding:
    """The info finding of a rule that lacks a fact: what it could not check and how to give the fact."""
    return Finding(rule_id, "info", key, f"not checked: {what}", how, evidence or {})
