"""The audit rule engine: every rule triggered and not triggered, the original research values, the CLI."""

from __future__ import annotations

import copy
import importlib
import json
from pathlib import Path

import pytest

from vocabadapt.audit import Facts, audit, count_parameters, format_text, gather_facts, parse_corpus_stats
from vocabadapt.audit.rules_setup import _enum_values
from vocabadapt.cli import main
from vocabadapt.config import load_config, validate_dict
from vocabadapt.errors import InputError

# Not `from vocabadapt import audit`: the package's `audit` is also the public function.
A = importlib.import_module("vocabadapt.audit")
REPO = Path(__file__).resolve().parents[2]

# The reviewed research config's training values (what the audit must flag).
ORIGINAL = {
    "models": {
        "source_model": "BioMistral/BioMistral-7B",
        "source_tokenizer": "BioMistral/BioMistral-7B",
        "target_tokenizer": "mistralai/Mistral-7B-v0.3",
    },
    "corpus": {"size_gb": 5},
    "embedding": {"backend": "fasttext", "fasttext": {"epochs": 30, "mincount": 1, "lr": 0.05}},
    "alignment": {"pivot_count": 2000, "similarity_threshold": 0.3},
    "vocab_adaptation": {
        "stage1_steps": 2500,
        "stage2_steps": 2500,
        "lr_stage1": 6.4e-4,
        "lr_stage2": 5e-5,
        "batch_size": 4,
        "gradient_accumulation": 16,
        "max_seq_length": 2048,
        "train_start_idx_stage2": 2560000,
        "seed": 0,
        "shuffle": False,
        "bf16": False,
        "stage2_use_lora": False,
    },
}

# A sane config: the research values fixed (what configs/research.yaml holds), no corpus size.
GOOD = {
    "vocab_adaptation": {
        "lr_stage1": 4e-5,
        "batch_size": 4,
        "gradient_accumulation": 16,
        "max_seq_length": 2048,
        "train_start_idx_stage2": "auto",
        "shuffle": True,
        "bf16": True,
    },
}

# Mistral-7B's config.json (BioMistral-7B has the same shape).
MISTRAL = {
    "architectures": ["MistralForCausalLM"],
    "model_type": "mistral",
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "max_position_embeddings": 32768,
    "num_attention_heads": 32,
    "num_hidden_layers": 32,
    "num_key_value_heads": 8,
    "tie_word_embeddings": False,
    "vocab_size": 32000,
}


def cfg(base: dict | None = None, **sections):
    """A validated Config: `base` with per-section key updates, e.g. cfg(GOOD, alignment={...})."""
    data = copy.deepcopy(base if base is not None else GOOD)
    for section, values in sections.items():
        data.setdefault(section, {}).update(values)
    return validate_dict(data, "test")


def by_id(findings, rule_id):
    return [f for f in findings if f.id == rule_id]


def one(findings, rule_id):
    got = by_id(findings, rule_id)
    assert len(got) == 1, (rule_id, [f.as_dict() for f in findings])
    return got[0]


def run_rule(name, config, facts=None):
    return A.RULES[name](config, facts or Facts())


def test_registry_lists_every_rule_tested_here():
    # A new rule must come with tests: this list is what the tests below cover.
    assert list(A.RULES) == [
        "lr_stage1",
        "warmup_lr",
        "warmup_unused",
        "distill_lr",
        "shuffle",
        "stage2_start",
        "token_budget",
        "stage2_memory",
        "distill_memory",
        "lora",
        "target_tokenizer",
        "vectors",
        "alignment",
        "eval_leak",
        "cloze_leak",
        "max_positions",
        "fasttext_ngrams",
        "precision",
        "batch_and_steps",
        "names",
    ]


# 1 ------------------------------------------------------------------------------------------------
def test_lr_stage1_original_is_flagged_with_scaled_values():
    f = one(run_rule("lr_stage1", cfg(ORIGINAL)), "lr_stage1")
    assert f.severity == "warning"
    ev = f.evidence
    assert ev["tokens_per_step"] == 4 * 16 * 2048 == 131_072
    assert ev["batch_ratio"] == pytest.approx(1 / 16)
    assert ev["sqrt_scaled_lr"] == pytest.approx(1.6e-4)
    assert ev["linear_scaled_lr"] == pytest.approx(4e-5)
    assert ev["lr_over_sqrt_scaled"] == pytest.approx(4.0)
    assert "1.6e-4" in f.message and "4e-5" in f.message and "above 1e-4" in f.message
    assert "4e-5" in f.recommendation


def test_lr_stage1_severities():
    # 10× above the square-root-scaled value is an error.
    f = one(run_rule("lr_stage1", cfg(GOOD, vocab_adaptation={"lr_stage1": 2e-3})), "lr_stage1")
    assert f.severity == "error"
    # Below 2× sqrt-scaled (3.2e-4) but above 1e-4 at a small batch: warning for embeddings-only.
    f = one(run_rule("lr_stage1", cfg(GOOD, vocab_adaptation={"lr_stage1": 1.5e-4})), "lr_stage1")
    assert f.severity == "warning" and "embeddings-only" in f.message
    # The fixed value and the paper's value at the paper's batch are fine.
    assert one(run_rule("lr_stage1", cfg(GOOD)), "lr_stage1").severity == "info"
    paper = cfg(GOOD, vocab_adaptation={"lr_stage1": 6.4e-4, "batch_size": 8, "gradient_accumulation": 128})
    f = one(run_rule("lr_stage1", paper), "lr_stage1")
    assert f.severity == "info" and f.evidence["batch_ratio"] == 1.0
    # Skipped stage 1: nothing to judge.
    assert run_rule("lr_stage1", cfg(GOOD, vocab_adaptation={"stage1_steps": 0})) == []


def test_lr_stage1_counts_processes():
    f = one(run_rule("lr_stage1", cfg(ORIGINAL, vocab_adaptation={"num_processes": 16})), "lr_stage1")
    # 16 processes × 64 sequences = the paper's 1,024 per step, so 6.4e-4 is right there.
    assert f.evidence["tokens_per_step"] == 2_097_152 and f.severity == "info"


# 2 ------------------------------------------------------------------------------------------------
def test_shuffle_off_is_an_error():
    f = one(run_rule("shuffle", cfg(ORIGINAL)), "shuffle")
    assert f.severity == "error" and f.key == "vocab_adaptation.shuffle"
    assert run_rule("shuffle", cfg(GOOD)) == []


# 3 ------------------------------------------------------------------------------------------------
def test_stage2_start_original_with_5m_documents(tmp_path):
    stats = tmp_path / "stats.json"
    stats.write_text(json.dumps({"documents": 5_000_000}))
    facts = gather_facts(corpus_stats=str(stats))
    f = one(run_rule("stage2_start", cfg(ORIGINAL), facts), "stage2_start")
    ev = f.evidence
    # Consumption per stage: 2,500 steps × 4 × 16 = 160,000 sequences = 327,680,000 tokens.
    assert ev["stage1_sequences"] == ev["stage2_sequences"] == 160_000
    assert ev["stage1_tokens"] == 327_680_000
    assert ev["auto_value"] == 160_000 and ev["start_sequence"] == 2_560_000
    assert ev["stage2_end_sequence"] == 2_720_000
    assert ev["skipped_sequences"] == 2_400_000
    assert ev["matches_paper_batch"] is True
    # 5 GB (corpus.size_gb) over 5,000,000 documents at 4 bytes/token: 1.25e9 tokens, 610,351.6 sequences.
    assert ev["corpus_measured"] is False
    assert ev["corpus_sequences"] == pytest.approx(5e9 / 4 / 2048)
    assert ev["stage1_fraction"] == pytest.approx(160_000 / (5e9 / 4 / 2048))
    assert f.severity == "error"  # 4.19× past the (estimated) end
    assert "2,500 steps × 1,024" in f.message and "160,000" in f.message and "ESTIMATE" in f.message
    assert "5,000,000 documents" in f.message
    # With auto both stages (320,000 sequences) fit in the ~610,352, so only the start index is advised.
    assert f.recommendation == "set train_start_idx_stage2: auto (= 160,000 here)"


def test_stage2_start_measured_cases():
    base = cfg(GOOD, vocab_adaptation={"train_start_idx_stage2": 100_000})
    # Re-reads stage 1's data: 160,000 - 100,000 = 60,000 sequences seen twice.
    f = one(run_rule("stage2_start", base, Facts(sequences=1_000_000)), "stage2_start")
    assert f.severity == "warning" and "re-reads 60,000" in f.message
    assert f.evidence["stage1_fraction"] == pytest.approx(0.16)
    # Wraps: auto start 160,000 + 160,000 > 300,000 sequences.
    f = one(run_rule("stage2_start", cfg(GOOD), Facts(sequences=300_000)), "stage2_start")
    assert f.severity == "warning" and "wraps" in f.message and "larger corpus" in f.recommendation
    # Past the end with measured counts: error.
    f = one(run_rule("stage2_start", cfg(ORIGINAL), Facts(sequences=2_000_000)), "stage2_start")
    assert f.severity == "error" and "past the end" in f.message
    # From target tokens: 1e9 / 2048 = 488,281.25 sequences; auto fits: info, no recommendation.
    f = one(run_rule("stage2_start", cfg(GOOD), Facts(tokens_target=1_000_000_000)), "stage2_start")
    assert f.severity == "info" and f.recommendation == ""
    assert f.evidence["corpus_sequences"] == pytest.approx(488_281.25)
    assert f.evidence["stage2_fraction"] == pytest.approx(160_000 / 488_281.25)


def test_stage2_start_without_statistics_says_what_auto_means():
    f = one(run_rule("stage2_start", cfg(GOOD)), "stage2_start")
    assert (
        f.severity == "info"
        and "Not checked" in f.message
        and "auto means stage 1's consumption = 160,000" in f.message
    )
    # Without counts but with documents: the average tokens per document the start index would need.
    orig = copy.deepcopy(ORIGINAL)
    orig["corpus"]["size_gb"] = 0
    f = one(run_rule("stage2_start", cfg(orig), Facts(documents=5_000_000)), "stage2_start")
    assert f.evidence["required_tokens_per_document"] == pytest.approx(2_720_000 * 2048 / 5_000_000)
    assert f.severity == "warning" and "2,500 steps × 1,024" in f.message


# 4 ------------------------------------------------------------------------------------------------
def test_token_budget():
    # 160,000 × 2,048 = 327,680,000 tokens per stage against 200,000,000: more than one epoch.
    f = one(run_rule("token_budget", cfg(GOOD), Facts(tokens_target=200_000_000)), "token_budget")
    assert f.severity == "warning" and f.evidence["stage1_epochs"] == pytest.approx(1.6384)
    f = one(run_rule("token_budget", cfg(GOOD), Facts(tokens_target=3_276_800_000)), "token_budget")
    assert f.severity == "info" and f.evidence["total_epochs"] == pytest.approx(0.2) and "10.0%" in f.message
    f = one(run_rule("token_budget", cfg(GOOD)), "token_budget")
    assert f.severity == "info" and f.message.startswith("not checked")


# 5 ------------------------------------------------------------------------------------------------
def test_parameter_count_mistral_7b():
    params, exact = count_parameters(MISTRAL)
    assert exact and params == 7_241_732_096  # Mistral-7B's published parameter count


@pytest.mark.parametrize(
    "arch,tie", [("gpt_neox", False), ("llama", False), ("gpt2", None), ("qwen2", False), ("mistral", True)]
)
def test_parameter_count_matches_real_models(arch, tie):
    from helpers import tiny_model

    model = tiny_model(arch, tie=tie)
    params, exact = count_parameters(model.config.to_dict())
    assert exact and params == sum(p.numel() for p in model.parameters())


def test_parameter_count_of_an_unknown_architecture_is_approximate():
    params, exact = count_parameters(
        {
            "model_type": "not_in_transformers",
            "vocab_size": 100,
            "hidden_size": 8,
            "num_hidden_layers": 2,
            "tie_word_embeddings": True,
        }
    )
    assert not exact and params == 12 * 2 * 64 + 800


def test_stage2_memory():
    orig = cfg(ORIGINAL)
    f = one(run_rule("stage2_memory", orig, Facts(model_config=MISTRAL, gpu_memory_gb=80)), "stage2_memory")
    # 16 bytes/param × 7,241,732,096 = 115.9e9 bytes = 107.9 GiB > 80.
    assert f.severity == "error"
    assert f.evidence["needed_gib"] == pytest.approx(7_241_732_096 * 16 / 2**30)
    assert f.evidence["bytes_per_param_full"] == 16
    assert "LoRA" in f.recommendation
    f = one(run_rule("stage2_memory", orig, Facts(model_config=MISTRAL, gpu_memory_gb=120)), "stage2_memory")
    assert f.severity == "warning"  # 90% of the GPU before activations
    lora = cfg(ORIGINAL, vocab_adaptation={"stage2_use_lora": True, "bf16": True})
    f = one(run_rule("stage2_memory", lora, Facts(model_config=MISTRAL, gpu_memory_gb=80)), "stage2_memory")
    assert f.severity == "info" and f.evidence["needed_gib"] < 25
    f = one(run_rule("stage2_memory", orig), "stage2_memory")
    assert f.severity == "info" and "not checked" in f.message and "16 bytes per parameter" in f.recommendation
    # 8-bit Adam: 4 + 4 + 2 bytes.
    f = one(
        run_rule(
            "stage2_memory",
            cfg(ORIGINAL, vocab_adaptation={"stage2_optimizer": "adamw_bnb_8bit"}),
            Facts(model_config=MISTRAL, gpu_memory_gb=75),
        ),
        "stage2_memory",
    )
    assert f.evidence["bytes_per_param_full"] == 10 and f.severity == "warning"  # 67.4 of 75 GiB
    assert f.evidence["needed_gib"] == pytest.approx(7_241_732_096 * 10 / 2**30)


def test_distill_memory_counts_the_teacher():
    assert run_rule("distill_memory", cfg(GOOD)) == []  # no distillation objective
    # Stage 1 shares the frozen body: only the source rows are extra (32,000 x 4,096 x 2 fp32 values = 0.98 GiB).
    s1 = cfg(GOOD, vocab_adaptation={"objective_stage1": "distill"})
    f = one(run_rule("distill_memory", s1, Facts(model_config=MISTRAL, gpu_memory_gb=80)), "distill_memory")
    assert f.severity == "info" and f.evidence["teacher_gib"] == pytest.approx(32_000 * 4096 * 2 * 4 / 2**30)
    # Stage 2 trains the body: a whole bf16 copy of the 7B teacher (7,241,732,096 x 2 bytes = 13.5 GiB) beside
    # 8-bit Adam's 67.4 GiB: 80.9 GiB > 80, so the teacher does not fit where the student alone would.
    s2 = cfg(GOOD, vocab_adaptation={"objective_stage2": "distill", "stage2_optimizer": "adamw_bnb_8bit"})
    f = one(run_rule("distill_memory", s2, Facts(model_config=MISTRAL, gpu_memory_gb=80)), "distill_memory")
    assert f.severity == "error" and "does not fit beside the student" in f.message
    assert f.evidence["teacher_gib"] == pytest.approx(7_241_732_096 * 2 / 2**30)
    assert f.evidence["needed_gib"] == pytest.approx(7_241_732_096 * (10 + 2) / 2**30)
    assert "13.5 GiB" in f.message and "80.9 GiB" in f.message
    lora = cfg(GOOD, vocab_adaptation={"objective_stage2": "distill", "stage2_use_lora": True})
    f = one(run_rule("distill_memory", lora, Facts(model_config=MISTRAL, gpu_memory_gb=80)), "distill_memory")
    assert f.severity == "info"
    f = one(run_rule("distill_memory", s2), "distill_memory")
    assert f.severity == "info" and "no model config" in f.message


def test_distill_lr():
    assert run_rule("distill_lr", cfg(GOOD)) == []
    hot = cfg(GOOD, vocab_adaptation={"objective_stage1": "distill", "lr_stage1": 1e-3})
    f = one(run_rule("distill_lr", hot), "distill_lr")
    assert f.severity == "warning" and f.key == "vocab_adaptation.lr_stage1"
    f = one(
        run_rule("distill_lr", cfg(GOOD, vocab_adaptation={"objective_stage1": "distill", "lr_stage1": 5e-3})),
        "distill_lr",
    )
    assert f.severity == "error"
    assert run_rule("distill_lr", cfg(GOOD, vocab_adaptation={"objective_stage1": "distill", "lr_stage1": 1e-4})) == []
    slow = cfg(GOOD, vocab_adaptation={"lr_embeddings": 1e-5, "lr_stage2": 5e-5})
    f = one(run_rule("distill_lr", slow), "distill_lr")
    assert f.severity == "warning" and f.key == "vocab_adaptation.lr_embeddings" and f.evidence["ratio"] == 0.2
    assert run_rule("distill_lr", cfg(GOOD, vocab_adaptation={"lr_embeddings": 5e-4, "lr_stage2": 5e-5})) == []


# 6 ------------------------------------------------------------------------------------------------
def test_lora_rules():
    assert run_rule("lora", cfg(GOOD)) == []  # LoRA off
    on = {"stage2_use_lora": True}
    f = one(run_rule("lora", cfg(GOOD, vocab_adaptation={**on, "lora_r": 64, "lora_alpha": 8})), "lora")
    assert f.severity == "warning" and f.evidence["scale"] == 0.125
    f = one(
        run_rule(
            "lora",
            cfg(GOOD, vocab_adaptation={**on, "lora_target_modules": ["query_key_value", "q_proj"]}),
            Facts(model_config=MISTRAL),
        ),
        "lora",
    )
    assert f.severity == "error" and f.evidence["unknown"] == ["query_key_value"]
    assert f.evidence["model_class"] == "MistralForCausalLM" and "gate_proj" in f.evidence["known"]
    f = one(
        run_rule(
            "lora",
            cfg(GOOD, vocab_adaptation={**on, "lora_target_modules": ["q_proj", "v_proj"]}),
            Facts(model_config=MISTRAL),
        ),
        "lora",
    )
    assert f.severity == "info" and f.evidence["scale"] == 2
    f = one(run_rule("lora", cfg(GOOD, vocab_adaptation={**on, "lora_target_modules": ["q_proj"]})), "lora")
    assert f.severity == "info" and "not checked" in f.message


@pytest.mark.parametrize("arch", ["llama", "gpt2", "gpt_neox"])
def test_lora_targets_audit_rejects_what_training_rejects(arch, tmp_path):
    """Issue 13: the audit's table accepted lm_head / embed_tokens, which training refuses at stage 2."""
    from helpers import tiny_model
    from vocabadapt.model.keys import linear_module_names

    model = tiny_model(arch)
    mc = model.config.to_dict()
    accepted_by_training = linear_module_names(model)
    head = model.get_output_embeddings()
    emb = model.get_input_embeddings()
    names = {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if n and (m is head or m is emb)}
    candidates = sorted(set(accepted_by_training) | names | {"q_proj", "query_key_value", "c_attn", "nonexistent"})
    on = {"stage2_use_lora": True}
    for name in candidates:
        f = one(
            run_rule("lora", cfg(GOOD, vocab_adaptation={**on, "lora_target_modules": [name]}), Facts(model_config=mc)),
            "lora",
        )
        assert (f.severity != "error") == (name in accepted_by_training), (arch, name, f.message)


# 7 ------------------------------------------------------------------------------------------------
TOKALIGN = {"init": "tokalign"}  # an initialiser that reads the vector alignment, so its settings matter


def test_similarity_threshold_and_pivots():
    for t in (-0.2, 0.97):
        f = one(
            run_rule("alignment", cfg(GOOD, alignment={**TOKALIGN, "similarity_threshold": t})), "similarity_threshold"
        )
        assert f.severity == "warning"
    assert (
        by_id(
            run_rule("alignment", cfg(GOOD, alignment={**TOKALIGN, "similarity_threshold": 0.5})),
            "similarity_threshold",
        )
        == []
    )
    f = one(run_rule("alignment", cfg(ORIGINAL, alignment=TOKALIGN), Facts(identical_pairs=1500)), "pivot_count")
    assert f.severity == "error" and "1,500" in f.message
    tokalign = cfg(GOOD, alignment=TOKALIGN)
    assert by_id(run_rule("alignment", tokalign, Facts(identical_pairs=1500)), "pivot_count") == []
    assert one(run_rule("alignment", tokalign), "pivot_count").severity == "info"  # not checked


def test_vector_settings_are_not_judged_when_the_init_reads_no_vectors():
    """fvt_prior (the default) reads no vector alignment: threshold, pivots and n-grams change nothing."""
    for init in ("fvt_prior", "fvt", "mean", "random"):
        c = cfg(ORIGINAL, alignment={"init": init, "similarity_threshold": 0.97})
        c.embedding.fasttext.minn, c.embedding.fasttext.maxn = 3, 6
        assert run_rule("alignment", c, Facts(identical_pairs=1500)) == []  # pivot_count 2000 > 1500: no error
        assert run_rule("fasttext_ngrams", c) == []
    # ... and the same settings are judged as soon as vectors are trained, by the init or by enabled: true
    for sections in ({"alignment": {"init": "soft"}}, {"embedding": {"enabled": True}}):
        c = cfg(ORIGINAL, **sections)
        assert one(run_rule("alignment", c, Facts(identical_pairs=1500)), "pivot_count").severity == "error"


def test_skipped_vectors_are_an_info_finding_naming_the_init():
    f = one(A.audit(cfg(GOOD)), "vectors_skipped")  # the default init, fvt_prior
    assert f.severity == "info" and f.key == "alignment.init"
    assert "alignment.init = fvt_prior reads no vectors" in f.message and "no effect" in f.message
    assert (
        f.evidence["vectors_trained"] is False and "alignment.similarity_threshold" in f.evidence["keys_without_effect"]
    )
    assert "alignment.init: tokalign" in f.recommendation
    f = one(run_rule("vectors", cfg(GOOD, alignment={"init": "fvt"}, embedding={"enabled": False})), "vectors_skipped")
    assert "embedding.enabled: false" in f.message
    # vectors trained and read: nothing to say; trained and not read: an info finding that says so
    assert run_rule("vectors", cfg(GOOD, alignment={"init": "tokalign"})) == []
    assert run_rule("vectors", cfg(GOOD, alignment={"init": None})) == []
    f = one(run_rule("vectors", cfg(GOOD, embedding={"enabled": True})), "vectors_unused")
    assert f.severity == "info" and f.key == "embedding.enabled" and "embedding.enabled: auto" in f.recommendation


def test_research_config_audit_says_vectors_are_skipped(capsys):
    from vocabadapt.cli import main

    assert main(["audit", str(REPO / "configs" / "research.yaml")]) == 0
    out = capsys.readouterr().out
    assert "alignment.init = fvt_prior reads no vectors" in out and "similarity_threshold" not in out.split("INFO")[0]


# 8 ------------------------------------------------------------------------------------------------
def test_eval_leak(tmp_path):
    train = str(tmp_path / "train.jsonl")
    f = one(run_rule("eval_leak", cfg(GOOD, corpus={"inputs": [train], "heldout_fraction": 0})), "eval_leak")
    assert f.severity == "error" and f.key == "corpus.heldout_fraction"
    f = one(
        run_rule("eval_leak", cfg(GOOD, corpus={"inputs": [train]}, evaluation={"datasets": ["heldout", train]})),
        "eval_leak",
    )
    assert f.severity == "error" and f.evidence["files"] == [train]
    qa = str(tmp_path / "qa.json")
    f = one(
        run_rule(
            "eval_leak", cfg(GOOD, corpus={"inputs": [str(tmp_path / "*.json")]}, evaluation={"qa": {"file": qa}})
        ),
        "eval_leak",
    )
    assert f.evidence["files"] == [qa]
    assert run_rule("eval_leak", cfg(GOOD, corpus={"inputs": [train]})) == []
    # Held-out fraction 0 is fine with separate held-out files, or with evaluation off.
    assert (
        run_rule(
            "eval_leak",
            cfg(GOOD, corpus={"inputs": [train], "heldout_fraction": 0, "heldout_inputs": [str(tmp_path / "h.jsonl")]}),
        )
        == []
    )
    assert run_rule("eval_leak", cfg(GOOD, corpus={"heldout_fraction": 0}, evaluation={"enabled": False})) == []


# 9 ------------------------------------------------------------------------------------------------
def test_max_positions():
    small = {**MISTRAL, "max_position_embeddings": 1024}
    f = one(run_rule("max_positions", cfg(GOOD), Facts(model_config=small)), "max_positions")
    assert f.severity == "error" and f.evidence == {"max_seq_length": 2048, "max_position_embeddings": 1024}
    assert run_rule("max_positions", cfg(GOOD), Facts(model_config=MISTRAL)) == []
    gpt2 = {"model_type": "gpt2", "n_positions": 1024, "n_embd": 8, "n_layer": 1, "vocab_size": 10}
    assert one(run_rule("max_positions", cfg(GOOD), Facts(model_config=gpt2)), "max_positions").severity == "error"
    assert one(run_rule("max_positions", cfg(GOOD)), "max_positions").severity == "info"


# 10 -----------------------------------------------------------------------------------------------
def test_fasttext_ngrams():
    ngrams = {"fasttext": {"minn": 3, "maxn": 6}}
    f = one(run_rule("fasttext_ngrams", cfg(GOOD, embedding=ngrams, alignment=TOKALIGN)), "fasttext_ngrams")
    assert f.severity == "warning" and f.evidence == {"minn": 3, "maxn": 6}
    assert run_rule("fasttext_ngrams", cfg(GOOD)) == []


# 11 -----------------------------------------------------------------------------------------------
def test_bf16_and_flash_attn():
    f = one(run_rule("precision", cfg(GOOD), Facts()), "bf16")
    assert f.severity == "info" and "falls back to fp32" in f.message
    assert run_rule("precision", cfg(GOOD), Facts(gpu_memory_gb=80)) == []
    f = one(run_rule("precision", cfg(GOOD), Facts(cuda_available=True, bf16_supported=False)), "bf16")
    assert f.severity == "warning"
    assert one(run_rule("precision", cfg(ORIGINAL), Facts(gpu_memory_gb=80)), "bf16").severity == "info"  # bf16 off
    flash = cfg(GOOD, vocab_adaptation={"use_flash_attn": True})
    assert one(run_rule("precision", flash, Facts(gpu_memory_gb=80)), "flash_attn").severity == "warning"
    assert run_rule("precision", flash, Facts(gpu_memory_gb=80, flash_attn_installed=True)) == []


# 12 -----------------------------------------------------------------------------------------------
def test_tiny_batch_and_zero_steps():
    f = one(
        run_rule("batch_and_steps", cfg(GOOD, vocab_adaptation={"batch_size": 1, "gradient_accumulation": 2})),
        "tiny_batch",
    )
    assert f.severity == "warning" and f.evidence["sequences_per_step"] == 2
    assert run_rule("batch_and_steps", cfg(GOOD)) == []
    f = one(run_rule("batch_and_steps", cfg(GOOD, vocab_adaptation={"stage1_steps": 0})), "zero_steps")
    assert f.severity == "warning"
    f = one(
        run_rule("batch_and_steps", cfg(GOOD, vocab_adaptation={"stage1_steps": 0, "stage2_steps": 0})), "zero_steps"
    )
    assert f.severity == "warning" and "never trained" in f.message
    assert (
        one(run_rule("batch_and_steps", cfg(GOOD, vocab_adaptation={"stage2_steps": 0})), "zero_steps").severity
        == "info"
    )


def test_optimizer_and_scheduler_names():
    f = one(run_rule("names", cfg(GOOD, vocab_adaptation={"stage2_optimizer": "adamw_torch_fusd"})), "optimizer_name")
    assert f.severity == "error" and "adamw_torch_fused" in f.message
    f = one(run_rule("names", cfg(GOOD, vocab_adaptation={"lr_scheduler": "cosin"})), "scheduler_name")
    assert f.severity == "error"
    assert run_rule("names", cfg(GOOD, vocab_adaptation={"stage2_optimizer": "adamw_bnb_8bit"})) == []
    # The ast reading of the enum agrees with the enum itself.
    from transformers.training_args import OptimizerNames

    assert set(_enum_values("transformers.training_args", "OptimizerNames")) == {o.value for o in OptimizerNames}


# facts ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "data,expected",
    [
        (
            {"documents": 10, "bytes": 1000, "tokens_target": 250},
            {"documents": 10, "bytes": 1000, "tokens_target": 250},
        ),
        ({"train": {"documents": 7, "bytes": 70}, "heldout": {"documents": 1}}, {"documents": 7, "bytes": 70}),
        ({"target": {"tokens": 99}, "source": {"tokens": 120}}, {"tokens_target": 99, "tokens_source": 120}),
        (
            {"tokens": {"source": 5, "target": 6}, "packed_sequences": 3},
            {"tokens_target": 6, "tokens_source": 5, "sequences": 3},
        ),
        (
            {"tokens": 42, "identical_pairs": 9, "documents": "many"},
            {"tokens_target": 42, "identical_pairs": 9, "documents": None},
        ),
    ],
)
def test_corpus_stats_are_read_tolerantly(data, expected):
    got = parse_corpus_stats(data)
    for k, v in expected.items():
        assert got[k] == v, k


def test_gather_facts_files(tmp_path):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "config.json").write_text(json.dumps(MISTRAL))
    facts = gather_facts(model_config=str(model_dir), gpu_memory_gb=40)
    assert facts.model_config["hidden_size"] == 4096 and facts.has_gpu and facts.gpu_memory_gb == 40
    with pytest.raises(InputError, match="does not exist"):
        gather_facts(corpus_stats=str(tmp_path / "nope.json"))
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        gather_facts(corpus_stats=str(tmp_path / "bad.json"))
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(InputError, match="not an object"):
        gather_facts(corpus_stats=str(tmp_path / "list.json"))


def test_local_source_model_config_is_used(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({**MISTRAL, "max_position_embeddings": 1024}))
    findings = audit(cfg(GOOD, models={"source_model": str(tmp_path)}), Facts())
    assert one(findings, "max_positions").severity == "error"


# the whole audit -------------------------------------------------------------------------------------
def test_original_research_values_full_audit():
    facts = Facts(documents=5_000_000, model_config=MISTRAL, gpu_memory_gb=80)
    findings = audit(cfg(ORIGINAL), facts)
    severities = [f.severity for f in findings]
    assert severities == sorted(severities, key=["error", "warning", "info"].index)  # errors first
    assert {f.id for f in findings if f.severity == "error"} == {"shuffle", "stage2_start", "stage2_memory"}
    assert one(findings, "lr_stage1").severity == "warning"
    text = format_text(findings, "original.yaml")
    assert text.splitlines()[-1] == "original.yaml: 3 error(s), 1 warning(s), 3 info — FAIL"
    assert "va.train_start_idx_stage2" in text and "→ set train_start_idx_stage2: auto (= 160,000 here)" in text


def test_shipped_configs_load_and_audit_clean():
    research = load_config(REPO / "configs" / "research.yaml")
    assert research.vocab_adaptation.lr_stage1 == 4e-5 and research.vocab_adaptation.shuffle
    assert research.models.source_model == "BioMistral/BioMistral-7B"
    findings = audit(research, Facts(model_config=MISTRAL, gpu_memory_gb=80))
    assert [f for f in findings if f.severity != "info"] == []
    paper = load_config(REPO / "configs" / "paper.yaml")
    va = paper.vocab_adaptation
    assert (va.lr_stage1, va.lr_stage2, paper.alignment.pivot_count, va.stage2_use_lora, va.bf16) == (
        6.4e-4,
        5e-5,
        300,
        False,
        True,
    )
    assert va.batch_size * va.gradient_accumulation == 1024
    assert A.stage2_start(paper, Facts()) == 2_560_000  # auto reproduces the paper's start index
    assert [f for f in audit(paper, Facts()) if f.severity == "error"] == []
    for name in ("research.yaml", "paper.yaml"):
        first = (REPO / "configs" / name).read_text().splitlines()[0]
        assert first.startswith(f"# vocabadapt audit configs/{name}") and f"vocabadapt run configs/{name}" in first


# CLI -----------------------------------------------------------------------------------------------
def _write(tmp_path, data, name="c.yaml"):
    import yaml

    p = tmp_path / name
    p.write_text(yaml.safe_dump(data))
    return str(p)


def test_cli_json_and_exit_codes(tmp_path, capsys):
    original = _write(tmp_path, ORIGINAL)
    stats = tmp_path / "stats.json"
    stats.write_text(json.dumps({"documents": 5_000_000}))
    assert main(["audit", original, "--corpus-stats", str(stats), "--format", "json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"findings", "summary"}
    assert set(out["findings"][0]) == {"id", "severity", "key", "message", "recommendation", "evidence"}
    assert out["summary"]["errors"] == 2 and out["summary"]["warnings"] == 1  # shuffle, stage-2 start; lr
    start = next(f for f in out["findings"] if f["id"] == "stage2_start")
    assert start["evidence"]["stage1_sequences"] == 160_000
    # The fixed values pass; a warning fails under --strict.
    good = _write(tmp_path, GOOD, "good.yaml")
    assert main(["audit", good]) == 0
    assert "0 error(s)" in capsys.readouterr().out
    assert main(["audit", good, "--set", "vocab_adaptation.lr_stage1=1.5e-4"]) == 0
    assert main(["audit", good, "--set", "vocab_adaptation.lr_stage1=1.5e-4", "--strict"]) == 1
    capsys.readouterr()
    # An invalid config: exit 2.
    assert main(["audit", good, "--set", "alignment.similarity_threshold=7"]) == 2
    assert "similarity_threshold" in capsys.readouterr().err
    assert main(["audit", good, "--corpus-stats", str(tmp_path / "missing.json")]) == 2


def test_cli_audits_research_config(capsys):
    assert main(["audit", str(REPO / "configs" / "research.yaml")]) == 0
    out = capsys.readouterr().out
    assert "0 error(s), 0 warning(s)" in out


def test_audit_warns_when_a_cloze_is_scored_without_exclude_inputs(tmp_path):
    base = {
        "corpus": {"inputs": ["x.jsonl"]},
        "evaluation": {"datasets": ["heldout", "cloze"], "cloze": {"file": "q.jsonl"}},
    }
    found = run_rule("cloze_leak", validate_dict(base, "test"))
    assert [(f.id, f.severity, f.key) for f in found] == [("cloze_leak", "warning", "corpus.exclude_inputs")]
    guarded = {**base, "corpus": {"inputs": ["x.jsonl"], "exclude_inputs": ["docs.jsonl"]}}
    assert run_rule("cloze_leak", validate_dict(guarded, "test")) == []


def test_target_tokenizer_added_terms_resplit_and_extension_does_not():
    terms = cfg(models={"target_tokenizer": {"train": {"vocab_size": 1000}}}, term_mining={"add_to_target": True})
    f = one(run_rule("target_tokenizer", terms), "terms_resplit")
    assert f.severity == "warning" and "extend" in f.recommendation
    ext = cfg(models={"target_tokenizer": {"extend": {"new_tokens": 64}}})
    got = run_rule("target_tokenizer", ext)
    assert not by_id(got, "terms_resplit") and one(got, "target_extended").evidence["new_tokens"] == 64
