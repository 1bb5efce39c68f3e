"""Which checkpoint tensors are the input embedding and the output head, asked of the architecture.

The model is built on the meta device from its config (no memory, no weights) and
`get_input_embeddings()` / `get_output_embeddings()` name the parameters; the checkpoint key is the one
that transformers' own load-time renaming maps onto that parameter. There is no table of names per
model family.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch

from ..errors import InputError


def meta_model(config: Any, trust_remote_code: bool) -> Any:
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)


def param_name(model: Any, param: torch.nn.Parameter) -> str:
    for name, p in model.named_parameters(remove_duplicate=False):
        if p is param:
            return name
    raise InputError(f"{type(model).__name__}: embedding parameter not found among its parameters")


def checkpoint_key(model: Any, param_name: str, keys: list[str]) -> str | None:
    """The checkpoint key that transformers loads into `param_name`, or None if there is none."""
    if param_name in keys:
        return param_name
    renamings: list[Any] = []
    apply_renamings: Any = None
    try:  # transformers >= 5 renames some legacy keys on load (e.g. GPT-NeoX embed_out -> lm_head)
        from transformers.conversion_mapping import get_model_conversion_mapping
        from transformers.core_model_loading import WeightRenaming
        from transformers.core_model_loading import apply_renamings as _apply

        apply_renamings = _apply

        renamings = [c for c in get_model_conversion_mapping(model) if isinstance(c, WeightRenaming)]
    except ImportError:  # older transformers: names on disk are the module names
        pass
    prefix = getattr(model, "base_model_prefix", "") or ""

    def variants(name: str) -> set[str]:
        # a checkpoint may be saved with or without the base-model prefix ("transformer.", "model.")
        out = {name}
        if prefix and name.startswith(prefix + "."):
            out.add(name[len(prefix) + 1 :])
        elif prefix:
            out.add(f"{prefix}.{name}")
        return out

    wanted = variants(param_name)
    for key in keys:
        renamed = apply_renamings(key, renamings) if apply_renamings and renamings else key
        if renamed in wanted or key in wanted:
            return key
    return None


@dataclass(frozen=True)
class EmbeddingLocation:
    """Where a checkpoint keeps the tensors the transplant rewrites, and how the model uses them.

    input_key: checkpoint key of the input embedding (e.g. "model.embed_tokens.weight").
    output_key: checkpoint key of the output head; None for a tied model whose checkpoint stores only
        the input embedding.
    bias_key: checkpoint key of the head's bias, when the head has one.
    tied: the head's weight is the input embedding's parameter.
    input_param, output_param: the parameter names (model.named_parameters); for a tied model
        output_param is the head's own name when the architecture has one, else input_param.
    """

    input_key: str
    output_key: Optional[str]
    bias_key: Optional[str]
    tied: bool
    input_param: str
    output_param: str

    def new_head_key(self) -> str:
        """Checkpoint key for a head tensor a tied checkpoint lacks (when an initialiser unties the model):
        its parameter name, with the prefix convention of the input embedding's key (a checkpoint saved
        without the base-model prefix stores 'embed_tokens.weight' for 'model.embed_tokens.weight'; the
        head 'lm_head.weight' has no prefix)."""
        if self.input_key == self.input_param or not self.input_param.endswith(self.input_key):
            return self.output_param
        dropped = self.input_param[: len(self.input_param) - len(self.input_key)]  # e.g. "model."
        return self.output_param.removeprefix(dropped)


def locate_embeddings(
    model_dir: Path, config: Any, weight_keys: list[str], trust_remote_code: bool
) -> EmbeddingLocation:
    """Checkpoint keys of the input embedding, output head (and its bias), and whether they are tied.

    Raises:
        InputError: the architecture has no input embedding or head, or the checkpoint lacks its tensor.
    """
    model = meta_model(config, trust_remote_code)
    emb, head = model.get_input_embeddings(), model.get_output_embeddings()
    if emb is None or head is None:
        raise InputError(
            f"{model_dir}: {type(model).__name__} exposes no input embedding or no output head; "
            f"vocabadapt transplants causal LMs with both"
        )
    tied = head.weight is emb.weight
    in_name = param_name(model, emb.weight)
    in_key = checkpoint_key(model, in_name, weight_keys)
    if in_key is None:
        raise InputError(f"{model_dir}: the checkpoint has no tensor for the input embedding '{in_name}'")
    out_name = param_name(model, head.weight) if not tied else None
    out_key = None
    if tied:
        # some tied checkpoints store the head too; it is rewritten with the same rows
        for name, p in model.named_parameters(remove_duplicate=False):
            if p is emb.weight and name != in_name:
                out_name = name  # where the head's own tensor goes if an initialiser unties the model
                out_key = checkpoint_key(model, name, [k for k in weight_keys if k != in_key])
    else:
        out_key = checkpoint_key(model, str(out_name), weight_keys)
        if out_key is None:
            raise InputError(
                f"{model_dir}: untied model but the checkpoint has no tensor for the output head '{out_name}'"
            )
    bias = getattr(head, "bias", None)
    bias_key = None
    if isinstance(bias, torch.nn.Parameter):
        bias_key = checkpoint_key(model, param_name(model, bias), weight_keys)
    return EmbeddingLocation(in_key, out_key, bias_key, tied, in_name, out_name or in_name)


def _linear_modules(model: Any) -> list[str]:
    """Full names of every linear projection except the output head (what LoRA can wrap)."""
    from transformers.pytorch_utils import Conv1D  # GPT-2's linear layers

    head = model.get_output_embeddings()
    return [
        name
        for name, module in model.named_modules()
        if name and module is not head and isinstance(module, (torch.nn.Linear, Conv1D))
    ]


def linear_module_names(model: Any) -> list[str]:
    """Leaf names of every linear projection except the output head: LoRA's default targets (the names
    vocab_adaptation.lora_target_modules may use; the audit asks the same functions)."""
    return sorted({name.rsplit(".", 1)[-1] for name in _linear_modules(model)})


def unmatched_targets(model: Any, names: list[str]) -> list[str]:
    """The configured LoRA target names that select no linear projection of the model.

    A name matches as peft matches it: a module whose full name is the name or ends with "." + the name
    (`q_proj` and `self_attn.q_proj` both select `model.layers.0.self_attn.q_proj`); the head never matches.
    """
    full = _linear_modules(model)
    return [t for t in names if not any(n == t or n.endswith("." + t) for n in full)]


def lora_targets(
    model: Any, configured: str | list[str] | None, key: str = "vocab_adaptation.lora_target_modules"
) -> list[str]:
    """The LoRA target names to give peft for `configured`, checked against the model.

    Args:
        model: a causal LM (loaded, or built on the meta device).
        configured: None or "all-linear" (every linear projection but the head), or a list of names.
        key: the config key named in the error.
    Returns:
        The configured names, or every linear leaf name for None / "all-linear".
    Raises:
        InputError: a name selects no linear projection (the message lists the ones the model has).
    """
    from ..config import ALL_LINEAR

    available = linear_module_names(model)
    if configured is None or configured == ALL_LINEAR:
        if not available:
            raise InputError(
                f"{type(model).__name__} has no linear layers besides the output head; LoRA has "
                f"nothing to wrap (set vocab_adaptation.stage2_use_lora: false)"
            )
        return available
    missing = unmatched_targets(model, list(configured))
    if missing:
        raise InputError(
            f"{key} {missing} are not linear layers of {type(model).__name__}; its linear projections "
            f"are {available} (or set lora_target_modules: null or '{ALL_LINEAR}' to use all of them)"
        )
    return list(configured)
