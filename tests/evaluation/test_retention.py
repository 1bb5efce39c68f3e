"""Retention: general-text bits per byte, its difference from the source, the checklist line."""

from __future__ import annotations

import pytest

from helpers import TEXT, tiny_model, train_bpe_tokenizer
from vocabadapt.config import EvaluationConfig
from vocabadapt.errors import ConfigError
from vocabadapt.evaluation import bpb, retention
from vocabadapt.evaluation.tasks import Skip


def test_missing_general_file_is_a_config_error_naming_the_key(tmp_path):
    cfg = EvaluationConfig(general_inputs=[str(tmp_path / "nope.txt")])
    with pytest.raises(ConfigError, match=r"evaluation\.general_inputs.*nope\.txt does not exist"):
        retention.prepare("general", cfg, tmp_path / "heldout.jsonl")
    assert isinstance(retention.prepare("general", EvaluationConfig(), tmp_path), Skip)


def test_general_text_is_read_one_document_per_line_with_caps(tmp_path):
    f = tmp_path / "wiki.txt"
    f.write_text(" = Title = \n first paragraph .\n\n second paragraph .\r\n third .\n")
    assert retention.read_general([str(f)], None) == [
        " = Title = ",
        " first paragraph .",
        " second paragraph .",
        " third .",
    ]
    assert retention.read_general([str(f)], 2) == [" = Title = ", " first paragraph ."]
    assert retention.read_general([str(f)], None, max_bytes=20) == [" = Title = ", " first paragraph ."]


def test_score_is_the_one_bits_per_byte_and_compare_gives_the_difference(tmp_path):
    tok = train_bpe_tokenizer([TEXT], vocab_size=300)
    model = tiny_model("llama", vocab_size=len(tok), seed=1)
    docs = [TEXT[:300], TEXT[300:500]]
    r = retention.score("general", model, tok, docs, EvaluationConfig(), 128)["bpb"]["general"]
    assert r["bits_per_byte"] == bpb.bits_per_byte(model, tok, docs, context=128)["bits_per_byte"]
    results = {
        "source": {"bpb": {"general": {"bits_per_byte": 1.0}}},
        "stage1": {"bpb": {"general": {"bits_per_byte": 1.03}}},
        "stage2": {"bpb": {"general": {"bits_per_byte": 1.08}}},
        "init": {"bpb": {"heldout": {"bits_per_byte": 3.0}}},  # no general text: no row
    }
    ret = retention.compare(results, "source")["retention"]
    assert set(ret) == {"source", "stage1", "stage2"}
    assert ret["stage2"]["difference"] == pytest.approx(0.08) and ret["stage2"]["relative"] == pytest.approx(0.08)
    assert ret["source"]["relative"] == 0.0
    summary = {"final": "stage2", **retention.compare(results, "source")}
    assert retention.check(summary, 0.05)["status"] == "fail"
    assert retention.check(summary, 0.10)["status"] == "pass"
    assert retention.check({**summary, "final": "stage1"}, 0.05)["status"] == "pass"
    assert retention.check({"final": "stage2"}, 0.05)["status"] == "not-run"
    line = retention.summary_lines(summary, ["source", "stage1", "stage2"])[0]
    assert (
        line == "general-text bpb (retention, vs source): source 1.0000, stage1 1.0300 (+3.0 %), stage2 1.0800 (+8.0 %)"
    )
