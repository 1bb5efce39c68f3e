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
