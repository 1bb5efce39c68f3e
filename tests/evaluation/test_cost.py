"""Cost per byte: multiply-adds by hand, parameter memory, interleaved speed measurement."""

from __future__ import annotations

import pytest
import torch

from helpers import TEXT, tiny_model, train_bpe_tokenizer
from vocabadapt.evaluation import cost


def test_macs_per_token_by_hand_for_llama_with_grouped_query_attention():
    model = tiny_model("llama", vocab_size=300, hidden=32, layers=2)  # 4 heads of 8, 2 key/value heads
    m = cost.macs_per_token(model)
    # per layer: q 32x32, k 32x16, v 32x16, o 32x32, gate/up 32x64, down 64x32
    per_layer = 32 * 32 + 2 * 32 * 16 + 32 * 32 + 3 * 32 * 64
    assert m == {
        "body": 2 * per_layer,
        "head": 300 * 32,
        "total": 2 * per_layer + 300 * 32,
        "head_rows": 300,
        "hidden": 32,
    }
    assert cost.macs_per_token(model.config.to_dict()) == m  # from the config alone


def test_macs_per_token_by_hand_for_gpt2_conv1d_and_a_tied_head():
    model = tiny_model("gpt2", vocab_size=200, hidden=32, layers=3)
    m = cost.macs_per_token(model)
    per_layer = 32 * 96 + 32 * 32 + 32 * 128 + 128 * 32  # c_attn, attn c_proj, c_fc, mlp c_proj (Conv1D)
    assert m["body"] == 3 * per_layer and m["head"] == 200 * 32  # tied: still one product per row


def test_cost_per_byte_and_parameter_bytes():
    model = tiny_model("gpt_neox", vocab_size=100, hidden=16, layers=1)
    c = cost.cost_per_byte({"body": 1000, "head": 600, "total": 1600}, 4.0)
    assert c["macs_per_byte"] == 400.0 and c["head_macs_per_byte"] == 150.0 and c["body_macs_per_byte"] == 250.0
    assert cost.cost_per_byte(None, 4.0)["macs_per_byte"] is None
    n = sum(p.numel() for p in model.parameters()) + sum(b.numel() for b in model.buffers())
    assert cost.parameter_bytes(model) == 4 * n  # fp32
    assert cost.parameter_bytes(model.to(torch.bfloat16)) == 2 * n


def test_prompts_are_the_same_text_cut_at_a_space():
    texts = ["", "alpha beta  gamma delta epsilon", "short"]
    assert cost.prompts_from(texts, 5, 14) == ["alpha beta", "short"]
    assert cost.prompts_from(texts, 1, 1000) == ["alpha beta gamma delta epsilon"]


def test_measure_speed_generates_the_same_bytes_for_every_model():
    tok_a = train_bpe_tokenizer([TEXT], vocab_size=300)
    tok_b = train_bpe_tokenizer([TEXT], vocab_size=600)
    models = {
        "source": (tiny_model("llama", vocab_size=len(tok_a), seed=1), tok_a),
        "adapted": (tiny_model("llama", vocab_size=len(tok_b), seed=2), tok_b),
    }
    prompts = cost.prompts_from([TEXT[:200], TEXT[50:300]], 2, 60)
    r = cost.measure_speed(models, prompts, new_bytes=24, threads=1)
    assert set(r) == {"source", "adapted"}
    for v in r.values():
        # at least 24 new bytes per prompt, and no more than one token's worth beyond
        assert 2 * 24 <= v["generated_bytes"] <= 2 * (24 + 16)
        assert v["generate_bytes_per_s"] == pytest.approx(v["generated_bytes"] / v["generate_seconds"])
        assert v["score_bytes_per_s"] > 0 and v["prompts"] == 2
    ratio = cost.ratios(r, "source", ["generate_bytes_per_s"])["adapted"]["generate_bytes_per_s"]
    assert ratio == pytest.approx(r["adapted"]["generate_bytes_per_s"] / r["source"]["generate_bytes_per_s"])
    assert torch.get_num_threads() >= 1


def test_cost_task_times_every_model_beside_the_first_and_gives_ratios(tmp_path):
    import json

    from vocabadapt.config import EvaluationConfig
    from vocabadapt.evaluation import cost_task

    held = tmp_path / "heldout.jsonl"
    held.write_text("".join(json.dumps({"text": TEXT[i : i + 200]}) + "\n" for i in (0, 200, 400)))
    cfg = EvaluationConfig(cost={"prompts": 2, "prompt_bytes": 60, "new_bytes": 16})
    setup = cost_task.prepare("cost", cfg, held)
    assert len(setup.prompts) == 2 and len(setup.texts) == 3
    tok_s = train_bpe_tokenizer([TEXT], vocab_size=300)
    tok_t = train_bpe_tokenizer([TEXT], vocab_size=500)  # more bytes per token
    src = tiny_model("llama", vocab_size=len(tok_s), seed=1)
    tgt = tiny_model("llama", vocab_size=len(tok_t), seed=2)
    results = {
        "source": cost_task.score("cost", src, tok_s, setup, cfg, 128),
        "stage2": cost_task.score("cost", tgt, tok_t, setup, cfg, 128),
    }
    assert results["source"]["cost"]["speed"] is None and results["stage2"]["cost"]["speed"]["prompts"] == 2
    summary = cost_task.compare(results, "source", setup)["cost"]["models"]
    body = cost.macs_per_token(src)["body"]  # the same body; heads of 300 and 500 rows of 32
    bpt_s = sum(len(t.encode()) for t in setup.texts) / sum(
        len(tok_s(t, add_special_tokens=False)["input_ids"]) for t in setup.texts
    )
    bpt_t = sum(len(t.encode()) for t in setup.texts) / sum(
        len(tok_t(t, add_special_tokens=False)["input_ids"]) for t in setup.texts
    )
    assert summary["source"]["macs_per_byte"] == pytest.approx((body + len(tok_s) * 32) / bpt_s)
    ratio = summary["stage2"]["ratio_to_source"]
    assert ratio["macs_per_byte"] == pytest.approx(
        ((body + len(tok_t) * 32) / bpt_t) / ((body + len(tok_s) * 32) / bpt_s)
    )
    assert ratio["generate_bytes_per_s"] == pytest.approx(
        results["stage2"]["cost"]["speed"]["generate_bytes_per_s"]
        / results["stage2"]["cost"]["reference_speed"]["generate_bytes_per_s"]
    )
    assert (
        summary["source"]["generate_bytes_per_s"]
        == results["stage2"]["cost"]["reference_speed"]["generate_bytes_per_s"]
    )
    assert cost_task.summary_lines({"cost": {"models": summary}}, ["source", "stage2"])[0].startswith(
        "cost per byte (vs source): source "
    )
