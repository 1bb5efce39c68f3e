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
    return train_bpe_tokenizer([TEXT + " Abstract: Question: Answer: yes no maybe Does Is"])


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
    assert a[0].contexts == ("the patient received aspirin .", "aspirin reduces pain .")
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
    assert m["acc"] == pytest.approx(4 / 6)
    # yes: tp2 fp0 fn1 -> 4/5; no: tp2 fp2 fn0 -> 4/6; maybe: tp0 fp0 fn1 -> 0
    assert m["macro_f1"] == pytest.approx((0.8 + 4 / 6 + 0.0) / 3)
    lo, hi = m["acc_ci95"]
    assert 0.0 <= lo <= m["acc"] <= hi <= 1.0
    # identical predictions: paired differences are exactly 0 in every resample
    same = {str(i): {"label": a, "pred": b} for i, (a, b) in enumerate(zip(t, p))}
    d = pq.paired_difference(same, same, bootstrap=100)
    assert d["accuracy_diff"] == 0 and d["accuracy_diff_ci95"] == [0.0, 0.0] and d["p_not_better"] == 1.0


def _hand_loglikelihoods(model, tok, q, context=10_000, shots=()):
    """Summed log-likelihood of each answer from one plain forward pass per answer, written out from
    lm-eval's rules: its prompt, encode(prompt + answer) split at len(encode(prompt)), left cut to
    context + 1 tokens, log-softmax over every output row."""
    shot_text = "".join(
        f"Abstract: {chr(10).join(s.contexts)}\nQuestion: {s.question}\nAnswer: {s.label}\n\n" for s in shots
    )
    prompt = shot_text + f"Abstract: {chr(10).join(q.contexts)}\nQuestion: {q.question}\nAnswer:"
    out = {}
    for lab in pq.LABELS:
        ctx = tok(prompt)["input_ids"]
        cont = tok(prompt + " " + lab)["input_ids"][len(ctx) :]
        ids = (ctx + cont)[-(context + 1) :]
        with torch.no_grad():
            lp = torch.log_softmax(model(torch.tensor([ids[:-1]])).logits[0].double(), -1)
        out[lab] = sum(float(lp[len(ids) - len(cont) + j - 1, c]) for j, c in enumerate(cont))
    return out


@pytest.mark.parametrize("maybe_is_one_token", [True, False])
def test_exact_scoring_three_questions(tmp_path, model, tok, maybe_is_one_token):
    if not maybe_is_one_token:  # a tokenizer that never saw "maybe": a multi-token answer shares the pass too
        tok = train_bpe_tokenizer([TEXT + " Abstract: Question: Answer: yes no Does Is"])
        assert len(tok(" maybe")["input_ids"]) > 1
    qs = pq.load_questions(_write(tmp_path, RECORDS))
    r = pq.score_questions(model, tok, qs, batch_size=2, bootstrap=50)
    preds, preds_bytes = [], []
    for q in qs:
        hand = _hand_loglikelihoods(model, tok, q)
        got = r["predictions"][q.id]["loglikelihood"]
        for lab in pq.LABELS:
            assert got[lab] == pytest.approx(hand[lab], abs=1e-4)
        best = max(pq.LABELS, key=hand.get)
        best_bytes = max(pq.LABELS, key=lambda lab: hand[lab] / len(lab))  # bytes of "yes", "no", "maybe"
        assert r["predictions"][q.id]["pred"] == best and r["predictions"][q.id]["pred_bytes"] == best_bytes
        preds.append(best)
        preds_bytes.append(best_bytes)
    truth = [q.label for q in qs]
    assert r["n"] == 3 and r["skipped"] == 0 and r["truncated_questions"] == 0
    assert r["acc"] == pytest.approx(np.mean([a == b for a, b in zip(truth, preds)]))
    assert r["acc_bytes"] == pytest.approx(np.mean([a == b for a, b in zip(truth, preds_bytes)]))
    assert r["macro_f1"] == pytest.approx(pq.macro_f1(pq._codes(truth), pq._codes(preds)))


def test_long_prompts_are_cut_from_the_left_as_lm_eval_does(model, tok):
    long_q = pq.Question("1", "Does aspirin reduce pain?", (TEXT, "aspirin reduces pain ."), "yes")
    r = pq.score_questions(model, tok, [long_q], context=24, bootstrap=0)
    assert r["truncated_questions"] == 1 and r["n"] == 1
    hand = _hand_loglikelihoods(model, tok, long_q, context=24)
    for lab in pq.LABELS:
        assert r["predictions"]["1"]["loglikelihood"][lab] == pytest.approx(hand[lab], abs=1e-4)


def test_fewshot_prompt_has_lm_eval_layout(model, tok):
    q = pq.Question("1", "Does aspirin reduce pain?", ("aspirin reduces pain .",), "yes")
    shots = [pq.Question(str(i), "Is it?", ("the patient was treated", "with heparin ."), "no") for i in range(2)]
    one = "Abstract: the patient was treated\nwith heparin .\nQuestion: Is it?\nAnswer: no\n\n"
    assert (
        pq.prompt_text(q, shots)
        == one * 2 + "Abstract: aspirin reduces pain .\nQuestion: Does aspirin reduce pain?\nAnswer:"
    )
    r = pq.score_questions(model, tok, [q], shots=shots, bootstrap=0)
    hand = _hand_loglikelihoods(model, tok, q, context=128, shots=shots)  # the model's context: cut
    assert r["predictions"]["1"]["loglikelihood"]["maybe"] == pytest.approx(hand["maybe"], abs=1e-4)
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
        f"PubMedQA 500 test questions: {wall:.1f}s, acc {q['acc']:.3f} {q['acc_ci95']}, "
        f"macro-F1 {q['macro_f1']:.3f} {q['macro_f1_ci95']}"
    )
    assert q["n"] + q["skipped"] == 500
    assert q["label_counts"] == {"yes": 276, "no": 169, "maybe": 55} or q["skipped"] > 0
    assert 0 <= q["acc_ci95"][0] <= q["acc"] <= q["acc_ci95"][1] <= 1


def test_each_context_is_read_once_even_for_multi_token_answers(model, tok):
    from vocabadapt.evaluation import bpb

    multi = train_bpe_tokenizer([TEXT + " Abstract: Question: Answer: yes no Does Is"])
    assert len(multi(" maybe")["input_ids"]) > 1
    qs = [
        pq.Question(str(i), "Does aspirin reduce pain?", ("aspirin reduces pain .",) * (i + 1), "yes") for i in range(4)
    ]
    calls = []
    hook = model.register_forward_hook(
        lambda mod, args, kwargs, out: calls.append(kwargs["input_ids"].shape), with_kwargs=True
    )
    try:
        pq.score_questions(model, multi, qs, batch_size=8, bootstrap=0)
    finally:
        hook.remove()
    # answers branch after their first token (" " + letters): one pass per context, then the three
    # answers' remaining tokens from its KV cache (3 short rows), instead of 3 full rows per question
    assert [c[0] for c in calls] == [1, 3] * 4
    assert sorted(c[1] for c in calls[::2]) == sorted(
        len(pq.encode_pair(multi, pq.prompt_text(q), " yes")[0]) for q in qs
    )
    assert all(c[1] < 8 for c in calls[1::2])
    rows = [bpb.Row([1, 2, 3, 4], 3), bpb.Row([1, 2, 3, 5, 6], 3), bpb.Row([1, 2, 3, 7, 8], 3)]
    inputs, served_by, branched = bpb._shared_forwards(rows)
    assert inputs == [[1, 2, 3, 5], [1, 2, 3, 7]] and served_by == [0, 0, 1]  # branches after one token: two
    assert branched == {(1, 2, 3): [0, 1]}  # ... which share the context [1, 2, 3] through the KV cache
