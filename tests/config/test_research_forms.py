"""Configs written as the research repository writes them (tests/config/research_forms/*.yaml): they
load, every key they use reaches the validated config, and they audit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from vocabadapt.audit import Facts, audit, gather_facts
from vocabadapt.cli import main
from vocabadapt.config import load_config
from vocabadapt.config.loading import _Loader
from vocabadapt.errors import ConfigError

FORMS = Path(__file__).parent / "research_forms"
SEVEN = ["q_proj", "k_proj", "v_proj", "o_proj", "down_proj", "up_proj", "gate_proj"]
# A Mistral config.json shaped like BioMistral-7B's, two layers so the meta-device build is instant.
SMALL_MISTRAL = {
    "architectures": ["MistralForCausalLM"],
    "model_type": "mistral",
    "hidden_size": 64,
    "intermediate_size": 128,
    "max_position_embeddings": 32768,
    "num_attention_heads": 4,
    "num_hidden_layers": 2,
    "num_key_value_heads": 2,
    "tie_word_embeddings": False,
    "vocab_size": 320,
}


def _leaves(data: dict, prefix: str = ""):
    for k, v in data.items():
        path = f"{prefix}{k}"
        if isinstance(v, dict):
            yield from _leaves(v, path + ".")
        else:
            yield path, v


def _dotted(d: dict, path: str):
    for part in path.split("."):
        d = d[part]
    return d


@pytest.mark.parametrize("name", ["lora_string", "warmup_only", "warmup_disabled"])
def test_every_key_of_a_research_form_reaches_the_config(name):
    """No silent ignore: each key written in the file holds the written value after loading."""
    path = FORMS / f"{name}.yaml"
    written = yaml.load(path.read_text(), Loader=_Loader)  # YAML 1.2 floats, as load_config reads them
    dumped = load_config(path).model_dump(mode="json")
    checked = 0
    for key, value in _leaves(written):
        if key == "evaluation.qa":  # `qa: true|false` is the qa.enabled switch
            assert dumped["evaluation"]["qa"]["enabled"] is value
        elif key == "vocab_adaptation.lora_target_modules" and isinstance(value, str) and "," in value:
            assert _dotted(dumped, key) == [v.strip() for v in value.split(",")]
        elif key == "pipeline.run_root":  # a path: resolved against the config's folder
            assert _dotted(dumped, key) == str(FORMS / value)
        else:
            assert _dotted(dumped, key) == value, key
        checked += 1
    assert checked >= 8


def test_comma_separated_module_list_is_a_list_in_config_show(capsys):
    path = FORMS / "lora_string.yaml"
    assert load_config(path).vocab_adaptation.lora_target_modules == SEVEN
    assert main(["config", "show", str(path)]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["vocab_adaptation"]["lora_target_modules"] == SEVEN
    # --set takes the same form; all-linear is peft's word for every linear layer
    cfg = load_config(path, ["vocab_adaptation.lora_target_modules=q_proj, v_proj"])
    assert cfg.vocab_adaptation.lora_target_modules == ["q_proj", "v_proj"]
    assert load_config(FORMS / "warmup_disabled.yaml").vocab_adaptation.lora_target_modules == "all-linear"


@pytest.mark.parametrize(
    "value, words",
    [
        ("q_proj,,v_proj", "empty module name"),
        ("all-linear,q_proj", "'all-linear' stands alone"),
        (".*_proj", "regular expressions are not supported"),
        ("q_proj,q_proj", "listed twice"),
        ("''", "no module names"),
    ],
)
def test_bad_module_lists_name_the_key_and_the_fix(value, words):
    with pytest.raises(ConfigError) as e:
        load_config(FORMS / "lora_string.yaml", [f"vocab_adaptation.lora_target_modules={value}"])
    assert e.value.problems[0].startswith("vocab_adaptation.lora_target_modules [from --set]: ")
    assert words in e.value.problems[0]


def test_warmup_is_stage1_with_its_own_settings():
    cfg = load_config(FORMS / "warmup_only.yaml")
    s1, s2 = cfg.stage_training("stage1"), cfg.stage_training("stage2")
    assert (
        s1.enabled,
        s1.stage1_steps,
        s1.lr_stage1,
        s1.batch_size,
        s1.gradient_accumulation,
        s1.max_seq_length,
        s1.seed,
        s1.use_flash_attn,
        s1.bf16,
    ) == (True, 1000, 1e-4, 8, 8, 1024, 42, False, True)
    assert s1.stage1_optimizer == cfg.vocab_adaptation.stage1_optimizer  # not a warm-up key: vocab_adaptation's
    assert s2 is cfg.vocab_adaptation and s2.enabled is False  # stage 2 does not run
    # A warm-up key left out takes vocab_adaptation's value.
    partial = load_config(FORMS / "warmup_only.yaml", ["embedding_warmup.batch_size=null", "embedding_warmup.lr=null"])
    assert partial.stage_training("stage1").batch_size == 4 and partial.stage_training("stage1").lr_stage1 == 6.4e-4
    # Disabled: stage 1 is vocab_adaptation's own.
    off = load_config(FORMS / "warmup_disabled.yaml")
    assert off.stage_training("stage1") is off.vocab_adaptation


def test_warmup_with_both_stages_is_refused_naming_the_keys():
    with pytest.raises(ConfigError) as e:
        load_config(FORMS / "warmup_and_stages.yaml")
    (problem,) = e.value.problems
    assert problem.startswith(
        "embedding_warmup.enabled (line 8): embedding_warmup.enabled and vocab_adaptation.enabled are both true"
    )
    assert "Set vocab_adaptation.enabled: false" in problem and "embedding_warmup.enabled: false" in problem


def test_research_forms_audit_with_model_config(tmp_path):
    mc = tmp_path / "config.json"
    mc.write_text(json.dumps(SMALL_MISTRAL))
    facts = gather_facts(model_config=str(mc))
    # The seven names exist in a Mistral model (built on the meta device from config.json).
    lora = [f for f in audit(load_config(FORMS / "lora_string.yaml"), facts) if f.id == "lora"]
    assert [f.severity for f in lora] == ["info"] and "q_proj" in lora[0].message
    # A name the model lacks is an error that lists what it has.
    bad = load_config(FORMS / "lora_string.yaml", ["vocab_adaptation.lora_target_modules=q_proj,query_key_value"])
    (err,) = [f for f in audit(bad, facts) if f.id == "lora"]
    assert err.severity == "error" and err.evidence["unknown"] == ["query_key_value"]
    assert err.evidence["model_class"] == "MistralForCausalLM" and "gate_proj" in err.evidence["known"]
    # The CLI runs the same audit (exit 1: the research values have errors, e.g. shuffle off).
    assert main(["audit", str(FORMS / "lora_string.yaml"), "--model-config", str(mc)]) == 1


def test_warmup_audit_reviews_its_lr_against_its_batch():
    findings = audit(load_config(FORMS / "warmup_only.yaml"), Facts())
    ids = [f.id for f in findings]
    assert "lr_stage1" not in ids and "stage2_start" not in ids  # stage 1 is the warm-up; stage 2 does not run
    (lr,) = [f for f in findings if f.id == "warmup_lr"]
    # 8 × 8 sequences × 1,024 tokens = 65,536 tokens per step = 1/32 of the paper's 2,097,152.
    assert lr.key == "embedding_warmup.lr" and lr.evidence["tokens_per_step"] == 65_536
    assert lr.evidence["sqrt_scaled_lr"] == pytest.approx(6.4e-4 / 32**0.5)
    assert lr.evidence["linear_scaled_lr"] == pytest.approx(2e-5)
    budget = next(f for f in findings if f.id == "token_budget")
    assert budget.key == "embedding_warmup.steps"
    assert budget.evidence["stage1_tokens"] == 1000 * 64 * 1024 and budget.evidence["stage2_tokens"] == 0
    # A too-high warm-up lr is flagged like stage 1's would be, naming the warm-up's key.
    hot = audit(load_config(FORMS / "warmup_only.yaml", ["embedding_warmup.lr=1e-2"]), Facts())
    (lr,) = [f for f in hot if f.id == "warmup_lr"]
    assert lr.severity == "error" and lr.message.startswith("embedding_warmup.lr 1e-2 is")


def test_disabled_warmup_with_settings_is_reported():
    findings = audit(load_config(FORMS / "warmup_disabled.yaml"), Facts())
    (f,) = [f for f in findings if f.id == "warmup_unused"]
    assert f.key == "embedding_warmup.enabled" and f.evidence["keys"] == ["lr", "steps"]
    assert not [f for f in findings if f.id == "warmup_lr"]
