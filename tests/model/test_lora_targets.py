"""LoRA target names checked against the model itself (loaded, or built on the meta device)."""

from __future__ import annotations

import pytest

from helpers import tiny_model
from vocabadapt.audit.model_meta import meta_model
from vocabadapt.errors import InputError
from vocabadapt.model.keys import linear_module_names, lora_targets, unmatched_targets

LLAMA = ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"]


@pytest.mark.parametrize(
    "arch, names",
    [
        ("llama", LLAMA),
        ("mistral", LLAMA),
        ("gpt2", ["c_attn", "c_fc", "c_proj"]),
        ("gpt_neox", ["dense", "dense_4h_to_h", "dense_h_to_4h", "query_key_value"]),
    ],
)
def test_meta_model_from_a_config_dict_has_the_loaded_models_names(arch, names):
    model = tiny_model(arch)
    assert linear_module_names(model) == names  # the head (lm_head / embed_out) is never a target
    meta = meta_model(model.config.to_dict())
    assert linear_module_names(meta) == names
    assert next(meta.parameters()).is_meta


def test_lora_targets_all_linear_null_suffixes_and_misses():
    model = tiny_model("llama")
    assert lora_targets(model, None) == LLAMA and lora_targets(model, "all-linear") == LLAMA
    assert lora_targets(model, ["self_attn.q_proj", "v_proj"]) == ["self_attn.q_proj", "v_proj"]
    assert unmatched_targets(model, ["mlp.q_proj", "lm_head", "embed_tokens", "up_proj"]) == [
        "mlp.q_proj",
        "lm_head",
        "embed_tokens",
    ]
    with pytest.raises(
        InputError,
        match=r"\['query_key_value'\] are not linear layers of LlamaForCausalLM; its "
        r"linear projections are \['down_proj'",
    ):
        lora_targets(model, ["q_proj", "query_key_value"])


def test_unknown_model_type_builds_no_meta_model():
    assert meta_model({"model_type": "no_such_architecture", "hidden_size": 8}) is None
