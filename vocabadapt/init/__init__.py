"""Row initialisers: how each target row is built from the source model's rows.

An initialiser does not touch tensors. It turns the mapping (and, for some, the two tokenizers) into
a `Recipe`: for every target id, the source ids and weights whose rows are combined, or one of the
row kinds that use no particular source row (`mean`, `random`, `zero`). `vocabadapt.transplant`
applies one recipe to the input embedding and, separately, to the output head, so untied models get
both matrices built from the same recipe and tied models get one.

Initialisers (chosen by `alignment.init`; listed once, in vocabadapt.registry.INITIALISERS, which names
each one's module; `get(name)` imports it):
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

Only None, tokalign and soft read the rows the co-occurrence vectors aligned (the registry's
reads_vectors); with the others the embed stage trains no vectors unless `embedding.enabled: true`
(Config.vector_plan).

An initialiser may also have a `refine` step: it runs after the recipe's rows are built, may
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
from typing import TYPE_CHECKING, Any, Callable, Optional

from .. import registry
from ..align.mapping import TokenMapping
from ..errors import ConfigError, InputError

if TYPE_CHECKING:
    import torch

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
class Calibration:
    """Training text and a budget for initialisers whose refine step runs the source model
    (vocabadapt.init.calibration reads them).

    texts: documents in corpus order (already capped in bytes by the caller).
    max_tokens: source tokens of `texts` run through the source model to collect hidden states.
    """

    texts: list[str] = field(default_factory=list)
    max_tokens: int = 4096


@dataclass
class InitContext:
    """What an initialiser may read."""

    mapping: TokenMapping
    source_tokenizer: Any
    target_tokenizer: Any
    seed: int = 0
    info: dict[str, Any] = field(default_factory=dict)  # initialisers may leave notes for transplant.json
    # For refine steps that run the source model: () -> the source model in float32 eval mode, frozen
    # (given by the transplant, which owns model loading, so this package imports no model code).
    load_source_model: Optional[Callable[[], Any]] = None
    calibration: Optional[Calibration] = None  # for refine steps

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


# (ctx, recipe, input rows (target_rows, hidden)) -> (input rows, output rows). Output rows None: the head is
# built from the source head by the recipe (an untied model); a tied model is written untied and needs them.
Refiner = Callable[[InitContext, Recipe, "torch.Tensor"], "tuple[torch.Tensor, Optional[torch.Tensor]]"]


@dataclass(frozen=True)
class Initialiser:
    """One row initialiser, loaded: its registry facts and its code.

    name, reads_vectors: as vocabadapt.registry.INITIALISERS lists them (None = the mapping's own
        per-token method, which reads the vectors).
    recipe: (InitContext) -> Recipe, the source ids and weights of every target row.
    refine: run after the recipe's rows are built; returns (input rows, head rows), both
        (target_rows, hidden) (see Refiner). None when the recipe's rows are final.
    """

    name: Optional[str]
    reads_vectors: bool
    recipe: Callable[[InitContext], Recipe]
    refine: Optional[Refiner] = None

    @property
    def untie_output(self) -> bool:
        """Whether the head gets rows of its own (a refine step), so a tied model is written untied (decided
        before any row is built: vocabadapt.model.transplant.head_mode)."""
        return self.refine is not None


MAPPING = Initialiser(None, registry.MAPPING_READS_VECTORS, mapping_recipe)
DEFAULT = registry.DEFAULT_INITIALISER
reads_vectors = registry.reads_vectors


def get(name: Optional[str]) -> Initialiser:
    """The initialiser `alignment.init` names (None = the mapping's per-token method), its code imported.

    Raises:
        ConfigError: unknown name; the message lists the valid names.
    """
    if name is None:
        return MAPPING
    try:
        e = registry.initialiser_entry(name)
    except KeyError:
        raise ConfigError("alignment.init", [f"alignment.init: {registry.unknown_initialiser(name)}"]) from None
    refine = registry.load_ref(e.refine) if e.refine else None
    return Initialiser(e.name, e.reads_vectors, registry.load_ref(e.recipe), refine)


__all__ = [
    "DEFAULT",
    "MAPPING",
    "NO_SOURCE_KINDS",
    "InitContext",
    "Calibration",
    "Initialiser",
    "Recipe",
    "Refiner",
    "entry",
    "get",
    "mapping_recipe",
    "reads_vectors",
]
