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
"""

from __future__ import annotations

import functools
import json
import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch

from .. import init as initialisers
from ..align.mapping import TokenMapping, tokenizer_checksum
from ..config import ModelsConfig
from ..errors import InputError
from ..init import Calibration
from ..init.rows import build_rows, check_recipe_ids, zero_rows
from ..io import atomic_dir, write_json
from . import TRANSPLANT_SUMMARY
from .hub import load_frozen_model
from .keys import locate_embeddings
from .streaming import (
    DTYPE_NAMES,
    INDEX_FILE,
    SINGLE_FILE,
    Spilled,
    checkpoint_files,
    has_safetensors,
    read_header,
    read_tensor,
    stream_rewrite,
    tensor_sizes,
)

log = logging.getLogger(__name__)


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
        init: row initialiser name (vocabadapt.registry.INITIALISERS) or None for the mapping's per-token method.
        norm_match: rescale combined rows to their source rows' norm (see build_rows).
        pad_to_multiple_of: round the target rows up to a multiple of this (padding rows are zero and
            suppressed in generation).
        dtype: "auto" (the checkpoint's) or float32 / bfloat16 / float16 for every float tensor written.
        seed: seed of random rows (input rows use seed, output rows seed + 1).
        allow_pickle: load a pickle-only checkpoint (weights_only) instead of refusing it.
        trust_remote_code: allow a model whose config asks for its own code.
        calibration: training text and budgets for initialisers with a refine step (Initialiser.refine), which
            load the source model; when such a step gives the output head its own rows, a tied model is
            written untied (config.tie_word_embeddings = false, the head as its own tensor).
    Returns:
        the summary also written to out_dir/transplant.json.
    Raises:
        InputError: mismatched tokenizers/mapping, ids out of range, non-finite rows, unsafe weights.
        ConfigError: unknown initialiser.
    """
    from .hub import check_remote_code, check_weights_safe

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
    _check_mapping(mapping, source_tokenizer, target_tokenizer)

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".tmp-transplant-", dir=out_dir.parent) as scratch:
        if not has_safetensors(model_dir):
            model_dir = _pickle_to_safetensors(model_dir, models_cfg, Path(scratch))
        return _transplant(
            model_dir,
            source_tokenizer,
            target_tokenizer,
            mapping,
            out_dir,
            Path(scratch),
            initialiser=initialiser,
            norm_match=norm_match,
            pad_to_multiple_of=pad_to_multiple_of,
            dtype=dtype,
            seed=seed,
            trust_remote_code=trust_remote_code,
            calibration=calibration,
        )


def _pickle_to_safetensors(model_dir: Path, models_cfg: ModelsConfig, scratch: Path) -> Path:
    """Allowed pickle checkpoints are loaded once (weights_only) and re-saved as safetensors."""
    from .hub import load_model

    log.warning(
        "%s has only pickle weights; loading the whole model once to convert it to safetensors (memory = model size)",
        model_dir,
    )
    model = load_model(str(model_dir), models_cfg)
    converted = scratch / "converted"
    model.save_pretrained(str(converted))
    del model
    return converted


def _check_mapping(mapping: TokenMapping, source_tokenizer: Any, target_tokenizer: Any) -> None:
    n_tgt = len(target_tokenizer)
    if n_tgt != mapping.target_vocab_size:
        raise InputError(
            f"the target tokenizer has {n_tgt} tokens but the mapping has {mapping.target_vocab_size} entries; "
            f"the mapping was made for another target tokenizer. Rerun the align stage with this tokenizer."
        )
    if mapping.source_vocab_size != len(source_tokenizer):
        raise InputError(
            f"the mapping was made for a source tokenizer of {mapping.source_vocab_size} tokens, this one has "
            f"{len(source_tokenizer)}; rerun the align stage with the run's source tokenizer."
        )
    for side, tok, want in (
        ("target", target_tokenizer, mapping.target_checksum),
        ("source", source_tokenizer, mapping.source_checksum),
    ):
        if not want:
            log.warning("the mapping has no %s tokenizer checksum; cannot verify it was made for this tokenizer", side)
            continue
        have = tokenizer_checksum(tok)
        if have != want:
            raise InputError(
                f"the mapping was made for another {side} tokenizer (checksum {want[:12]}..., this one "
                f"{have[:12]}...). Rerun the align stage (vocabadapt run CONFIG --from align) so mapping and "
                f"tokenizers match."
            )


def _special_ids(tok: Any) -> dict[str, int | None]:
    return {k: getattr(tok, k, None) for k in ("bos_token_id", "eos_token_id", "pad_token_id")}


def _write_hf_configs(
    config: Any,
    model_dir: Path,
    out: Path,
    target_tokenizer: Any,
    n_tgt: int,
    n_rows: int,
    out_dtype: torch.dtype | None,
) -> dict[str, int | None]:
    """Save config.json and generation_config.json for the target vocabulary into `out`.

    Special-token ids become the target tokenizer's; padding rows n_tgt..n_rows-1 are suppressed in
    generation. Returns the special ids written.
    """
    from transformers import GenerationConfig

    ids = _special_ids(target_tokenizer)
    src_ids = {k: getattr(config, k, None) for k in ids}
    text_config = config.get_text_config()
    text_config.vocab_size = n_rows
    for k, v in ids.items():
        setattr(config, k, v)
        if text_config is not config:
            setattr(text_config, k, v)
    if getattr(config, "decoder_start_token_id", None) is not None:
        same_as_pad = config.decoder_start_token_id == src_ids.get("pad_token_id")
        config.decoder_start_token_id = ids["pad_token_id"] if same_as_pad else ids["bos_token_id"]
    if out_dtype is not None:
        config.dtype = out_dtype
    config.save_pretrained(str(out))

    if (model_dir / "generation_config.json").is_file():
        gen = GenerationConfig.from_pretrained(str(model_dir))
    else:
        gen = GenerationConfig.from_model_config(config)
    if gen.suppress_tokens:
        log.warning(
            "dropping the source generation config's suppress_tokens %s: they are source ids", gen.suppress_tokens[:10]
        )
    gen.suppress_tokens = list(range(n_tgt, n_rows)) or None
    for k, v in ids.items():
        setattr(gen, k, v)
    if getattr(gen, "decoder_start_token_id", None) is not None:
        gen.decoder_start_token_id = config.decoder_start_token_id
    gen.save_pretrained(str(out))
    return ids


def _build_matrices(
    model_dir: Path,
    weight_map: dict[str, str],
    where: dict[str, Any],
    recipe: initialisers.Recipe,
    *,
    n_tgt: int,
    n_rows: int,
    n_src_tok: int,
    seed: int,
    norm_match: bool,
    out_dtype: torch.dtype | None,
    scratch: Path,
    ctx: initialisers.InitContext,
    initialiser: initialisers.Initialiser,
) -> dict[str, Any]:
    """Build the target input embedding, output head (when untied) and head bias, spilled to `scratch`.

    An initialiser with a refine step (Initialiser.refine) gets the built input rows and may return new input
    rows and the head's own rows; for a tied model those make the written model untied: the head is
    added to the checkpoint under its parameter name (`where` is updated).
    Returns {"replacements": {key: spilled}, "added": {key: spilled} (tensors the source lacks),
             "zero_ids", "dtype", "untied", "refine_seconds"}.
    Raises:
        InputError: an output head with fewer rows than the source tokenizer.
    """
    in_key, out_key, bias_key, tied = where["input"], where["output"], where["bias"], where["tied"]
    common: dict[str, Any] = dict(
        recipe=recipe, n_used=n_src_tok, n_rows=n_rows, norm_match=norm_match, out_dtype=out_dtype
    )
    # One matrix at a time: source rows in, target rows built, target rows spilled to scratch, so the
    # peak is one source plus one target matrix (and one float64 block), not all four.
    zero = torch.zeros(n_tgt, dtype=torch.bool)
    replacements: dict[str, Spilled] = {}
    src_in = read_tensor(model_dir / weight_map[in_key], in_key)  # (source_rows, hidden)
    new_in = build_rows(src_in, seed=seed, name=in_key, **common)  # (target_rows, hidden)
    del src_in
    refine, init = initialiser.refine, initialiser.name
    refined_out = None  # (target_rows, hidden): the head's own rows, when a refine step gives them
    started = time.perf_counter()
    if refine is not None:
        new_in, refined_out = refine(ctx, recipe, new_in)
        for what, t in (("input", new_in), ("output", refined_out)):
            if t is not None and (tuple(t.shape) != (n_rows, new_in.shape[1]) or not bool(torch.isfinite(t).all())):
                raise AssertionError(
                    f"initialiser {init}: refined {what} rows have shape {tuple(t.shape)} "
                    f"(want {(n_rows, new_in.shape[1])}) or are not finite"
                )
    refine_seconds = round(time.perf_counter() - started, 1) if refine is not None else None
    untie = tied and refined_out is not None
    zero |= zero_rows(new_in[:n_tgt])
    out_dtype_name = str(new_in.dtype).removeprefix("torch.")
    replacements[in_key] = Spilled.write(new_in, scratch / "input.bin")
    del new_in
    added: dict[str, Spilled] = {}
    if refined_out is not None and untie:
        zero |= zero_rows(refined_out[:n_tgt])
        head = Spilled.write(refined_out, scratch / "output.bin")
        if out_key is not None:  # this tied checkpoint stores the head too: rewrite it
            replacements[out_key] = head
        else:
            out_key = _key_for_new_tensor(where["output_param"], in_key, where["input_param"])
            added[out_key] = head
            weight_map[out_key] = weight_map[in_key]  # the head goes into the input embedding's file
            where["output"] = out_key
        log.info("transplant: %s gives the output head its own rows; writing the model untied (%s)", init, out_key)
    elif tied and out_key is not None:
        replacements[out_key] = replacements[in_key]
    if out_key is not None and not tied:
        if refined_out is not None:
            new_out = refined_out
        else:
            src_out = read_tensor(model_dir / weight_map[out_key], out_key)  # (source_rows, hidden)
            if src_out.shape[0] < n_src_tok:
                raise InputError(
                    f"the output head '{out_key}' has {src_out.shape[0]} rows, fewer than the source "
                    f"tokenizer's {n_src_tok} tokens"
                )
            new_out = build_rows(src_out, seed=seed + 1, name=out_key, **common)
            del src_out
        zero |= zero_rows(new_out[:n_tgt])
        replacements[out_key] = Spilled.write(new_out, scratch / "output.bin")
        del new_out
    del refined_out
    if bias_key is not None:
        bias = read_tensor(model_dir / weight_map[bias_key], bias_key)[:, None]  # (source_rows, 1), same recipe
        new_bias = build_rows(bias, seed=seed + 2, name=bias_key, **common)[:, 0].contiguous()
        replacements[bias_key] = Spilled.write(new_bias, scratch / "bias.bin")
    return {
        "replacements": replacements,
        "added": added,
        "zero_ids": zero.nonzero().flatten().tolist(),
        "dtype": out_dtype_name,
        "untied": untie,
        "refine_seconds": refine_seconds,
    }


def _key_for_new_tensor(head_param: str, in_key: str, in_param: str) -> str:
    """Checkpoint key for a head tensor the source checkpoint lacks: its parameter name, with the prefix
    convention of the input embedding's key (a checkpoint saved without the base-model prefix stores
    'embed_tokens.weight' for 'model.embed_tokens.weight'; the head 'lm_head.weight' has no prefix)."""
    if in_key == in_param or not in_param.endswith(in_key):
        return head_param
    dropped = in_param[: len(in_param) - len(in_key)]  # e.g. "model."
    return head_param.removeprefix(dropped)


def _transplant(
    model_dir: Path,
    source_tokenizer: Any,
    target_tokenizer: Any,
    mapping: TokenMapping,
    out_dir: Path,
    scratch: Path,
    *,
    initialiser: initialisers.Initialiser,
    norm_match: bool,
    pad_to_multiple_of: int,
    dtype: str,
    seed: int,
    trust_remote_code: bool,
    calibration: Calibration | None = None,
) -> dict[str, Any]:
    """transplant_model after its checks; `scratch` holds the built matrices until they are written."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(str(model_dir), trust_remote_code=trust_remote_code)
    files, weight_map = _weight_map(model_dir)
    where = locate_embeddings(model_dir, config, list(weight_map), trust_remote_code)
    in_key, bias_key, tied = where["input"], where["bias"], where["tied"]
    n_src_tok = len(source_tokenizer)
    n_src_rows = _source_rows(model_dir, weight_map, in_key, n_src_tok)

    ctx = initialisers.InitContext(
        mapping=mapping,
        source_tokenizer=source_tokenizer,
        target_tokenizer=target_tokenizer,
        seed=seed,
        load_source_model=functools.partial(load_frozen_model, model_dir, trust_remote_code),
        calibration=calibration,
    )
    recipe = _checked_recipe(initialiser.recipe, ctx, n_src_rows, n_src_tok)

    n_tgt = len(target_tokenizer)
    n_rows = -(-n_tgt // pad_to_multiple_of) * pad_to_multiple_of
    out_dtype = DTYPE_NAMES[dtype] if dtype != "auto" else None
    built = _build_matrices(
        model_dir,
        weight_map,
        where,
        recipe,
        n_tgt=n_tgt,
        n_rows=n_rows,
        n_src_tok=n_src_tok,
        seed=seed,
        norm_match=norm_match,
        out_dtype=out_dtype,
        scratch=scratch,
        ctx=ctx,
        initialiser=initialiser,
    )
    zero_ids, untied = built["zero_ids"], built["untied"]
    out_key = where["output"]  # _build_matrices names the head it adds to a tied checkpoint

    with atomic_dir(out_dir) as tmp:
        rewritten, copied = _write_weights(
            model_dir, tmp, files, weight_map, built["replacements"], built["added"], out_dtype, trust_remote_code
        )
        if untied:
            config.tie_word_embeddings = False
            config.get_text_config().tie_word_embeddings = False
        ids = _write_hf_configs(config, model_dir, tmp, target_tokenizer, n_tgt, n_rows, out_dtype)
        target_tokenizer.save_pretrained(str(tmp))

        summary = {
            "init": initialiser.name,
            "norm_match": norm_match,
            "seed": seed,
            "rows_per_method": recipe.counts(),
            "rows_copied": recipe.copied_rows(),
            "zero_rows": len(zero_ids),
            "zero_row_ids": zero_ids[:50],
            "tied": tied and not untied,
            "untied_by_init": untied,
            "refine_seconds": built["refine_seconds"],
            "source_vocab_size": n_src_tok,
            "source_rows": n_src_rows,
            "target_vocab_size": n_tgt,
            "target_rows": n_rows,
            "padding_rows": n_rows - n_tgt,
            "padding": "zero rows, listed in generation_config.suppress_tokens",
            "mapping_checksum": mapping.checksum(),
            "tensors": {"input": in_key, "output": out_key, "output_bias": bias_key},
            "files_rewritten": rewritten,
            "files_copied": copied,
            "dtype": built["dtype"],
            "special_ids": ids,
            **({"init_info": ctx.info} if ctx.info else {}),
        }
        write_json(tmp / TRANSPLANT_SUMMARY, summary)
    log.info(
        "transplant: %d target rows (%d padding), %s; %d copied rows, %d zero rows; wrote %s",
        n_tgt,
        n_rows - n_tgt,
        "tied" if tied and not untied else "untied",
        summary["rows_copied"],
        len(zero_ids),
        out_dir,
    )
    if zero_ids:
        log.warning("transplant: %d target rows are all zero (e.g. ids %s)", len(zero_ids), zero_ids[:10])
    return summary


def _weight_map(model_dir: Path) -> tuple[list[str], dict[str, str]]:
    """The checkpoint's safetensors files and its tensor -> file map (a single file's, from its header)."""
    files, weight_map = checkpoint_files(model_dir)
    if weight_map is None:
        _, header = read_header(model_dir / SINGLE_FILE)
        weight_map = {k: SINGLE_FILE for k in header if k != "__metadata__"}
    return files, weight_map


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


def _write_weights(
    model_dir: Path,
    tmp: Path,
    files: list[str],
    weight_map: dict[str, str],
    replacements: dict[str, Spilled],
    added: dict[str, Spilled],
    convert: torch.dtype | None,
    trust_remote_code: bool,
) -> tuple[list[str], list[str]]:
    """The weight files rewritten (new rows, added tensors, a dtype change) and copied into `tmp`.

    Also writes the index of a sharded checkpoint and, under trust_remote_code, the model's own code.
    """
    by_file: dict[str, dict[str, Spilled]] = {}
    for key, t in replacements.items():
        by_file.setdefault(weight_map[key], {})[key] = t
    added_by_file: dict[str, dict[str, Spilled]] = {}
    for key, t in added.items():
        added_by_file.setdefault(weight_map[key], {})[key] = t
    rewritten, copied = [], []
    for name in files:
        if name in by_file or name in added_by_file or convert is not None:
            stream_rewrite(model_dir / name, tmp / name, by_file.get(name, {}), convert, added=added_by_file.get(name))
            rewritten.append(name)
        else:
            shutil.copyfile(model_dir / name, tmp / name)
            copied.append(name)
    if (model_dir / INDEX_FILE).is_file():
        index = json.loads((model_dir / INDEX_FILE).read_text(encoding="utf-8"))
        index["weight_map"].update({k: weight_map[k] for k in added})
        index.setdefault("metadata", {})["total_size"] = sum(tensor_sizes(tmp / name) for name in files)
        write_json(tmp / INDEX_FILE, index)
    if trust_remote_code:
        for py in model_dir.glob("*.py"):  # the model's own code travels with it (auto_map)
            shutil.copyfile(py, tmp / py.name)
    return rewritten, copied
