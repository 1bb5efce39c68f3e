"""Transplant: rebuild a Hugging Face causal LM for the target tokenizer.

The only tensors that change are the input embedding and the output head (one tensor when tied).
Their checkpoint names come from the architecture itself: the model is built on the meta device from
its config (no memory, no weights) and `get_input_embeddings()` / `get_output_embeddings()` name the
parameters; the checkpoint key is the one that transformers' own load-time renaming maps onto that
parameter. There is no table of names per model family.

Weights are never loaded as a model. Every safetensors file of the checkpoint is either copied
unchanged (the usual case for all shards but one or two) or rewritten by streaming: its header is
re-made and the byte ranges of the untouched tensors are copied in chunks, so peak memory is about
the size of the source and target embedding matrices, not of the model. (The safetensors library
only writes whole in-memory dicts; the file format is a JSON header plus raw little-endian buffers,
https://github.com/huggingface/safetensors#format, which is what `_stream_rewrite` writes.)

Rows are built in float64 from a `vocabadapt.init.Recipe` and cast back to the checkpoint's dtype,
so a copied row is bit-identical to its source row. Padding rows (the target vocabulary rounded up to
`pad_to_multiple_of`) are zero in both matrices and listed in the generation config's
`suppress_tokens`, so `generate()` can never produce them; anything computing probabilities over the
vocabulary should use only the first len(tokenizer) logits (the padding logits are exactly 0).
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from . import init as initialisers
from .config import ModelsConfig
from .errors import InputError
from .io import atomic_dir, write_json
from .mapping import TokenMapping, tokenizer_checksum

log = logging.getLogger(__name__)

INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"
COPY_CHUNK = 64 << 20  # bytes per read when copying an untouched tensor's bytes

# safetensors dtype codes of the float types rows are built in and converted to
_ST_FLOAT = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}
_ST_CODE = {v: k for k, v in _ST_FLOAT.items()}
_DTYPE_NAMES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


# --------------------------------------------------------------------------------------------------
# safetensors files, read and written without loading the model


def _read_header(path: Path) -> tuple[int, dict[str, Any]]:
    """(byte offset where the data buffer starts, header dict) of a safetensors file."""
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise InputError(f"{path} is not a safetensors file (too short); re-save the model")
        (n,) = struct.unpack("<Q", raw)
        try:
            header = json.loads(f.read(n))
        except ValueError as e:
            raise InputError(f"{path}: unreadable safetensors header ({e}); re-save the model") from None
    return 8 + n, header


def _tensor_bytes(t: torch.Tensor) -> memoryview:
    # (numel * itemsize,) uint8 view of a contiguous CPU tensor; bf16 has no numpy dtype, uint8 does
    return memoryview(t.detach().contiguous().cpu().reshape(-1).view(torch.uint8).numpy())


def read_tensor(path: Path, name: str) -> torch.Tensor:
    """One tensor of a safetensors file, read with plain file reads.

    (safe_open maps the file; the mapped pages would count in the process's resident memory on top
    of the tensor's own copy, doubling the transplant's peak.)
    Raises:
        InputError: the file lacks the tensor, or it is not a float tensor.
    """
    start, header = _read_header(path)
    info = header.get(name)
    if info is None:
        raise InputError(f"{path} has no tensor '{name}'; is the index (model.safetensors.index.json) stale?")
    if info["dtype"] not in _ST_FLOAT:
        raise InputError(f"{path}: tensor '{name}' has dtype {info['dtype']}, expected a float type")
    a, b = info["data_offsets"]
    t = torch.empty(info["shape"], dtype=_ST_FLOAT[info["dtype"]])
    buf = _tensor_bytes(t)
    if len(buf) != b - a:
        raise InputError(f"{path}: tensor '{name}' has {b - a} bytes, its shape needs {len(buf)}; re-save the model")
    with open(path, "rb") as f:
        f.seek(start + a)
        if f.readinto(buf) != b - a:
            raise InputError(f"{path} is truncated (tensor {name}); re-download or re-save the model")
    return t


@dataclass
class Spilled:
    """A built tensor parked in a raw little-endian file until its shard is written (frees memory)."""

    path: Path
    dtype: torch.dtype
    shape: tuple[int, ...]

    @classmethod
    def write(cls, t: torch.Tensor, path: Path) -> "Spilled":
        with open(path, "wb") as f:
            f.write(_tensor_bytes(t))
        return cls(path, t.dtype, tuple(t.shape))

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * torch.empty((), dtype=self.dtype).element_size()


def _copy_bytes(f, out, pos: int, left: int, what: str) -> None:
    f.seek(pos)
    while left:
        chunk = f.read(min(left, COPY_CHUNK))
        if not chunk:
            raise InputError(f"{what} is truncated; re-download or re-save the model")
        out.write(chunk)
        left -= len(chunk)


def _stream_rewrite(src: Path, dst: Path, replacements: dict[str, Spilled],
                    convert: torch.dtype | None = None) -> None:
    """Write `dst` = `src` with some tensors replaced (and, with `convert`, float tensors cast).

    Every tensor's bytes are copied in COPY_CHUNK pieces; a converted tensor is read alone.
    """
    start, header = _read_header(src)
    meta = header.pop("__metadata__", None)
    missing = set(replacements) - set(header)
    if missing:
        raise InputError(f"{src} lacks the tensor(s) {sorted(missing)} that should be rewritten")
    names = sorted(header, key=lambda k: header[k]["data_offsets"][0])  # keep the file's order
    plan: list[tuple[str, str]] = []  # (name, how): replace / convert / raw
    new_header: dict[str, Any] = {"__metadata__": meta} if meta is not None else {}
    offset = 0
    for name in names:
        info = header[name]
        if name in replacements:
            r = replacements[name]
            code, shape, nbytes, how = _ST_CODE[r.dtype], list(r.shape), r.nbytes, "replace"
        elif convert is not None and info["dtype"] in _ST_FLOAT and _ST_FLOAT[info["dtype"]] != convert:
            code, shape, how = _ST_CODE[convert], info["shape"], "convert"
            nbytes = math.prod(shape) * torch.empty((), dtype=convert).element_size()
        else:
            code, shape, how = info["dtype"], info["shape"], "raw"
            nbytes = info["data_offsets"][1] - info["data_offsets"][0]
        plan.append((name, how))
        new_header[name] = {"dtype": code, "shape": shape, "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    blob = json.dumps(new_header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)  # the format pads the header to 8-byte alignment with spaces
    with open(dst, "wb") as out, open(src, "rb") as f:
        out.write(struct.pack("<Q", len(blob)))
        out.write(blob)
        for name, how in plan:
            if how == "replace":
                r = replacements[name]
                with open(r.path, "rb") as spilled:
                    _copy_bytes(spilled, out, 0, r.nbytes, f"{r.path} (built {name})")
            elif how == "convert":
                out.write(_tensor_bytes(read_tensor(src, name).to(convert)))
            else:
                a, b = header[name]["data_offsets"]
                _copy_bytes(f, out, start + a, b - a, f"{src} (tensor {name})")


def _checkpoint_files(model_dir: Path) -> tuple[list[str], dict[str, str] | None]:
    """(safetensors file names, weight_map of the index or None for a single file)."""
    index = model_dir / INDEX_FILE
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        except (ValueError, KeyError) as e:
            raise InputError(f"{index} is not a valid safetensors index ({e}); re-save the model") from None
        return sorted(set(weight_map.values())), weight_map
    if (model_dir / SINGLE_FILE).is_file():
        return [SINGLE_FILE], None
    raise InputError(f"{model_dir} has neither {SINGLE_FILE} nor {INDEX_FILE}; is it a safetensors model directory?")


# --------------------------------------------------------------------------------------------------
# which checkpoint tensors are the embeddings


def _meta_model(config: Any, trust_remote_code: bool) -> Any:
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)


def _param_name(model: Any, param: torch.nn.Parameter) -> str:
    for name, p in model.named_parameters(remove_duplicate=False):
        if p is param:
            return name
    raise InputError(f"{type(model).__name__}: embedding parameter not found among its parameters")


def _checkpoint_key(model: Any, param_name: str, keys: list[str]) -> str | None:
    """The checkpoint key that transformers loads into `param_name`, or None if there is none."""
    if param_name in keys:
        return param_name
    renamings = []
    try:  # transformers >= 5 renames some legacy keys on load (e.g. GPT-NeoX embed_out -> lm_head)
        from transformers.conversion_mapping import get_model_conversion_mapping
        from transformers.core_model_loading import WeightRenaming, apply_renamings

        renamings = [c for c in get_model_conversion_mapping(model) if isinstance(c, WeightRenaming)]
    except ImportError:  # older transformers: names on disk are the module names
        apply_renamings = None
    prefix = getattr(model, "base_model_prefix", "") or ""

    def variants(name: str) -> set[str]:
        # a checkpoint may be saved with or without the base-model prefix ("transformer.", "model.")
        out = {name}
        if prefix and name.startswith(prefix + "."):
            out.add(name[len(prefix) + 1:])
        elif prefix:
            out.add(f"{prefix}.{name}")
        return out

    wanted = variants(param_name)
    for key in keys:
        renamed = apply_renamings(key, renamings) if apply_renamings and renamings else key
        if renamed in wanted or key in wanted:
            return key
    return None


def _locate(model_dir: Path, config: Any, weight_keys: list[str], trust_remote_code: bool) -> dict[str, Any]:
    """Checkpoint keys of the input embedding, output head (and its bias), and whether they are tied."""
    model = _meta_model(config, trust_remote_code)
    emb, head = model.get_input_embeddings(), model.get_output_embeddings()
    if emb is None or head is None:
        raise InputError(f"{model_dir}: {type(model).__name__} exposes no input embedding or no output head; "
                         f"vocabadapt transplants causal LMs with both")
    tied = head.weight is emb.weight
    in_name = _param_name(model, emb.weight)
    in_key = _checkpoint_key(model, in_name, weight_keys)
    if in_key is None:
        raise InputError(f"{model_dir}: the checkpoint has no tensor for the input embedding '{in_name}'")
    out_name = _param_name(model, head.weight) if not tied else None
    out_key = None
    if tied:
        # some tied checkpoints store the head too; it is rewritten with the same rows
        for name, p in model.named_parameters(remove_duplicate=False):
            if p is emb.weight and name != in_name:
                out_key = _checkpoint_key(model, name, [k for k in weight_keys if k != in_key])
    else:
        out_key = _checkpoint_key(model, out_name, weight_keys)
        if out_key is None:
            raise InputError(f"{model_dir}: untied model but the checkpoint has no tensor for the output head "
                             f"'{out_name}'")
    bias = getattr(head, "bias", None)
    bias_key = None
    if isinstance(bias, torch.nn.Parameter):
        bias_key = _checkpoint_key(model, _param_name(model, bias), weight_keys)
    return {"input": in_key, "output": out_key, "bias": bias_key, "tied": tied,
            "input_param": in_name, "output_param": out_name or in_name}


# --------------------------------------------------------------------------------------------------
# building rows


def _row_stats(src: torch.Tensor, n_used: int, block: int = 2048) -> dict[str, torch.Tensor]:
    """Per-dimension mean and std and the mean row norm of src[:n_used], in float64, blockwise."""
    h = src.shape[1]
    total = torch.zeros(h, dtype=torch.float64)
    norms = torch.zeros((), dtype=torch.float64)
    for a in range(0, n_used, block):
        rows = src[a:min(a + block, n_used)].to(torch.float64)
        total += rows.sum(0)
        norms += rows.norm(dim=1).sum()
    mean = total / n_used
    sq = torch.zeros(h, dtype=torch.float64)
    for a in range(0, n_used, block):
        sq += ((src[a:min(a + block, n_used)].to(torch.float64) - mean) ** 2).sum(0)
    std = (sq / max(n_used - 1, 1)).sqrt()
    return {"mean": mean, "std": std, "mean_norm": norms / n_used}


def build_rows(src: torch.Tensor, recipe: initialisers.Recipe, n_used: int, n_rows: int, seed: int = 0,
               norm_match: bool = False, out_dtype: torch.dtype | None = None, name: str = "embedding",
               block: int = 2048) -> torch.Tensor:
    """Rows for the target vocabulary from source rows.

    Args:
        src: (source_rows, hidden) source matrix.
        recipe: one entry per target id (len(recipe) <= n_rows).
        n_used: source rows that belong to real source tokens (mean/std/random use src[:n_used]).
        n_rows: rows of the result; rows past len(recipe) are padding (zero).
        seed: seed of `random` rows.
        norm_match: rescale each combined row to the weighted mean norm of its source rows (mean rows
            to the mean norm of all source rows); exact copies and random rows are left as they are.
        out_dtype: dtype of the result (default: src's).
        name: the tensor's name, for error messages.
    Returns:
        (n_rows, hidden) tensor. Each row with sources is sum_j w_j * src[id_j], summed in float64 in
        the order listed, then cast (so a copy is bit-identical).
    Raises:
        InputError: a source id out of range; a built row with NaN or Inf.
    """
    n_src, h = src.shape
    n_tgt = len(recipe)
    out_dtype = out_dtype or src.dtype
    out = torch.zeros(n_rows, h, dtype=out_dtype)
    # The ragged recipe as flat arrays: row t's sources are flat_ids[starts[t] : starts[t] + lens[t]].
    lens = torch.tensor([len(i) for i in recipe.source_ids], dtype=torch.long)  # (n_tgt,)
    starts = torch.cumsum(lens, 0) - lens
    flat_ids = torch.tensor([s for ids in recipe.source_ids for s in ids], dtype=torch.long)
    flat_w = torch.tensor([x for w in recipe.weights for x in w], dtype=torch.float64)
    if len(flat_ids) and (int(flat_ids.min()) < 0 or int(flat_ids.max()) >= n_src):
        raise InputError(f"{name}: the recipe uses source ids outside 0..{n_src - 1} (the matrix has {n_src} rows)")
    labels = recipe.labels
    is_mean = torch.tensor([label in ("mean", "special") for label in labels]) & (lens == 0)
    is_random = torch.tensor([label == "random" for label in labels], dtype=torch.bool)
    is_zero = torch.tensor([label == "zero" for label in labels], dtype=torch.bool)
    first_w = torch.zeros(n_tgt, dtype=torch.float64)
    first_w[lens > 0] = flat_w[starts[lens > 0]]
    is_exact_copy = (lens == 1) & (first_w == 1.0)  # left untouched by norm_match
    # per-dimension mean/std and mean norm: a full pass over the source rows, only when some row needs them
    needs_stats = bool(is_mean.any() or is_random.any() or norm_match)
    stats = _row_stats(src, n_used) if needs_stats else {}
    for a in range(0, n_tgt, block):
        b = min(a + block, n_tgt)
        acc = torch.zeros(b - a, h, dtype=torch.float64)  # (block, hidden); small blocks bound the peak
        blens, bstarts = lens[a:b], starts[a:b]
        target_norm = torch.zeros(b - a, dtype=torch.float64)  # weighted mean norm of each row's sources
        copies = is_exact_copy[a:b].nonzero().flatten()  # the common case: one source row, weight 1
        for j in range(int(blens.max()) if b > a else 0):
            sel = ((blens > j) & ~is_exact_copy[a:b]).nonzero().flatten()  # rows with a j-th source
            rows = src[flat_ids[bstarts[sel] + j]].to(torch.float64)  # (len(sel), hidden)
            w = flat_w[bstarts[sel] + j]
            if norm_match:
                target_norm[sel] += w * rows.norm(dim=1)
            acc.index_add_(0, sel, rows.mul_(w[:, None]))  # sel is unique: acc[sel] + w * rows, exactly
        if needs_stats:
            acc[is_mean[a:b]] = stats["mean"]
        if norm_match:
            is_copy = is_exact_copy[a:b]
            target_norm[is_mean[a:b]] = stats["mean_norm"]
            have = acc.norm(dim=1)
            rescale = (have > 0) & ~is_copy & ~is_random[a:b] & ~is_zero[a:b]
            acc[rescale] *= (target_norm[rescale] / have[rescale])[:, None]
        out[a:b] = acc
        out[a + copies] = src[flat_ids[bstarts[copies]]].to(out_dtype)  # copied as they are, no float64 detour
    random_ids = is_random.nonzero().flatten()
    if len(random_ids):
        # (n_random, hidden): N(mean, std^2) per dimension of the source rows, seeded
        gen = torch.Generator().manual_seed(seed)
        draws = torch.randn(len(random_ids), h, generator=gen, dtype=torch.float64)
        out[random_ids] = (draws * stats["std"] + stats["mean"]).to(out_dtype)
    bad = [t for a in range(0, n_tgt, block)
           for t in (a + (~torch.isfinite(out[a:min(a + block, n_tgt)])).any(dim=1).nonzero().flatten()).tolist()]
    if bad:
        show = ", ".join(f"{t} ({labels[t]} from {recipe.source_ids[t][:5]})" for t in bad[:5])
        raise InputError(
            f"{name}: {len(bad)} built row(s) hold NaN or Inf, e.g. target id {show}. Check the source "
            f"model's rows (are they finite?) and the mapping's weights; with transplant.dtype float16 a "
            f"large row can overflow, use bfloat16 or float32."
        )
    return out


def _zero_rows(t: torch.Tensor, block: int = 4096) -> torch.Tensor:
    """(rows,) bool: which rows are all zero, computed blockwise (no full-size temporary)."""
    return torch.cat([(t[a:a + block] == 0).all(dim=1) for a in range(0, t.shape[0], block)] or
                     [torch.zeros(0, dtype=torch.bool)])


def _check_recipe_ids(recipe: initialisers.Recipe, n_src_rows: int, n_src_tokens: int) -> None:
    for t, (ids, w) in enumerate(zip(recipe.source_ids, recipe.weights)):
        for s in ids:
            if not 0 <= s < n_src_tokens:
                raise InputError(
                    f"mapping entry for target id {t} ({recipe.labels[t]}) uses source id {s}, outside the source "
                    f"tokenizer's ids 0..{n_src_tokens - 1} (the model has {n_src_rows} embedding rows). The mapping "
                    f"was made for another source tokenizer or model; rerun the align stage."
                )
        if len(ids) != len(w):
            raise InputError(f"mapping entry for target id {t}: {len(ids)} source ids but {len(w)} weights")


# --------------------------------------------------------------------------------------------------
# the transplant


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
) -> dict[str, Any]:
    """Write a copy of the source model rebuilt for the target tokenizer into `out_dir` (atomically).

    Args:
        source_model_dir: local HF model directory (safetensors; pickle only with allow_pickle).
        source_tokenizer, target_tokenizer: transformers tokenizers (the target one is saved to out_dir).
        mapping: one entry per target id; its checksums, when set, must match the two tokenizers.
        out_dir: the model directory to write (replaced as a whole on success).
        init: row initialiser name (vocabadapt.init.REGISTRY) or None for the mapping's per-token method.
        norm_match: rescale combined rows to their source rows' norm (see build_rows).
        pad_to_multiple_of: round the target rows up to a multiple of this (padding rows are zero and
            suppressed in generation).
        dtype: "auto" (the checkpoint's) or float32 / bfloat16 / float16 for every float tensor written.
        seed: seed of random rows (input rows use seed, output rows seed + 1).
        allow_pickle: load a pickle-only checkpoint (weights_only) instead of refusing it.
        trust_remote_code: allow a model whose config asks for its own code.
    Returns:
        the summary also written to out_dir/transplant.json.
    Raises:
        InputError: mismatched tokenizers/mapping, ids out of range, non-finite rows, unsafe weights.
        ConfigError: unknown initialiser.
    """
    from .hf import _check_remote_code, check_weights_safe

    model_dir = Path(source_model_dir)
    out_dir = Path(out_dir)
    models_cfg = ModelsConfig(allow_pickle=allow_pickle, trust_remote_code=trust_remote_code)
    recipe_fn = initialisers.get(init)  # unknown names fail before any work
    if dtype != "auto" and dtype not in _DTYPE_NAMES:
        raise InputError(f"transplant.dtype '{dtype}' is not one of auto, {', '.join(_DTYPE_NAMES)}")
    if not (model_dir / "config.json").is_file():
        raise InputError(f"{model_dir} has no config.json; is it a Hugging Face model directory?")
    _check_remote_code(model_dir, models_cfg, "model")
    check_weights_safe(model_dir, models_cfg)
    _check_mapping(mapping, source_tokenizer, target_tokenizer)

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".tmp-transplant-", dir=out_dir.parent) as scratch:
        if not _has_safetensors(model_dir):
            model_dir = _pickle_to_safetensors(model_dir, models_cfg, Path(scratch))
        return _transplant(model_dir, source_tokenizer, target_tokenizer, mapping, out_dir, Path(scratch),
                           recipe_fn=recipe_fn, init=init, norm_match=norm_match,
                           pad_to_multiple_of=pad_to_multiple_of, dtype=dtype, seed=seed,
                           trust_remote_code=trust_remote_code)


def _has_safetensors(model_dir: Path) -> bool:
    return (model_dir / INDEX_FILE).is_file() or (model_dir / SINGLE_FILE).is_file()


def _pickle_to_safetensors(model_dir: Path, models_cfg: ModelsConfig, scratch: Path) -> Path:
    """Allowed pickle checkpoints are loaded once (weights_only) and re-saved as safetensors."""
    from .hf import load_model

    log.warning("%s has only pickle weights; loading the whole model once to convert it to safetensors "
                "(memory = model size)", model_dir)
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
    for side, tok, want in (("target", target_tokenizer, mapping.target_checksum),
                            ("source", source_tokenizer, mapping.source_checksum)):
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


def _transplant(model_dir: Path, source_tokenizer: Any, target_tokenizer: Any, mapping: TokenMapping,
                out_dir: Path, scratch: Path, *, recipe_fn: Any, init: str | None, norm_match: bool,
                pad_to_multiple_of: int, dtype: str, seed: int, trust_remote_code: bool) -> dict[str, Any]:
    """transplant_model after its checks; `scratch` holds the built matrices until they are written."""
    from transformers import AutoConfig, GenerationConfig

    config = AutoConfig.from_pretrained(str(model_dir), trust_remote_code=trust_remote_code)
    files, weight_map = _checkpoint_files(model_dir)
    if weight_map is None:
        _, header = _read_header(model_dir / SINGLE_FILE)
        weight_map = {k: SINGLE_FILE for k in header if k != "__metadata__"}
    where = _locate(model_dir, config, list(weight_map), trust_remote_code)
    in_key, out_key, bias_key, tied = where["input"], where["output"], where["bias"], where["tied"]

    src_in = read_tensor(model_dir / weight_map[in_key], in_key)  # (source_rows, hidden)
    n_src_rows = src_in.shape[0]
    n_src_tok = len(source_tokenizer)
    if n_src_tok > n_src_rows:
        raise InputError(
            f"the source tokenizer has {n_src_tok} tokens but the model's input embedding '{in_key}' has only "
            f"{n_src_rows} rows; this tokenizer does not belong to this model (set models.source_tokenizer)."
        )

    ctx = initialisers.InitContext(mapping=mapping, source_tokenizer=source_tokenizer,
                                   target_tokenizer=target_tokenizer, seed=seed)
    recipe = recipe_fn(ctx)
    if len(recipe) != mapping.target_vocab_size:
        raise AssertionError(f"initialiser returned {len(recipe)} rows for {mapping.target_vocab_size} targets")
    _check_recipe_ids(recipe, n_src_rows, n_src_tok)

    n_tgt = len(target_tokenizer)
    n_rows = -(-n_tgt // pad_to_multiple_of) * pad_to_multiple_of
    out_dtype = _DTYPE_NAMES[dtype] if dtype != "auto" else None
    common = dict(recipe=recipe, n_used=n_src_tok, n_rows=n_rows, norm_match=norm_match, out_dtype=out_dtype)
    # One matrix at a time: source rows in, target rows built, target rows spilled to scratch, so the
    # peak is one source plus one target matrix (and one float64 block), not all four.
    zero = torch.zeros(n_tgt, dtype=torch.bool)
    replacements: dict[str, Spilled] = {}
    new_in = build_rows(src_in, seed=seed, name=in_key, **common)  # (target_rows, hidden)
    del src_in
    zero |= _zero_rows(new_in[:n_tgt])
    out_dtype_name = str(new_in.dtype).removeprefix("torch.")
    replacements[in_key] = Spilled.write(new_in, scratch / "input.bin")
    del new_in
    if tied and out_key is not None:
        replacements[out_key] = replacements[in_key]
    if out_key is not None and not tied:
        src_out = read_tensor(model_dir / weight_map[out_key], out_key)  # (source_rows, hidden)
        if src_out.shape[0] < n_src_tok:
            raise InputError(f"the output head '{out_key}' has {src_out.shape[0]} rows, fewer than the source "
                             f"tokenizer's {n_src_tok} tokens")
        new_out = build_rows(src_out, seed=seed + 1, name=out_key, **common)
        del src_out
        zero |= _zero_rows(new_out[:n_tgt])
        replacements[out_key] = Spilled.write(new_out, scratch / "output.bin")
        del new_out
    if bias_key is not None:
        bias = read_tensor(model_dir / weight_map[bias_key], bias_key)[:, None]  # (source_rows, 1), same recipe
        new_bias = build_rows(bias, seed=seed + 2, name=bias_key, **common)[:, 0].contiguous()
        replacements[bias_key] = Spilled.write(new_bias, scratch / "bias.bin")
    zero_ids = zero.nonzero().flatten().tolist()

    convert = out_dtype
    by_file: dict[str, dict[str, Spilled]] = {}
    for key, t in replacements.items():
        by_file.setdefault(weight_map[key], {})[key] = t

    with atomic_dir(out_dir) as tmp:
        rewritten, copied = [], []
        for name in files:
            if name in by_file or convert is not None:
                _stream_rewrite(model_dir / name, tmp / name, by_file.get(name, {}), convert)
                rewritten.append(name)
            else:
                shutil.copyfile(model_dir / name, tmp / name)
                copied.append(name)
        if (model_dir / INDEX_FILE).is_file():
            index = json.loads((model_dir / INDEX_FILE).read_text(encoding="utf-8"))
            index.setdefault("metadata", {})["total_size"] = sum(
                _tensor_sizes(tmp / name) for name in files
            )
            write_json(tmp / INDEX_FILE, index)
        if trust_remote_code:
            for py in model_dir.glob("*.py"):  # the model's own code travels with it (auto_map)
                shutil.copyfile(py, tmp / py.name)

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
        config.save_pretrained(str(tmp))

        if (model_dir / "generation_config.json").is_file():
            gen = GenerationConfig.from_pretrained(str(model_dir))
        else:
            gen = GenerationConfig.from_model_config(config)
        if gen.suppress_tokens:
            log.warning("dropping the source generation config's suppress_tokens %s: they are source ids",
                        gen.suppress_tokens[:10])
        gen.suppress_tokens = list(range(n_tgt, n_rows)) or None
        for k, v in ids.items():
            setattr(gen, k, v)
        if getattr(gen, "decoder_start_token_id", None) is not None:
            gen.decoder_start_token_id = config.decoder_start_token_id
        gen.save_pretrained(str(tmp))
        target_tokenizer.save_pretrained(str(tmp))

        summary = {
            "init": init,
            "norm_match": norm_match,
            "seed": seed,
            "rows_per_method": recipe.counts(),
            "rows_copied": recipe.copied_rows(),
            "zero_rows": len(zero_ids),
            "zero_row_ids": zero_ids[:50],
            "tied": tied,
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
            "dtype": out_dtype_name,
            "special_ids": ids,
            **({"init_info": ctx.info} if ctx.info else {}),
        }
        write_json(tmp / "transplant.json", summary)
    log.info("transplant: %d target rows (%d padding), %s; %d copied rows, %d zero rows; wrote %s",
             n_tgt, n_rows - n_tgt, "tied" if tied else "untied", summary["rows_copied"], len(zero_ids), out_dir)
    if zero_ids:
        log.warning("transplant: %d target rows are all zero (e.g. ids %s)", len(zero_ids), zero_ids[:10])
    return summary


def _tensor_sizes(path: Path) -> int:
    _, header = _read_header(path)
    return sum(v["data_offsets"][1] - v["data_offsets"][0] for k, v in header.items() if k != "__metadata__")


# --------------------------------------------------------------------------------------------------
# the pipeline stage


def run_stage(ctx: Any) -> dict[str, Any]:
    """Pipeline stage `transplant`: source model + run tokenizers + align/mapping.json -> model/init/.

    Raises:
        InputError: missing or mismatched inputs (see transplant_model).
    """
    from .hf import resolve_model_dir
    from .tokenizer_prep import load_run_tokenizer

    cfg = ctx.config
    if not cfg.models.source_model:
        raise InputError("models.source_model must be set to the model to transplant (local directory or HF id)")
    mapping_path = ctx.path("align", "mapping.json")
    if not mapping_path.is_file():
        raise InputError(f"{mapping_path} does not exist; run the align stage first")
    mapping = TokenMapping.load(mapping_path)
    source_tok = load_run_tokenizer(ctx.run_dir, "source")
    target_tok = load_run_tokenizer(ctx.run_dir, "target")
    model_dir = resolve_model_dir(cfg.models.source_model, cfg.tokenization.cache_dir)
    return transplant_model(
        model_dir, source_tok, target_tok, mapping, ctx.path("model", "init"),
        init=cfg.alignment.init, norm_match=cfg.alignment.norm_match,
        pad_to_multiple_of=cfg.transplant.pad_to_multiple_of, dtype=cfg.transplant.dtype,
        seed=cfg.alignment.seed, allow_pickle=cfg.models.allow_pickle,
        trust_remote_code=cfg.models.trust_remote_code,
    )
