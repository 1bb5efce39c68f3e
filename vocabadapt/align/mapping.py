"""The target-to-source token mapping: what align writes and transplant reads.

For every target token id, one entry says how its rows are built:
    method      why this row: special | identical | aligned | soft | fvt | mean | random | zero
    source_ids  the source token ids whose rows combine (empty for mean/random/zero)
    weights     one weight per source id, summing to 1 (copy = [1.0])
    similarity  cosine of relative representations for aligned/soft tokens, else null

`align/mapping.json` stores it column-wise (one list per field, index = target id) with checksums of
both tokenizers, so a mapping made for another tokenizer is refused by its checksum.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..io import read_json, write_json

log = logging.getLogger(__name__)

METHODS = ("special", "identical", "aligned", "soft", "fvt", "mean", "random", "zero")


def tokenizer_checksum(tokenizer: Any) -> str:
    """sha256 over the tokenizer's vocabulary (token -> id, added tokens included)."""
    vocab = tokenizer.get_vocab()
    payload = json.dumps(sorted(vocab.items(), key=lambda kv: kv[1]), ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()


@dataclass
class TokenMapping:
    methods: list[str]
    source_ids: list[list[int]]
    weights: list[list[float]]
    similarity: list[float | None]
    source_vocab_size: int
    target_checksum: str = ""
    source_checksum: str = ""
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.methods)
        if not (len(self.source_ids) == len(self.weights) == len(self.similarity) == n):
            raise InputError("mapping columns have different lengths")
        for i, (m, ids, w) in enumerate(zip(self.methods, self.source_ids, self.weights)):
            if m not in METHODS:
                raise InputError(f"mapping entry {i}: unknown method '{m}' (valid: {', '.join(METHODS)})")
            if len(ids) != len(w):
                raise InputError(f"mapping entry {i}: {len(ids)} source ids but {len(w)} weights")

    @property
    def target_vocab_size(self) -> int:
        return len(self.methods)

    def checksum(self) -> str:
        payload = json.dumps([self.methods, self.source_ids, self.weights], separators=(",", ":"))
        return hashlib.sha256(payload.encode()).hexdigest()

    def counts(self) -> dict[str, int]:
        out = {m: 0 for m in METHODS}
        for m in self.methods:
            out[m] += 1
        return {m: c for m, c in out.items() if c}

    def to_json(self) -> dict[str, Any]:
        return {
            "format": "vocabadapt.mapping/1",
            "target_vocab_size": self.target_vocab_size,
            "source_vocab_size": self.source_vocab_size,
            "target_checksum": self.target_checksum,
            "source_checksum": self.source_checksum,
            "info": self.info,
            "methods": self.methods,
            "source_ids": self.source_ids,
            "weights": self.weights,
            "similarity": self.similarity,
        }

    def save(self, path: str | Path) -> None:
        write_json(path, self.to_json(), indent=None)

    def check_tokenizers(self, source_tokenizer: Any, target_tokenizer: Any) -> None:
        """Raise InputError unless this mapping was made for these two tokenizers (sizes, then checksums
        when the mapping has them; without one a warning says it cannot be verified)."""
        n_tgt = len(target_tokenizer)
        if n_tgt != self.target_vocab_size:
            raise InputError(
                f"the target tokenizer has {n_tgt} tokens but the mapping has {self.target_vocab_size} entries; "
                f"the mapping was made for another target tokenizer. Rerun the align stage with this tokenizer."
            )
        if self.source_vocab_size != len(source_tokenizer):
            raise InputError(
                f"the mapping was made for a source tokenizer of {self.source_vocab_size} tokens, this one has "
                f"{len(source_tokenizer)}; rerun the align stage with the run's source tokenizer."
            )
        for side, tok, want in (
            ("target", target_tokenizer, self.target_checksum),
            ("source", source_tokenizer, self.source_checksum),
        ):
            if not want:
                log.warning(
                    "the mapping has no %s tokenizer checksum; cannot verify it was made for this tokenizer", side
                )
                continue
            have = tokenizer_checksum(tok)
            if have != want:
                raise InputError(
                    f"the mapping was made for another {side} tokenizer (checksum {want[:12]}..., this one "
                    f"{have[:12]}...). Rerun the align stage (vocabadapt run CONFIG --from align) so mapping and "
                    f"tokenizers match."
                )

    @classmethod
    def load(cls, path: str | Path) -> TokenMapping:
        path = Path(path)
        try:
            data = read_json(path)
        except (OSError, ValueError) as e:
            raise InputError(f"{path}: cannot read the mapping ({e}); rerun the align stage") from None
        if not isinstance(data, dict) or data.get("format") != "vocabadapt.mapping/1":
            raise InputError(f"{path} is not a vocabadapt mapping (format vocabadapt.mapping/1)")
        try:
            return cls(
                methods=data["methods"],
                source_ids=data["source_ids"],
                weights=data["weights"],
                similarity=data["similarity"],
                source_vocab_size=data["source_vocab_size"],
                target_checksum=data.get("target_checksum", ""),
                source_checksum=data.get("source_checksum", ""),
                info=data.get("info", {}),
            )
        except KeyError as e:
            raise InputError(f"{path}: mapping lacks the field {e}") from None
