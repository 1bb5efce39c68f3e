"""PubMedQA loading, prompt truncation, exact scoring and metrics."""

from __future__ import annotations

import gzip
import json
import time

import numpy as np
import pytest
import torch

from helpers import SHARED_DATA, TEXT, tiny_model, train_bpe_tokenizer
from vocabadapt.errors import InputError
from vocabadapt.evaluation import pubmedqa as pq

RECORDS = {
    "101": {
        "QUESTION": "Does aspirin reduce pain?",
        "CONTEXTS": ["the patient received aspirin .", "aspirin reduces pain ."],
        "final_decision": "yes",
    },
    "102": {
        "QUESTION": "Does heparin cause tumour growth?",
        "CONTEXTS": ["heparin slows the growth ."],
        "final_decision": "no",
    },
    "103": {
        "QUESTION": "Is cocaine use linked to cardiac arrest?",
        "CONTEXTS": ["cardiac arrest after cocaine use ."],
        "final_decision": "maybe",
    },
}


@pytest.fixture(scope="module")
def tok():
    return train_bpe_tokenizer([TEXT + " Context: Question: Answer: yes no maybe Does Is"])


@pytest.fixture(scope="module")
def model(tok):
    m = tiny_model("gpt_neox", vocab_size=len(tok), max_pos=128, seed=3)
    with torch.no_grad():  # sharper (less uniform) predictions than the default 0.05 scale
        m.get_output_embeddings().weight.mul_(40)
    return m


def _write(tmp_path, data, name="qa.json"):
    p = tmp_path / name
    p.write_text(json.dumps(data))
    return p


def test_load_formats_agree(tmp_path):
    a = pq.load_questions(_write(tmp_path, RECORDS))
    jsonl = tmp_path / "qa.jsonl"
    jsonl.write_text(
        "\n".join(
            json.dumps(
                {
                    "pubid": k,
                    "question": v["QUESTION"],
                    "context": {"contexts": v["CONTEXTS"]},
                    "final_decision": v["final_decision"],
                }
            )
            for k, v in RECORDS.items()
        )
    )
    b = pq.load_questions(jsonl)
    assert a == b
    gz = tmp_path / "qa.json.gz"
    gz.write_bytes(gzip.compress(json.dumps(RECORDS).encode()))
    assert pq.load_questions(gz) == a
    assert [q.id for q in a] == ["101", "102", "103"]
    assert a[0].context == "the patient received aspirin . aspirin reduces pain ."
    assert [q.id for q in pq.load_questions(_write(tmp_path, RECORDS), ids=["103", "101"])] == ["103", "101"]


def test_bad_schema_names_the_missing_field(tmp_path):
    bad = {"1": {"QUESTION": "q?", "final_decision": "yes"}}
    with pytest.raises(InputError, match="missing field CONTEXTS"):
        pq.load_questions(_write(tmp_path, bad))
    with pytest.raises(InputError, match="final_decision is 'perhaps'"):
        pq.load_questions(_write(tmp_path, {"1": {"QUESTION": "q?", "CONTEXTS": ["c"], "final_decision": "perhaps"}}))
    with pytest.raises(InputError, match="not in the file"):
        pq.load_questions(_write(tmp_path, RECORDS), ids=["999"])


def test_metrics_by_hand():
    t = ["yes", "yes", "no", "maybe", "no", "yes"]
    p = ["yes", "no", "no", "no", "no", "yes"]
    m = pq.metrics(t, p, bootstrap=200)
    assert m["accuracy"] == pytest.approx(4 / 6)
    # yes: tp2 fp0 fn1 -> 4/5; no: tp2 fp2 fn0 -> 4/6; maybe: tp0 fp0 fn1 -> 0
    assert m["macro_f1"] == pytest.approx((0.8 + 4 / 6 + 0.0) / 3)
    lo, hi = m["accuracy_ci95"]
    assert 0.0 <= lo <= m["accuracy"] <= hi <= 1.0
    # identical predictions: paired differences are exactly 0 in every resample
    same = {str(i): {"label": a, "pred": b} for i, (a, b) in enumerate(zip(t, p))}
    d = pq.paired_difference(same, same, bootstrap=100)
    assert d["accuracy_diff"] == 0 and d["accuracy_diff_ci95"] == [0.0, 0.0] and d["p_not_better"] == 1.0


def _hand_scores(model, tok, q):
    """Per-byte log-likelihood of each answer, from one plain forward pass per answer."""
    ctx_ids = tok(f"Context: {q.context}\n", add_special_tokens=False)["input_ids"]
    qa_ids = tok(f"Question: {q.question}\nAnswer:", add_special_tokens=False)["input_ids"]
    prompt = [tok.bos_token_id] + ctx_ids + qa_ids
    out = {}
    for lab in pq.LABELS:
        cont = tok(" " + lab, add_special_tokens=False)["input_ids"]
        ids = torch.tensor([prompt + cont])
        with torch.no_grad():
            lp = torch.log_softmax(model(ids).logits[0].double(), -1)
        ll = sum(float(lp[len(prompt) + j - 1, c]) for j, c in enumerate(cont))
        out[lab] = ll / len((" " + lab).encode())
    return out


def test_exact_scoring_three_questions(tmp_path, model, tok):
    qs = pq.load_questions(_write(tmp_path, RECORDS))
    r = pq.score_questions(model, tok, qs, batch_size=2, bootstrap=50)
    preds = []
    for q in qs:
        hand = _hand_scores(model, tok, q)
        got = r["predictions"][q.id]["scores"]
        for lab in pq.LABELS:
            assert got[lab] == pytest.approx(hand[lab], abs=1e-5)
        best = max(hand, key=hand.get)
        assert r["predictions"][q.id]["pred"] == best
        preds.append(best)
    truth = [q.label for q in qs]
    assert r["n"] == 3 and r["skipped"] == 0
    assert r["accuracy"] == pytest.approx(np.mean([a == b for a, b in zip(truth, preds)]))
    assert r["macro_f1"] == pytest.approx(pq.macro_f1(pq._codes(truth), pq._codes(preds)))


def test_truncation_cuts_context_from_start_and_skips_long_questions(model, tok):
    long_q = pq.Question("1", "Does aspirin reduce pain?", TEXT, "yes")
    ids, info = pq.build_prompt(tok, long_q, [], context=64)
    qa_ids = tok("Question: Does aspirin reduce pain?\nAnswer:", add_special_tokens=False)["input_ids"]
    longest = max(len(tok(c, add_special_tokens=False)["input_ids"]) for c in pq.CHOICES)
    assert len(ids) + longest == 64  # filled exactly to the window
    assert ids[-len(qa_ids) :] == qa_ids  # question intact at the end
    assert ids[0] == tok.bos_token_id and info["context_tokens_cut"] > 0
    ctx_ids = tok(f"Context: {TEXT}\n", add_special_tokens=False)["input_ids"]
    assert ids[1 : -len(qa_ids)] == ctx_ids[info["context_tokens_cut"] :]  # the end of the context is kept
    # a window too short for the question itself: a recorded skip, not a crash
    r = pq.score_questions(model, tok, [long_q], context=8, bootstrap=0)
    assert r["skipped"] == 1 and r["n"] == 0 and r["accuracy"] is None


def test_fewshot_examples_dropped_before_context(tok):
    q = pq.Question("1", "Does aspirin reduce pain?", "aspirin reduces pain .", "yes")
    shots = [pq.Question(str(i), "Is it?", "the patient was treated with heparin .", "no") for i in range(3)]
    ids, info = pq.build_prompt(tok, q, shots, context=1000)
    assert info["shots"] == 3 and info["context_tokens_cut"] == 0
    small, info2 = pq.build_prompt(tok, q, shots, context=len(ids) - 5)
    assert info2["shots"] == 2 and info2["context_tokens_cut"] == 0
    assert pq.choose_shots([q] + shots, 2) == pq.choose_shots([q] + shots, 2)  # seeded
    with pytest.raises(InputError, match="fewshot_k"):
        pq.choose_shots(shots, 5)


@pytest.mark.slow
@pytest.mark.shared_data("pubmedqa", "ori_pqal.json")
def test_official_test_split_on_cpu(tmp_path):
    """The 500-question test split on a tiny model (prints the wall time)."""
    from helpers import save_tiny_model
    from vocabadapt.evaluation.suite import eval_command

    tok = train_bpe_tokenizer([TEXT], vocab_size=300)
    mdir = save_tiny_model(tmp_path / "m", tok, max_pos=512)
    t0 = time.perf_counter()
    r = eval_command(
        str(mdir), None, [], str(SHARED_DATA / "pubmedqa" / "ori_pqal.json"), None, str(tmp_path / "out.json")
    )
    wall = time.perf_counter() - t0
    q = r["models"]["model"]["pubmedqa"]
    print(
        f"PubMedQA 500 test questions: {wall:.1f}s, accuracy {q['accuracy']:.3f} {q['accuracy_ci95']}, "
        f"macro-F1 {q['macro_f1']:.3f} {q['macro_f1_ci95']}"
    )
    assert q["n"] + q["skipped"] == 500
    assert q["label_counts"] == {"yes": 276, "no": 169, "maybe": 55} or q["skipped"] > 0
    assert 0 <= q["accuracy_ci95"][0] <= q["accuracy"] <= q["accuracy_ci95"][1] <= 1
