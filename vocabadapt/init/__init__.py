"""Row initialisers: how each target row is built from the source model's rows.

An initialiser does not touch tensors. It turns the mapping (and, for some, the two tokenizers) into
a `Recipe`: for every target id, the source ids and weights whose rows are combined, or one of the
row kinds that use no particular source row (`mean`, `random`, `zero`). `vocabadapt.transplant`
applies one recipe to the input embedding and, separately, to the output head, so untied models get
both matrices built from the same recipe and tied models get one.

Registry (chosen by `alignment.init`):
    None       the mapping's own per-token method: every row is the weighted sum of its entry's
               source rows (mean / random / zero entries as the mapping says)
    tokalign   aligned and soft entries copy their top-1 source row (TokAlign, Li et al., ACL 2025)
    soft       aligned and soft entries use the mapping's weighted combination of top-k rows
    fvt        every non-special, non-identical token re-tokenised by the source tokenizer, mean of
               those rows (Fast Vocabulary Transfer, Gee et al., EMNLP 2022 industry track)
    fvt_prior  (the default) FVT input rows; output rows = the first source piece's output row plus the
               log of the token's corpus share of that piece, along a direction fitted on the source
               model's hidden states (fvt_prior.py); unties a tied model
    mean       every non-special row is the mean of all source rows (what transformers' resize does)
    random     every non-special row drawn from N(mean, std) per dimension of the source rows

Only None, tokalign and soft read the rows the co-occurrence vectors aligned (READS_VECTORS); with the
others the embed stage trains no vectors unless `embedding.enabled: true` (Config.vector_plan).

An initialiser may also have a `refine` step (REFINERS): it runs after the recipe's rows are built, may
load the source model and read calibration text (vocabadapt.init.calibration), and returns the input rows
and, when the output head needs its own rows, the output rows.

Special tokens keep their mapping entry (a copy of the matching source special token) under every
initialiser. Identical tokens copy their source row under tokalign/soft/fvt; the `mean` and `random`
baselines replace them too, so that a benchmark compares an honest baseline rather than one that
already holds every shared token's trained row.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from ..align.mapping import TokenMapping
from ..errors import ConfigError, InputError

log = logging.getLogger(__name__)

# Row kinds whose rows do not come from listed source ids.
NO_SOURCE_KINDS = ("mean", "random", "zero")


@dataclass
class Recipe:
    """Per target id: a label (why; counted in transplant.json), source ids and weights.

    A row with label in NO_SOURCE_KINDS has no ids; every other row has >= 1 id and as many weights.
    """

    labels: list[str]
    source_ids: list[list[int]]
    weights: list[list[float]]

    def __len__(self) -> int:
        return len(self.labels)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for label in self.labels:
            out[label] = out.get(label, 0) + 1
        return dict(sorted(out.items()))

    def copied_rows(self) -> int:
        """Rows that are an exact copy of one source row (one id, weight 1)."""
        return sum(1 for ids, w in zip(self.source_ids, self.weights) if len(ids) == 1 and w[0] == 1.0)


@dataclass
class InitContext:
    """What an initialiser may read."""

    mapping: TokenMapping
    source_tokenizer: Any
    target_tokenizer: Any
    seed: int = 0
    info: dict[str, Any] = field(default_factory=dict)  # initialisers may leave notes for transplant.json
    source_model_dir: Optional[Path] = None  # for refine steps that run the source model
    calibration: Any = None  # vocabadapt.init.calibration.Calibration, for refine steps
    trust_remote_code: bool = False

    def special_ids(self) -> set[int]:
        """Target ids that keep their mapping entry under every initialiser."""
        ids = {i for i, m in enumerate(self.mapping.methods) if m == "special"}
        ids |= {i for i in getattr(self.target_tokenizer, "all_special_ids", []) if 0 <= i < len(self.mapping.methods)}
        return ids


def entry(ctx: InitContext, tid: int) -> tuple[str, list[int], list[float]]:
    """The mapping's own recipe for target id `tid`.

    An entry that needs source rows but lists none is a malformed mapping, except for special tokens
    with no source counterpart, which get the mean row (a special token is never zero).
    Raises:
        InputError: a non-special entry of a row-copying method has no source ids.
    """
    m = ctx.mapping
    method, ids, w = m.methods[tid], list(m.source_ids[tid]), [float(x) for x in m.weights[tid]]
    if method in NO_SOURCE_KINDS:
        return method, [], []
    if not ids:
        if method == "special":
            return "special", [], []  # built as the mean row, see transplant.build_rows
        raise InputError(
            f"mapping entry for target id {tid} has method '{method}' but no source ids; rerun the align stage"
        )
    return method, ids, w


def mapping_recipe(ctx: InitContext) -> Recipe:
    """alignment.init = null: every row from its own mapping entry (weighted sum of its source rows)."""
    labels, ids, weights = [], [], []
    for tid in range(ctx.mapping.target_vocab_size):
        label, i, w = entry(ctx, tid)
        labels.append(label)
        ids.append(i)
        weights.append(w)
    return Recipe(labels, ids, weights)


# The registry is explicit; the modules import Recipe/InitContext from this package, so they are
# imported here, after those are defined.
def baseline_recipe(ctx: InitContext, label: str) -> Recipe:
    """Every non-special row gets the baseline `label` (mean / random); special tokens keep their entry."""
    special = ctx.special_ids()
    labels, ids, weights = [], [], []
    for tid in range(ctx.mapping.target_vocab_size):
        label_i, i, w = entry(ctx, tid) if tid in special else (label, [], [])
        labels.append(label_i)
        ids.append(i)
        weights.append(w)
    return Recipe(labels, ids, weights)


from . import fvt, fvt_prior, mean, random, soft, tokalign  # noqa: E402

REGISTRY: dict[str, Callable[[InitContext], Recipe]] = {
    "fvt_prior": fvt_prior.recipe,
    "tokalign": tokalign.recipe,
    "soft": soft.recipe,
    "fvt": fvt.recipe,
    "mean": mean.recipe,
    "random": random.recipe,
}

# (ctx, recipe, input rows (target_rows, hidden)) -> (input rows, output rows or None = same as input)
Refiner = Callable[[InitContext, Recipe, torch.Tensor], "tuple[torch.Tensor, Optional[torch.Tensor]]"]
REFINERS: dict[str, Refiner] = {
    "fvt_prior": fvt_prior.refine,
}

# Whether each initialiser reads what the co-occurrence vectors produced (the mapping's aligned and soft
# entries). Those that do not use only the identical and special entries and rebuild every other row
# themselves, so for them the embed stage trains nothing and align maps identical tokens and the fallback
# (Config.vector_plan). Every REGISTRY name is listed, and None (the mapping's per-token chain).
READS_VECTORS: dict[str | None, bool] = {
    None: True,
    "tokalign": True,
    "soft": True,
    "fvt_prior": False,
    "fvt": False,
    "mean": False,
    "random": False,
}
assert set(READS_VECTORS) == set(REGISTRY) | {None}, "every initialiser declares READS_VECTORS"  # invariant

DEFAULT = "fvt_prior"  # the schema's alignment.init default (lowest held-out bpb at init, issue 18)


def get(name: str | None) -> Callable[[InitContext], Recipe]:
    """The recipe function for `alignment.init` (None = the mapping's per-token method).

    Raises:
        ConfigError: unknown name; the message lists the valid names.
    """
    if name is None:
        return mapping_recipe
    if name not in REGISTRY:
        raise ConfigError(
            "alignment.init",
            [
                f"alignment.init: unknown initialiser '{name}'; valid: {', '.join(REGISTRY)} (or null for the "
                f"mapping's per-token method)"
            ],
        )
    return REGISTRY[name]


def reads_vectors(name: str | None) -> bool:
    """Whether initialiser `name` (None = the mapping's per-token chain) reads the vector alignment."""
    return READS_VECTORS[name]


def refiner(name: str | None) -> Refiner | None:
    """The refine step of initialiser `name`, or None when its rows are its recipe's alone."""
    return REFINERS.get(name) if name is not None else None


__all__ = [
    "Recipe",
    "InitContext",
    "REGISTRY",
    "REFINERS",
    "READS_VECTORS",
    "reads_vectors",
    "DEFAULT",
    "get",
    "refiner",
    "mapping_recipe",
    "entry",
    "NO_SOURCE_KINDS",
]
