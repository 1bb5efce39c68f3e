"""Transplant: rebuild a Hugging Face causal LM for the target tokenizer.

The only tensors that change are the input embedding and the output head (one tensor when tied),
found by vocabadapt.model.keys (asked of the architecture, no table of names). Weights are never
loaded as a model: every safetensors file is copied unchanged or rewritten by streaming
(vocabadapt.model.streaming), so peak memory is about the size of the source and target embedding
matrices, not of the model.

Rows are built in float64 from a `vocabadapt.init.Recipe` (vocabadapt.init.rows) and cast back to
the checkpoint's dtype, so a copied row is bit-identical to its source row. Padding rows (the target
vocabulary rounded up to `pad_to_multiple_of`) are zero in both matrices and listed in the generation
config's `suppress_tokens`, so `generate()` can never produce them; anything computing probabilities
over the vocabulary should use only the first len(tokenizer) logits (the padding logits are exactly 0).

The order: everything is checked and decided first (TransplantPlan: where the matrices are, how many
rows, the head mode), then the matrices are built (BuiltMatrices, spilled to a scratch folder), then the
model directory is written atomically.
"""

from __future__ import annotations

import functools
import logging
import tempfile
import time
from dataclasses import dataclass, replace
from enum import Enum
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from .. import init as initialisers
from ..align.mapping import TokenMapping
from ..config import ModelsConfig
from ..errors import InputError
from ..init import Calibration
from ..init.rows import build_rows, check_recipe_ids, zero_rows
from ..io import atomic_dir, write_json
from . import TRANSPLANT_SUMMARY
from .hf_configs import write_hf_configs
from .hub import load_frozen_model
from .keys import EmbeddingLocation, locate_embeddings
from .streaming import (
    DTYPE_NAMES,
    Spilled,
    has_safetensors,
    read_header,
    read_tensor,
    weight_map_of,
    write_checkpoint,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TransplantOptions:
    """What shapes the rebuilt model besides its inputs (the config keys alignment.init, .norm_match,
    .seed, transplant.pad_to_multiple_of, .dtype, models.allow_pickle, .trust_remote_code)."""

    init: Optional[str] = None  # row initialiser (vocabadapt.registry.INITIALISERS); None = the mapping's
    norm_match: bool = False  # rescale combined rows to their source rows' norm (see build_rows)
    pad_to_multiple_of: int = 64  # round the target rows up to a multiple of this (zero rows, suppressed)
    dtype: str = "auto"  # "auto" (the checkpoint's) or float32 / bfloat16 / float16 for every float tensor
    seed: int = 0  # seed of random rows: input rows use seed, output rows seed + 1, the head bias seed + 2
    allow_pickle: bool = False  # load a pickle-only checkpoint (weights_only) instead of refusing it
    trust_remote_code: bool = False  # allow a model whose config asks for its own code


class HeadMode(Enum):
    """How the output head is written, decided once before any row is built."""

    TIED = "tied"  # the head is the input embedding (one matrix; a stored copy gets the same rows)
    UNTIED = "untied"  # the head has its own matrix, built from the source head by the same recipe
    UNTIE = "untie"  # a tied model whose initialiser gives the head rows of its own: written untied


def head_mode(location: EmbeddingLocation, initialiser: initialisers.Initialiser) -> HeadMode:
    if not location.tied:
        return HeadMode.UNTIED
    return HeadMode.UNTIE if initialiser.untie_output else HeadMode.TIED


@dataclass(frozen=True)
class TransplantPlan:
    """Everything known before a row is built: the checkpoint, where its matrices are, the sizes."""

    model_dir: Path  # a safetensors checkpoint (a pickle one is converted first)
    files: list[str]  # its safetensors files
    weight_map: dict[str, str]  # tensor key -> file
    location: EmbeddingLocation
    head: HeadMode
    n_src_tok: int  # source tokenizer size (rows the recipe may read)
    n_src_rows: int  # source embedding rows (>= n_src_tok)
    n_tgt: int  # target tokenizer size
    n_rows: int  # target rows written: n_tgt rounded up to pad_to_multiple_of
    out_dtype: torch.dtype | None  # None = keep each tensor's dtype


@dataclass(frozen=True)
class BuiltMatrices:
    """The rebuilt tensors, spilled to scratch, and what the summary says about them."""

    replacements: dict[str, Spilled]  # checkpoint key -> new tensor, for keys the source has
    added: dict[str, Spilled]  # keys the source lacks (the head of an untied tied model)
    location: EmbeddingLocation  # the source's, with the added head's key when there is one
    zero_ids: list[int]  # target ids whose row is all zero in some matrix
    dtype: str  # dtype the rows were built in (the checkpoint's)
    refine_seconds: float | None


def transplant_model(
    source_model_dir: str | Path,
    source_tokenizer: Any,
    target_tokenizer: Any,
    mapping: TokenMapping,
    out_dir: str | Path,
    *,
    init: str | None = None,
    norm_match: bool = False,
    pad_to_multiple_of: int = 64,
    dtype: str = "auto",
    seed: int = 0,
    allow_pickle: bool = False,
    trust_remote_code: bool = False,
    calibration: Calibration | None = None,
) -> dict[str, Any]:
    """Write a copy of the source model rebuilt for the target tokenizer into `out_dir` (atomically).

    Args:
        source_model_dir: local HF model directory (safetensors; pickle only with allow_pickle).
        source_tokenizer, target_tokenizer: transformers tokenizers (the target one is saved to out_dir).
        mapping: one entry per target id; its checksums, when set, must match the two tokenizers.
        out_dir: the model directory to write (replaced as a whole on success).
        init, norm_match, pad_to_multiple_of, dtype, seed, allow_pickle, trust_remote_code: see
            TransplantOptions.
        calibration: training text and budgets for initialisers with a refine step (Initialiser.refine),
            which load the source model; such a step gives the output head its own rows, so a tied
            model is written untied (config.tie_word_embeddings = false, the head as its own tensor).
    Returns:
        the summary also written to out_dir/transplant.json.
    Raises:
        InputError: mismatched tokenizers/mapping, ids out of range, non-finite rows, unsafe weights.
        ConfigError: unknown initialiser.
    """
    from .hub import check_remote_code, check_weights_safe, convert_to_safetensors

    opts = TransplantOptions(init, norm_match, pad_to_multiple_of, dtype, seed, allow_pickle, trust_remote_code)
    model_dir = Path(source_model_dir)
    out_dir = Path(out_dir)
    models_cfg = ModelsConfig(allow_pickle=allow_pickle, trust_remote_code=trust_remote_code)
    initialiser = initialisers.get(init)  # unknown names fail before any work
    if dtype != "auto" and dtype not in DTYPE_NAMES:
        raise InputError(f"transplant.dtype '{dtype}' is not one of auto, {', '.join(DTYPE_NAMES)}")
    if not (model_dir / "config.json").is_file():
        raise InputError(f"{model_dir} has no config.json; is it a Hugging Face model directory?")
    check_remote_code(model_dir, models_cfg, "model")
    check_weights_safe(model_dir, models_cfg)
    mapping.check_tokenizers(source_tokenizer, target_tokenizer)

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".tmp-transplant-", dir=out_dir.parent) as scratch:
        if not has_safetensors(model_dir):
            model_dir = convert_to_safetensors(model_dir, models_cfg, Path(scratch))
        return _transplant(
            model_dir,
            source_tokenizer,
            target_tokenizer,
            mapping,
            out_dir,
            Path(scratch),
            initialiser,
            opts,
            calibration,
        )


def _plan(
    model_dir: Path,
    config: Any,
    initialiser: initialisers.Initialiser,
    opts: TransplantOptions,
    n_src_tok: int,
    n_tgt: int,
) -> TransplantPlan:
    """Locate the matrices, count the rows and decide the head mode (nothing is read but headers)."""
    files, weight_map = weight_map_of(model_dir)
    location = locate_embeddings(model_dir, config, list(weight_map), opts.trust_remote_code)
    return TransplantPlan(
        model_dir=model_dir,
        files=files,
        weight_map=weight_map,
        location=location,
        head=head_mode(location, initialiser),
        n_src_tok=n_src_tok,
        n_src_rows=_source_rows(model_dir, weight_map, location.input_key, n_src_tok),
        n_tgt=n_tgt,
        n_rows=-(-n_tgt // opts.pad_to_multiple_of) * opts.pad_to_multiple_of,
        out_dtype=DTYPE_NAMES[opts.dtype] if opts.dtype != "auto" else None,
    )


def _rows(
    plan: TransplantPlan, recipe: initialisers.Recipe, opts: TransplantOptions, key: str, seed: int
) -> torch.Tensor:
    """(target_rows, hidden) rows of checkpoint tensor `key` built by the recipe; a 1-d tensor (the head's
    bias) is built as one column and returned 1-d."""
    src = read_tensor(plan.model_dir / plan.weight_map[key], key)  # (source_rows, hidden) or (source_rows,)
    if key == plan.location.output_key and src.shape[0] < plan.n_src_tok:  # the input's rows: _source_rows
        raise InputError(
            f"the output head '{key}' has {src.shape[0]} rows, fewer than the source tokenizer's "
            f"{plan.n_src_tok} tokens"
        )
    column = src.dim() == 1
    rows = build_rows(
        src[:, None] if column else src,
        recipe,
        n_used=plan.n_src_tok,
        n_rows=plan.n_rows,
        seed=seed,
        norm_match=opts.norm_match,
        out_dtype=plan.out_dtype,
        name=key,
    )
    return rows[:, 0].contiguous() if column else rows


def _refined(
    plan: TransplantPlan,
    initialiser: initialisers.Initialiser,
    ctx: initialisers.InitContext,
    recipe: initialisers.Recipe,
    new_in: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor | None, float | None]:
    """The initialiser's refine step on the built input rows: (input rows, head rows or None, seconds)."""
    if initialiser.refine is None:
        return new_in, None, None
    started = time.perf_counter()
    new_in, new_out = initialiser.refine(ctx, recipe, new_in)
    for what, t in (("input", new_in), ("output", new_out)):
        if t is not None and (tuple(t.shape) != (plan.n_rows, new_in.shape[1]) or not bool(torch.isfinite(t).all())):
            raise AssertionError(
                f"initialiser {initialiser.name}: refined {what} rows have shape {tuple(t.shape)} "
                f"(want {(plan.n_rows, new_in.shape[1])}) or are not finite"
            )
    if plan.head is HeadMode.UNTIE and new_out is None:
        raise AssertionError(f"initialiser {initialiser.name} unties a tied model but returned no head rows")
    return new_in, new_out, round(time.perf_counter() - started, 1)


def _build_matrices(
    plan: TransplantPlan,
    recipe: initialisers.Recipe,
    initialiser: initialisers.Initialiser,
    ctx: initialisers.InitContext,
    opts: TransplantOptions,
    scratch: Path,
) -> BuiltMatrices:
    """Build the target input embedding, the output head (as plan.head says) and the head bias.

    One matrix at a time: source rows in, target rows built, target rows spilled to scratch, so the
    peak is one source plus one target matrix (and one float64 block), not all four.
    """
    loc = plan.location
    zero = torch.zeros(plan.n_tgt, dtype=torch.bool)
    new_in = _rows(plan, recipe, opts, loc.input_key, opts.seed)  # (target_rows, hidden)
    new_in, head_rows, refine_seconds = _refined(plan, initialiser, ctx, recipe, new_in)
    zero |= zero_rows(new_in[: plan.n_tgt])
    dtype_name = str(new_in.dtype).removeprefix("torch.")
    replacements = {loc.input_key: Spilled.write(new_in, scratch / "input.bin")}
    del new_in
    added: dict[str, Spilled] = {}
    if plan.head is HeadMode.TIED:
        if loc.output_key is not None:  # a tied checkpoint that stores the head too: the same rows
            replacements[loc.output_key] = replacements[loc.input_key]
    else:
        if head_rows is None:  # UNTIED without a refine step: the source head through the same recipe
            assert loc.output_key is not None  # locate_embeddings refuses an untied model without one
            head_rows = _rows(plan, recipe, opts, loc.output_key, opts.seed + 1)
        zero |= zero_rows(head_rows[: plan.n_tgt])
        head = Spilled.write(head_rows, scratch / "output.bin")
        del head_rows
        if loc.output_key is not None:
            replacements[loc.output_key] = head
        else:  # UNTIE of a checkpoint that stores no head: a new tensor, beside the input embedding
            loc = replace(loc, output_key=loc.new_head_key())
            added[str(loc.output_key)] = head
        if plan.head is HeadMode.UNTIE:
            log.info(
                "transplant: %s gives the output head its own rows; writing the model untied (%s)",
                initialiser.name,
                loc.output_key,
            )
    if loc.bias_key is not None:  # (target_rows,): the head's bias follows its rows' recipe
        replacements[loc.bias_key] = Spilled.write(
            _rows(plan, recipe, opts, loc.bias_key, opts.seed + 2), scratch / "bias.bin"
        )
    return BuiltMatrices(replacements, added, loc, zero.nonzero().flatten().tolist(), dtype_name, refine_seconds)


def _transplant(
    model_dir: Path,
    source_tokenizer: Any,
    target_tokenizer: Any,
    mapping: TokenMapping,
    out_dir: Path,
    scratch: Path,
    initialiser: initialisers.Initialiser,
    opts: TransplantOptions,
    calibration: Calibration | None,
) -> dict[str, Any]:
    """transplant_model after its checks; `scratch` holds the built matrices until they are written."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(str(model_dir), trust_remote_code=opts.trust_remote_code)
    plan = _plan(model_dir, config, initialiser, opts, len(source_tokenizer), len(target_tokenizer))
    ctx = initialisers.InitContext(
        mapping=mapping,
        source_tokenizer=source_tokenizer,
        target_tokenizer=target_tokenizer,
        seed=opts.seed,
        load_source_model=functools.partial(load_frozen_model, model_dir, opts.trust_remote_code),
        calibration=calibration,
    )
    recipe = _checked_recipe(initialiser.recipe, ctx, plan.n_src_rows, plan.n_src_tok)
    built = _build_matrices(plan, recipe, initialiser, ctx, opts, scratch)
    # an added head goes into the input embedding's file
    weight_map = {**plan.weight_map, **{k: plan.weight_map[plan.location.input_key] for k in built.added}}

    with atomic_dir(out_dir) as tmp:
        rewritten, copied = write_checkpoint(
            model_dir,
            tmp,
            plan.files,
            weight_map,
            built.replacements,
            built.added,
            plan.out_dtype,
            opts.trust_remote_code,
        )
        if plan.head is HeadMode.UNTIE:
            config.tie_word_embeddings = False
            config.get_text_config().tie_word_embeddings = False
        ids = write_hf_configs(config, model_dir, tmp, target_tokenizer, plan.n_tgt, plan.n_rows, plan.out_dtype)
        target_tokenizer.save_pretrained(str(tmp))
        summary = _summary(plan, built, recipe, opts, mapping, ctx, ids, rewritten, copied)
        write_json(tmp / TRANSPLANT_SUMMARY, summary)
    log.info(
        "transplant: %d target rows (%d padding), %s; %d copied rows, %d zero rows; wrote %s",
        plan.n_tgt,
        plan.n_rows - plan.n_tgt,
        "tied" if plan.head is HeadMode.TIED else "untied",
        summary["rows_copied"],
        len(built.zero_ids),
        out_dir,
    )
    if built.zero_ids:
        log.warning("transplant: %d target rows are all zero (e.g. ids %s)", len(built.zero_ids), built.zero_ids[:10])
    return summary


def _summary(
    plan: TransplantPlan,
    built: BuiltMatrices,
    recipe: initialisers.Recipe,
    opts: TransplantOptions,
    mapping: TokenMapping,
    ctx: initialisers.InitContext,
    ids: dict[str, int | None],
    rewritten: list[str],
    copied: list[str],
) -> dict[str, Any]:
    """model/init/transplant.json."""
    return {
        "init": opts.init,
        "norm_match": opts.norm_match,
        "seed": opts.seed,
        "rows_per_method": recipe.counts(),
        "rows_copied": recipe.copied_rows(),
        "zero_rows": len(built.zero_ids),
        "zero_row_ids": built.zero_ids[:50],
        "tied": plan.head is HeadMode.TIED,
        "untied_by_init": plan.head is HeadMode.UNTIE,
        "refine_seconds": built.refine_seconds,
        "source_vocab_size": plan.n_src_tok,
        "source_rows": plan.n_src_rows,
        "target_vocab_size": plan.n_tgt,
        "target_rows": plan.n_rows,
        "padding_rows": plan.n_rows - plan.n_tgt,
        "padding": "zero rows, listed in generation_config.suppress_tokens",
        "mapping_checksum": mapping.checksum(),
        "tensors": {
            "input": built.location.input_key,
            "output": built.location.output_key,
            "output_bias": built.location.bias_key,
        },
        "files_rewritten": rewritten,
        "files_copied": copied,
        "dtype": built.dtype,
        "special_ids": ids,
        **({"init_info": ctx.info} if ctx.info else {}),
    }


def _source_rows(model_dir: Path, weight_map: dict[str, str], in_key: str, n_src_tok: int) -> int:
    """The rows of the source input embedding (from its header; the tensor is read later, when built).

    Raises:
        InputError: the source tokenizer has more tokens than the embedding has rows.
    """
    n_src_rows = int(read_header(model_dir / weight_map[in_key])[1][in_key]["shape"][0])
    if n_src_tok > n_src_rows:
        raise InputError(
            f"the source tokenizer has {n_src_tok} tokens but the model's input embedding '{in_key}' has only "
            f"{n_src_rows} rows; this tokenizer does not belong to this model (set models.source_tokenizer)."
        )
    return n_src_rows


def _checked_recipe(
    recipe_fn: Callable[[initialisers.InitContext], initialisers.Recipe],
    ctx: initialisers.InitContext,
    n_src_rows: int,
    n_src_tok: int,
) -> initialisers.Recipe:
    """The initialiser's Recipe, one row per target token, its source ids checked (check_recipe_ids)."""
    recipe = recipe_fn(ctx)
    if len(recipe) != ctx.mapping.target_vocab_size:
        raise AssertionError(f"initialiser returned {len(recipe)} rows for {ctx.mapping.target_vocab_size} targets")
    check_recipe_ids(recipe, n_src_rows, n_src_tok)
    return recipe
