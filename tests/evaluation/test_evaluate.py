"""Bits per byte, tokenizer efficiency, the checklist, the evaluate stage and `vocabadapt eval`."""

from __future__ import annotations

import json
import math

import pytest
import torch

from helpers import TEXT, save_tiny_model, tiny_model, train_bpe_tokenizer, write_jsonl
from vocabadapt.config import Config
from vocabadapt.errors import InputError
from vocabadapt.evaluation import bpb, checklist, efficiency
from vocabadapt.evaluation.suite import eval_command, read_texts
from vocabadapt.run.context import StageContext
from vocabadapt.run.layout import RunLayout
from vocabadapt.stages.evaluate import run as run_stage

DOCS = [TEXT[:180], "aspirin reduces pain . the study of tumour growth in mice", TEXT[40:400]]
QA = {
    "1": {"QUESTION": "Does aspirin reduce pain?", "CONTEXTS": ["aspirin reduces pain ."], "final_decision": "yes"},
    "2": {"QUESTION": "Does heparin cause growth?", "CONTEXTS": ["heparin slows the growth ."], "final_decision": "no"},
    "3": {
        "QUESTION": "Is cocaine harmful?",
        "CONTEXTS": ["cardiac arrest after cocaine use ."],
        "final_decision": "maybe",
    },
    "4": {
        "QUESTION": "Is heparin used?",
        "CONTEXTS": ["the patient was treated with heparin ."],
        "final_decision": "yes",
    },
}


@pytest.fixture(scope="module")
def tok():
    return train_bpe_tokenizer([TEXT])


def _write_train(run, per_stage):
    """Training summaries as the training stages write them: train/<stage>/summary.json."""
    for stage, summary in per_stage.items():
        (run / "train" / stage).mkdir(parents=True, exist_ok=True)
        (run / "train" / stage / "summary.json").write_text(json.dumps(summary))


def _checklist(run, summary, **kwargs):
    """The checklist over a run directory's records, read as the evaluate stage reads them."""
    layout = RunLayout(run)
    return checklist.build_checklist(
        summary,
        layout.train_summaries(),
        {s: layout.train_metrics(s) for s in ("stage1", "stage2")},
        layout.read(layout.align_summary),
        layout.read(layout.transplant_summary),
        **kwargs,
    )


def test_windows_partition_targets():
    for n, ctx, stride in [(1, 4, 2), (2, 4, 2), (10, 4, 2), (17, 8, 3), (9, 8, 7), (30, 5, 5), (6, 100, 50)]:
        w = bpb.windows(n, ctx, stride)
        targets = [t for _, end, first in w for t in range(first, end)]
        assert targets == list(range(1, n))  # each token after BOS scored exactly once, in order
        for begin, end, first in w:
            assert end - begin <= ctx + 1 and first > begin  # the model reads <= ctx tokens; >= 1 of context


def test_bits_per_byte_equals_hand_computation(tok):
    model = tiny_model("gpt_neox", vocab_size=len(tok), seed=1)
    text = DOCS[0]
    ids = [tok.bos_token_id] + tok(text, add_special_tokens=False)["input_ids"]
    assert len(ids) < 128
    with torch.no_grad():
        lp = torch.log_softmax(model(torch.tensor([ids])).logits[0].double(), -1)  # (T, V)
    nll = -sum(float(lp[i - 1, ids[i]]) for i in range(1, len(ids)))
    expected = nll / math.log(2) / len(text.encode("utf-8"))
    r = bpb.bits_per_byte(model, tok, [text], context=128)
    assert r["windows"] == 1 and r["tokens"] == len(ids) - 1 and r["bytes"] == len(text.encode())
    assert r["bits_per_byte"] == pytest.approx(expected, abs=1e-6)
    assert r["token_perplexity"] == pytest.approx(math.exp(nll / (len(ids) - 1)), rel=1e-6)


def test_bits_per_byte_same_in_one_window_or_many(tok):
    # No transformer layers: each prediction depends only on its own token, so any windowing must
    # give the same sum if every token is scored exactly once with its own predecessor.
    model = tiny_model("gpt_neox", vocab_size=len(tok), layers=0, max_pos=512, seed=2)
    with torch.no_grad():
        model.get_output_embeddings().weight.mul_(30)
    one = bpb.bits_per_byte(model, tok, DOCS, context=512, batch_size=1)
    many = bpb.bits_per_byte(model, tok, DOCS, context=8, stride=3, batch_size=5)
    assert one["windows"] == 3 and many["windows"] > 30
    assert many["tokens"] == one["tokens"] and many["bytes"] == one["bytes"]
    assert many["bits_per_byte"] == pytest.approx(one["bits_per_byte"], abs=1e-6)
    # and a real model with padding in the batch: batching never changes a window's score
    real = tiny_model("gpt_neox", vocab_size=len(tok), seed=1)
    a = bpb.bits_per_byte(real, tok, DOCS, context=16, stride=8, batch_size=1)
    b = bpb.bits_per_byte(real, tok, DOCS, context=16, stride=8, batch_size=7)
    assert a["bits_per_byte"] == pytest.approx(b["bits_per_byte"], abs=1e-6)
    # full logits (a model without logits_to_keep) score the same as the kept positions
    real._vocabadapt_keep_ok = False
    c = bpb.bits_per_byte(real, tok, DOCS, context=16, stride=8, batch_size=7)
    assert c["bits_per_byte"] == pytest.approx(b["bits_per_byte"], abs=1e-6)


def test_empty_text_is_a_clear_error(tok, tmp_path):
    model = tiny_model("gpt_neox", vocab_size=len(tok))
    with pytest.raises(InputError, match="no non-empty text"):
        bpb.bits_per_byte(model, tok, ["", "   "])
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    with pytest.raises(InputError, match="holds no text"):
        read_texts(empty)
    assert read_texts(write_jsonl(tmp_path / "a.jsonl", ["x y", "", "z"])) == ["x y", "z"]
    blocks = tmp_path / "b.txt"
    blocks.write_text("one\ntwo\n\nthree\n")
    assert read_texts(blocks) == ["one\ntwo", "three"]


def test_efficiency_and_vocab_cost(tok):
    small = train_bpe_tokenizer([TEXT], vocab_size=270)
    words = ["aspirin", "heparin", "patient", "zzzqqq"]
    e = efficiency.efficiency(tok, DOCS, words)
    n_tokens = sum(len(tok(d, add_special_tokens=False)["input_ids"]) for d in DOCS)
    assert e["tokens"] == n_tokens and e["bytes_per_token"] == pytest.approx(sum(len(d) for d in DOCS) / n_tokens)
    assert e["words"] == sum(len(d.split()) for d in DOCS)
    one = sum(len(tok(" " + w, add_special_tokens=False)["input_ids"]) == 1 for w in words) / 4
    assert e["domain_words_one_token"] == pytest.approx(one)
    assert efficiency.efficiency(small, DOCS, words)["bytes_per_token"] < e["bytes_per_token"]
    src = efficiency.model_facts(tiny_model("gpt_neox", vocab_size=270, hidden=32))
    tgt = efficiency.model_facts(tiny_model("gpt2", vocab_size=300, hidden=32))
    assert src == {
        **src,
        "vocab_rows": 270,
        "hidden": 32,
        "tied": False,
        "embedding_params": 270 * 32,
        "output_params": 270 * 32,
    }
    assert tgt["tied"] and tgt["output_params"] == 0
    c = efficiency.vocab_cost(src, tgt, 2.0, 3.0)
    assert c["embedding_params_change"] == 30 * 32
    assert c["flops_per_token_source"] == 2 * src["non_embedding_params"] + 2 * 270 * 32
    assert c["tokens_per_byte_change_pct"] == pytest.approx(100 * (2 / 3 - 1))
    assert efficiency.frequent_words(["Aspirin aspirin aspirin of heparin heparin"], 2) == ["aspirin", "heparin"]


def _fake_run(tmp_path, tok, with_train=True, **evaluation):
    """A run directory with tokenizers, held-out text, a source model and model/init + stage1."""
    run = tmp_path / "run"
    tgt = train_bpe_tokenizer([TEXT], vocab_size=330)
    tok.save_pretrained(str(run / "tokenizers" / "source"))
    tgt.save_pretrained(str(run / "tokenizers" / "target"))
    src_dir = save_tiny_model(tmp_path / "source_model", tok, seed=0)
    save_tiny_model(run / "model" / "init", tgt, seed=1)
    save_tiny_model(run / "model" / "stage1", tgt, seed=2)
    write_jsonl(run / "corpus" / "heldout.jsonl", DOCS)
    (tmp_path / "qa.json").write_text(json.dumps(QA))
    (tmp_path / "split.json").write_text(json.dumps({"1": "yes", "2": "no", "3": "maybe"}))
    (run / "align").mkdir()
    (run / "align" / "summary.json").write_text(
        json.dumps(
            {
                "coverage": 0.97,
                "methods": {"tokalign": 300, "fvt": 30},
                "similarity_histogram": {"edges": [0, 0.5, 1], "counts": [3, 4]},
                "threshold": 0.5,
            }
        )
    )
    (run / "model" / "init" / "transplant.json").write_text(json.dumps({"zero_rows": 0}))
    if with_train:
        (run / "train" / "stage1").mkdir(parents=True)
        (run / "train" / "stage1" / "metrics.jsonl").write_text(
            "\n".join(json.dumps({"step": i, "tokens": 100 * i, "loss": 5 - 0.1 * i}) for i in range(20)) + "\n{bad"
        )
        _write_train(
            run,
            (
                {
                    "stage1": {
                        "steps": 20,
                        "sequence_range": [0, 80],
                        "first_loss": 5,
                        "last_loss": 3.1,
                        "spikes": [],
                        "embedding_health": {"settled": True, "norm_ratio": 1.02},
                    },
                    "stage2": {"skipped": True},
                }
            ),
        )
    cfg = Config(
        models={"source_model": str(src_dir)},
        evaluation={
            "qa": {
                "file": str(tmp_path / "qa.json"),
                "split_ids": str(tmp_path / "split.json"),
                "fewshot_k": 1,
                "bootstrap": 50,
            },
            "batch_size": 4,
            "context_length": 64,
            **evaluation,
        },
    )
    return run, cfg


def test_evaluate_stage_end_to_end(tmp_path, tok):
    run, cfg = _fake_run(tmp_path, tok)
    ctx = StageContext(layout=RunLayout(run), config=cfg, stage="evaluate")
    out = run_stage(ctx)
    assert out["models"] == ["source", "init", "stage1"] and out["final"] == "stage1" and out["baseline"] == "source"
    summary = json.loads((run / "eval" / "summary.json").read_text())
    for name in ("source", "init", "stage1"):
        per = json.loads((run / "eval" / f"{name}.json").read_text())
        assert per["bpb"]["heldout"]["bytes"] == sum(len(d.encode()) for d in DOCS)
        assert per["pubmedqa"]["n"] == 3 and set(per["pubmedqa"]["predictions"]) == {"1", "2", "3"}
        assert per["pubmedqa_fewshot"]["shots"] == 1
        assert "predictions" not in summary["models"][name]["pubmedqa"]
        assert summary["models"][name]["bpb"]["heldout"]["bits_per_byte"] == per["bpb"]["heldout"]["bits_per_byte"]
    # the source model is scored with the run's source tokenizer
    direct = bpb.bits_per_byte(tiny_model("gpt_neox", vocab_size=len(tok), seed=0), tok, DOCS, context=64)
    assert summary["models"]["source"]["bpb"]["heldout"]["bits_per_byte"] == pytest.approx(
        direct["bits_per_byte"], abs=1e-6
    )
    assert set(summary["pubmedqa_vs_baseline"]) == {"init", "stage1", "init/fewshot", "stage1/fewshot"}
    assert summary["tokenizers"]["source"]["vocab_size"] == len(tok)
    assert summary["tokenizers"]["target"]["vocab_size"] == 330
    assert summary["vocab_cost"]["compared"] == ["source", "stage1"]
    assert summary["alignment"]["coverage_fraction"] == 0.97 and "similarity_histogram" not in summary["alignment"]
    checks = json.loads((run / "eval" / "checklist.json").read_text())
    assert [c["id"] for c in checks] == [1, 2, 3, 4, 5, 6, 7]
    status = {c["id"]: c["status"] for c in checks}
    assert status[1] == "pass" and status[2] == "pass" and status[3] == "not-run" and status[4] == "pass"
    assert checks[0]["evidence"]["stage1"]["first_window_mean"] == pytest.approx(4.9)  # mean of 5.0, 4.9, 4.8
    assert status[5] in ("pass", "fail") and status[6] in ("pass", "fail")
    bpb5 = checks[4]["evidence"]
    assert (status[5] == "pass") == (bpb5["final_bits_per_byte"] < bpb5["baseline_bits_per_byte"])


def test_checklist_without_training_facts(tmp_path):
    checks = _checklist(tmp_path, {"models": {}, "final": None, "baseline": "source"})
    assert [c["status"] for c in checks] == ["not-run"] * 6
    assert all(c["reason"] for c in checks)


def test_checklist_failures(tmp_path):
    (tmp_path / "train").mkdir()
    _write_train(
        tmp_path,
        (
            {
                "stage1": {
                    "sequence_range": [0, 100],
                    "first_loss": 5.0,
                    "last_loss": 4.0,
                    "spikes": [{"step": 7}],
                    "embedding_health": {"settled": False},
                },
                "stage2": {"sequence_range": [[50, 120]], "first_loss": 4.0, "last_loss": 3.0, "spikes": []},
            }
        ),
    )
    (tmp_path / "align").mkdir()
    (tmp_path / "align" / "summary.json").write_text(json.dumps({"coverage": {"fraction": 0.90}}))
    (tmp_path / "model" / "init").mkdir(parents=True)
    (tmp_path / "model" / "init" / "transplant.json").write_text(json.dumps({"zero_rows": [3, 4]}))
    summary = {
        "final": "stage2",
        "baseline": "source",
        "models": {
            "stage2": {"bpb": {"heldout": {"bits_per_byte": 1.3}}, "pubmedqa": {"acc": 0.4}},
            "source": {"bpb": {"heldout": {"bits_per_byte": 1.2}}, "pubmedqa": {"acc": 0.6}},
        },
        "pubmedqa_vs_baseline": {"stage2": {"accuracy_diff": -0.2, "accuracy_diff_ci95": [-0.3, -0.1]}},
    }
    checks = _checklist(tmp_path, summary)
    assert [c["status"] for c in checks] == ["fail"] * 6
    assert checks[2]["evidence"]["overlapping_sequences"] == 50
    assert "2 rows were zero-initialised" in checks[3]["reason"]
    # a small gap inside the interval still fails (the criterion is the point estimate), and says so
    summary["models"]["stage2"]["pubmedqa"]["acc"] = 0.59
    summary["pubmedqa_vs_baseline"]["stage2"] = {"accuracy_diff": -0.01, "accuracy_diff_ci95": [-0.05, 0.03]}
    c6 = _checklist(tmp_path, summary)[5]
    assert c6["status"] == "fail" and "within noise" in c6["reason"]
    summary["models"]["stage2"]["pubmedqa"]["acc"] = 0.6
    assert _checklist(tmp_path, summary)[5]["status"] == "pass"
    # an overlap that the config asks for passes
    assert _checklist(tmp_path, summary, start_idx_stage2=50)[2]["status"] == "pass"


def test_eval_command(tmp_path, tok):
    mdir = save_tiny_model(tmp_path / "m", tok, seed=1)
    bdir = save_tiny_model(tmp_path / "b", tok, seed=2)
    text = write_jsonl(tmp_path / "held.jsonl", DOCS)
    (tmp_path / "qa.json").write_text(json.dumps(QA))
    r = eval_command(str(mdir), str(bdir), [str(text)], str(tmp_path / "qa.json"), 3, str(tmp_path / "o.json"))
    m = r["models"]["model"]
    assert m["bpb"]["held"]["documents"] == 3 and m["pubmedqa"]["n"] == 3
    assert "predictions" not in m["pubmedqa"]
    full = json.loads((tmp_path / "o.json").read_text())
    assert len(full["models"]["baseline"]["pubmedqa"]["predictions"]) == 3
    assert r["bits_per_byte_difference"]["held"] == pytest.approx(
        m["bpb"]["held"]["bits_per_byte"] - r["models"]["baseline"]["bpb"]["held"]["bits_per_byte"]
    )
    assert r["pubmedqa_vs_baseline"]["model"]["n"] == 3


def test_eval_command_bad_inputs(tmp_path, tok):
    mdir = save_tiny_model(tmp_path / "m", tok)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        (mdir / f).unlink(missing_ok=True)
    text = write_jsonl(tmp_path / "held.jsonl", DOCS)
    with pytest.raises(InputError, match="no tokenizer files"):
        eval_command(str(mdir), None, [str(text)], None, None, None)
    with pytest.raises(InputError, match="nothing to evaluate"):
        eval_command(str(mdir), None, [], None, None, None)
    good = save_tiny_model(tmp_path / "g", tok)
    (tmp_path / "bad.json").write_text(json.dumps({"1": {"question": "q?", "CONTEXTS": ["c"]}}))
    with pytest.raises(InputError, match="missing field final_decision"):
        eval_command(str(good), None, [], str(tmp_path / "bad.json"), None, None)


def test_cli_eval_exits_cleanly_on_bad_input(tmp_path, capsys):
    from vocabadapt.cli import main

    assert main(["eval", str(tmp_path / "nope"), "--text", str(tmp_path / "nope.txt")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_padding_rows_past_the_tokenizer_take_no_probability(tok):
    # transplant pads embedding rows to a multiple of 64; those rows are no token of the tokenizer.
    model = tiny_model("gpt_neox", vocab_size=len(tok) + 20, seed=4)
    text = DOCS[1]
    ids = [tok.bos_token_id] + tok(text, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        lp = torch.log_softmax(model(torch.tensor([ids])).logits[0, :, : len(tok)].double(), -1)
    nll = -sum(float(lp[i - 1, ids[i]]) for i in range(1, len(ids)))
    r = bpb.bits_per_byte(model, tok, [text])
    assert r["bits_per_byte"] == pytest.approx(nll / math.log(2) / len(text.encode()), abs=1e-6)


def test_checklist_reads_the_train_stage_format(tmp_path):
    """train/summary.json as vocabadapt.train writes it: sequences.ranges per epoch, typed metric lines."""
    (tmp_path / "train" / "stage1").mkdir(parents=True)
    lines = [{"type": "train", "step": i, "loss": 6.0 - 0.2 * i} for i in range(10)]
    lines.insert(3, {"type": "spike", "step": 3, "loss": 50.0, "running_mean": 5.5})
    lines.append({"type": "eval", "step": 10, "heldout_bpb": 2.0})
    (tmp_path / "train" / "stage1" / "metrics.jsonl").write_text("\n".join(json.dumps(x) for x in lines))
    s1 = {
        "sequences": {"start": 0, "stop": 40, "ranges": [{"epoch": 0, "start": 0, "stop": 40}]},
        "spikes": [],
        "first_loss": 6.0,
        "last_loss": 4.2,
        "embedding_health": {"settled": None, "reason": "fewer than 4 health records"},
    }
    s2 = {
        "sequences": {
            "start": 40,
            "stop": 120,
            "ranges": [{"epoch": 0, "start": 40, "stop": 100}, {"epoch": 1, "start": 0, "stop": 20}],
        },
        "spikes": [],
        "first_loss": 4.2,
        "last_loss": 4.0,
    }
    _write_train(tmp_path, ({"stage1": s1, "stage2": s2}))
    checks = _checklist(tmp_path, {"models": {}})
    assert checks[0]["status"] == "pass"
    assert checks[0]["evidence"]["stage1"]["first_window_mean"] == pytest.approx(5.8)  # spike line is no training loss
    assert checks[1]["status"] == "not-run" and "fewer than 4" in checks[1]["reason"]
    assert checks[2]["status"] == "fail" and "later epoch" in checks[2]["reason"]
    assert checks[2]["evidence"]["overlapping_sequences"] == 0
    s2["sequences"]["ranges"] = s2["sequences"]["ranges"][:1]
    _write_train(tmp_path, ({"stage1": s1, "stage2": s2}))
    assert _checklist(tmp_path, {"models": {}})[2]["status"] == "pass"


def test_cli_eval_prints_lm_eval_comparable_acc(tmp_path, tok, capsys):
    from vocabadapt.cli import main

    mdir = save_tiny_model(tmp_path / "m", tok, seed=1)
    (tmp_path / "qa.json").write_text(json.dumps(QA))
    assert main(["eval", str(mdir), "--pubmedqa", str(tmp_path / "qa.json")]) == 0
    out = capsys.readouterr()
    q = json.loads(out.out)["models"]["model"]["pubmedqa"]
    # The task's summary_lines hook: lm-eval's acc with its interval, acc_bytes and the question count.
    assert f"PubMedQA acc (lm-eval's scoring): model {q['acc']:.3f} [" in out.err
    assert f"(acc_bytes {q['acc_bytes']:.4f}, n=4)" in out.err


def test_row_coverage_counts_decomposition_as_evidence_and_reports_the_parts():
    align = {"coverage": 0.491}  # identical + aligned only: the demo's "failing" 49.1 %
    rows = {"special": 2, "identical": 500, "aligned": 141, "fvt": 340, "mean": 17}
    c4 = checklist.check_alignment(align, {"zero_rows": 0, "rows_per_method": rows}, zero_allowed=False)
    assert c4["status"] == "pass" and c4["evidence"]["coverage"] == 0.983  # (1000 - 17) / 1000
    assert c4["evidence"]["evidence_rows"] == {"aligned": 141, "fvt": 340, "identical": 500, "special": 2}
    assert c4["evidence"]["fallback_rows"] == {"mean": 17} and c4["evidence"]["aligned_coverage"] == 0.491
    assert "fvt 340" in c4["reason"] and "mean 17" in c4["reason"]
    rows.update(mean=40, random=20)  # 60 of 1,043 rows from a global fallback: 94.2 %
    c4 = checklist.check_alignment(align, {"zero_rows": 0, "rows_per_method": rows}, zero_allowed=False)
    assert c4["status"] == "fail" and c4["evidence"]["coverage"] == round(983 / 1043, 4)
    # a run without rows_per_method keeps the align stage's figure
    c4 = checklist.check_alignment({"coverage": 0.97}, {"zero_rows": 0}, zero_allowed=False)
    assert c4["status"] == "pass" and c4["evidence"]["coverage"] == 0.97


def test_evaluate_stage_reports_cloze_retention_and_cost_for_every_model(tmp_path, tok):
    from vocabadapt.stages.report import closing_summary

    general = tmp_path / "general.txt"
    general.write_text(" = A heading = \n the study of tumour growth in mice .\n aspirin reduces pain .\n")
    cloze = tmp_path / "cloze.jsonl"
    cloze.write_text(
        "".join(
            json.dumps({"id": str(i), "context": ctx, "choices": ["aspirin", "heparin", "cocaine", "mice"], "gold": g})
            + "\n"
            for i, (ctx, g) in enumerate([("the patient received", 0), ("the study of tumour growth in", 3)])
        )
    )
    run, cfg = _fake_run(
        tmp_path,
        tok,
        datasets=["heldout", "cloze"],
        general_inputs=[str(general)],
        max_retention_loss=0.05,
        cloze={"file": str(cloze), "bootstrap": 50},
        cost={"prompts": 2, "prompt_bytes": 40, "new_bytes": 12},
    )
    run_stage(StageContext(layout=RunLayout(run), config=cfg, stage="evaluate"))
    summary = json.loads((run / "eval" / "summary.json").read_text())
    names = ["source", "init", "stage1"]
    for name in names:
        per = json.loads((run / "eval" / f"{name}.json").read_text())
        assert per["cloze"]["n"] == 2 and set(per["cloze"]["predictions"]) == {"0", "1"}
        assert "predictions" not in summary["models"][name]["cloze"]
        assert per["bpb"]["general"]["bytes"] == len(general.read_bytes()) - 3  # one document per line
        assert per["cost"]["macs_per_byte"] > 0 and per["cost"]["parameter_bytes"] > 0
    ret = summary["retention"]
    src = summary["models"]["source"]["bpb"]["general"]["bits_per_byte"]
    assert ret["stage1"]["difference"] == pytest.approx(
        summary["models"]["stage1"]["bpb"]["general"]["bits_per_byte"] - src
    )
    assert set(summary["cloze_vs_source"]) == {"init", "stage1"}
    cost_rows = summary["cost"]["models"]
    assert set(cost_rows) == set(names) and cost_rows["source"]["generate_bytes_per_s"] > 0
    assert set(cost_rows["stage1"]["ratio_to_source"]) == {
        "macs_per_byte",
        "parameter_bytes",
        "generate_bytes_per_s",
        "score_bytes_per_s",
    }
    check = json.loads((run / "eval" / "checklist.json").read_text())[-1]
    assert check["id"] == 7 and check["status"] == ("pass" if ret["stage1"]["relative"] <= 0.05 else "fail")
    text = closing_summary(run)
    assert "general-text bpb (retention, vs source): source " in text
    assert "cost per byte (vs source): source " in text and " B/s generated" in text
    assert "cloze acc (lm-eval multiple_choice, n=2, chance 0.25): source " in text
    from vocabadapt.stages.report import build_report

    build_report(run)
    md = (run / "report" / "report.md").read_text()
    assert "cloze acc§ [95% CI]" in md and "general bits/byte¶" in md and "§Cloze:" in md
    assert "### Cost per byte" in md and "| model | bytes/token | MACs/token body + head |" in md
