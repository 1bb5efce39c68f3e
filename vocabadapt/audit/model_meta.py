"""Model arithmetic from a meta-device model: parameters and LoRA targets asked of the architecture itself.

The model is built from its config.json on torch's meta device (no memory, no weights, well under a
second even for 7B), so parameter counts are exact for every architecture transformers knows, and the
LoRA target names are exactly the ones training accepts (vocabadapt.model.keys.linear_module_names).
There is no table of modules per model family. A model type transformers cannot build gives None; the
callers then fall back to an approximation they label as such.
"""

from __future__ import annotations

import functools
import json
import logging
from typing import Any

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=8)
def _build(config_json: str) -> Any | None:
    try:
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM

        data = json.loads(config_json)
        config = AutoConfig.for_model(data.pop("model_type", ""), **data)
        with torch.device("meta"):
            return AutoModelForCausalLM.from_config(config)
    except Exception as e:  # unknown model types, configs transformers refuses: the caller falls back
        log.debug("no meta-device model for this config (%s: %s)", type(e).__name__, e)
        return None


def meta_model(mc: dict[str, Any]) -> Any | None:
    """The causal LM of a config.json dict on the meta device, or None when transformers cannot build it."""
    return _build(json.dumps(mc, sort_keys=True, default=str))


def parameter_count(mc: dict[str, Any]) -> int | None:
    """Exact parameters of the model (a tied matrix counted once), or None."""
    model = meta_model(mc)
    return None if model is None else sum(p.numel() for p in model.parameters())


def lora_targets(mc: dict[str, Any]) -> list[str] | None:
    """The module names training accepts as LoRA targets (every linear projection but the head), or None."""
    from ..model.keys import linear_module_names

    model = meta_model(mc)
    return None if model is None else linear_module_names(model)


def lora_parameter_count(mc: dict[str, Any], r: int, targets: list[str] | None = None) -> int | None:
    """LoRA parameters: r × (in + out) for every targeted linear module (None = every linear projection)."""
    import torch
    from transformers.pytorch_utils import Conv1D

    from ..model.keys import linear_module_names

    model = meta_model(mc)
    if model is None:
        return None
    wanted = set(targets or linear_module_names(model))
    head = model.get_output_embeddings()
    total = 0
    for name, module in model.named_modules():
        if module is head or name.rsplit(".", 1)[-1] not in wanted:
            continue
        if isinstance(module, torch.nn.Linear):
            total += r * (module.in_features + module.out_features)
        elif isinstance(module, Conv1D):  # weight (in, out)
            total += r * sum(module.weight.shape)
    return total
