"""vocabadapt's PubMedQA choices and bits per byte against lm-evaluation-harness itself (run offline
on local task YAMLs over the same data and the same tiny models)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import TEXT, tiny_model, train_bpe_tokenizer
from vocabadapt.evaluation import bpb
from vocabadapt.evaluation import pubmedqa as pq

lm_eval = pytest.importorskip("lm_eval")  # the dev extra installs it

CONTEXTS = [
    "the patient received aspirin for chest pain .",
    "heparin slows the growth .",
    "cardiac arrest after cocaine use was reported .",
    "the study of tumour growth in mice .",
]
QUESTIONS = [
    "Does aspirin reduce pain?",
    "Does heparin cause tumour growth?",
    "Is cocaine use linked to arrest?",
    "Is heparin used in mice?",
]


def _records() -> list[dict]:
    recs = []
    for i in range(14):
        recs.append(
            {
                "id": str(100 + i),
                "QUESTION": QUESTIONS[i % 4],
                "CONTEXTS": [CONTEXTS[(i + k) % 4] for k in range(1 + i % 3)],
                "final_decision": pq.LABELS[i % 3],
            }
        )
    # longer than the 128-token context: lm-eval cuts it from the left, so must we
    recs.append({"id": "200", "QUESTION": QUESTIONS[0], "CONTEXTS": [TEXT, CONTEXTS[1]], "final_decision": "yes"})
    return recs


def _run_lm_eval(model, tok, include: Path, task: str, **kw) -> dict:
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    lm = HFLM(pretrained=model, tokenizer=tok, batch_size=4, device="cpu")
    return lm_eval.simple_evaluate(
        model=lm,
        tasks=[task],
        task_manager=TaskManager(include_path=str(include), include_defaults=False),
        log_samples=True,
        **kw,
    )


def _pubmedqa_task(folder: Path, data: Path) -> None:
    """lm-eval's own pubmedqa task (its installed YAML and doc_to_text), reading a local file."""
    base = Path(lm_eval.__file__).parent / "tasks" / "pubmedqa" / "pubmedqa.yaml"
    (folder / "pubmedqa_local.yaml").write_text(
        f"include: {base}\ntask: pubmedqa_local\ndataset_path: json\ndataset_name: null\n"
        f"dataset_kwargs:\n  data_files:\n    test: {data}\ntraining_split: null\nvalidation_split: null\n"
        "metric_list:\n  - metric: acc\n  - metric: acc_bytes\n"
    )


@pytest.mark.parametrize("maybe_is_one_token", [True, False])
def test_pubmedqa_choices_equal_lm_eval_on_every_question(tmp_path, maybe_is_one_token):
    words = " Abstract: Question: Answer: yes no Does Is" + (" maybe" if maybe_is_one_token else "")
    tok = train_bpe_tokenizer([TEXT + words * 10], vocab_size=500)
    assert (len(tok(" maybe")["input_ids"]) == 1) == maybe_is_one_token
    model = tiny_model("gpt_neox", vocab_size=len(tok), max_pos=128, seed=3)
    with torch.no_grad():  # sharper predictions than the default 0.05 scale: clear winners, not ties
        model.get_output_embeddings().weight.mul_(40)
    data = tmp_path / "pubmedqa.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in _records()))
    _pubmedqa_task(tmp_path, data)

    ours = pq.score_questions(model, tok, pq.load_questions(data), batch_size=3, bootstrap=0)
    theirs = _run_lm_eval(model, tok, tmp_path, "pubmedqa_local")
    samples = theirs["samples"]["pubmedqa_local"]
    assert len(samples) == ours["n"] == 15 and ours["truncated_questions"] == 1
    for s in samples:
        lls = [float(ll) for ll, _ in s["filtered_resps"]]
        mine = ours["predictions"][s["doc"]["id"]]
        assert mine["pred"] == pq.LABELS[int(np.argmax(lls))]  # lm-eval's choice
        assert mine["pred_bytes"] == pq.LABELS[int(np.argmax(np.array(lls) / [3, 2, 5]))]
        assert [mine["loglikelihood"][lab] for lab in pq.LABELS] == pytest.approx(lls, abs=1e-4)
    res = theirs["results"]["pubmedqa_local"]
    assert ours["acc"] == pytest.approx(res["acc,none"]) and ours["acc_bytes"] == pytest.approx(res["acc_bytes,none"])


def test_windows_are_lm_eval_rolling_windows():
    from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

    for n_tokens in (1, 2, 5, 8, 9, 16, 17, 40, 41):
        for context in (1, 2, 4, 8):
            tokens = list(range(100, 100 + n_tokens))
            seq = [0] + tokens
            theirs = [make_disjoint_window(w) for w in get_rolling_token_windows(tokens, 0, context, 1)]
            ours = [(seq[b:e], f - b) for b, e, f in bpb.windows(len(seq), context)]
            # lm-eval feeds (ctx + cont)[-(max_len + 1):][:-1]; ours feeds ids[:-1] of the row
            assert [(ids[:f], ids[f:]) for ids, f in ours] == [
                ((c + t)[-(context + 1) :][: -len(t)], t) for c, t in theirs
            ], (n_tokens, context)


def test_bits_per_byte_equals_lm_eval_rolling(tmp_path):
    tok = train_bpe_tokenizer([TEXT])
    model = tiny_model("gpt_neox", vocab_size=len(tok), max_pos=32, seed=5)
    docs = [TEXT, TEXT[:180], "aspirin reduces pain . the study of tumour growth in mice", TEXT[40:700]]
    assert max(len(tok(d)["input_ids"]) for d in docs) > 3 * 32  # several windows per long document
    (tmp_path / "docs.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    (tmp_path / "rolling_local.yaml").write_text(
        f"task: rolling_local\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {tmp_path / 'docs.jsonl'}\n"
        "output_type: loglikelihood_rolling\ntest_split: test\ndoc_to_text: ''\ndoc_to_target: text\n"
        "metric_list:\n  - metric: bits_per_byte\n"
    )
    theirs = _run_lm_eval(model, tok, tmp_path, "rolling_local")["results"]["rolling_local"]["bits_per_byte,none"]
    ours = bpb.bits_per_byte(model, tok, docs, batch_size=3)
    assert ours["context"] == 32 and ours["windows"] > len(docs)
    print(
        f"bits per byte: vocabadapt {ours['bits_per_byte']:.8f}, lm-eval {theirs:.8f}, "
        f"difference {ours['bits_per_byte'] - theirs:+.2e} ({ours['windows']} windows)"
    )
    assert abs(ours["bits_per_byte"] - theirs) < 1e-3
    assert ours["bits_per_byte"] == pytest.approx(theirs, abs=1e-5)  # in fact equal up to float rounding
    assert math.isfinite(theirs)


def test_cloze_acc_and_acc_norm_equal_lm_eval_on_the_committed_task_yaml(tmp_path):
    """The shipped examples/bc5cdr_cloze/bc5cdr_cloze.yaml, pointed at a small local file, scored by lm-eval
    and by vocabadapt.evaluation.cloze on the same tiny model: the same choice for every question."""
    from vocabadapt.evaluation import cloze

    repo = Path(__file__).resolve().parents[2]
    qs = cloze.load_cloze(repo / "examples" / "bc5cdr_cloze" / "bc5cdr_cloze.jsonl", max_samples=12)
    data = tmp_path / "cloze.jsonl"
    data.write_text(
        "".join(
            json.dumps({"id": q.id, "context": q.context[-300:], "choices": list(q.choices), "gold": q.gold}) + "\n"
            for q in qs
        )
    )
    (tmp_path / "cloze_local.yaml").write_text(
        f"include: {repo / 'examples' / 'bc5cdr_cloze' / 'bc5cdr_cloze.yaml'}\ntask: cloze_local\n"
        f"dataset_kwargs:\n  data_files:\n    test: {data}\n"
    )
    tok = train_bpe_tokenizer([TEXT] + [q.context[-300:] + " " + " ".join(q.choices) for q in qs], vocab_size=600)
    model = tiny_model("llama", vocab_size=len(tok), max_pos=64, seed=4)  # 64 tokens: contexts are cut from the left
    with torch.no_grad():
        model.get_output_embeddings().weight.mul_(40)
    ours = cloze.score_cloze(model, tok, cloze.load_cloze(data), batch_size=3, bootstrap=0)
    theirs = _run_lm_eval(model, tok, tmp_path, "cloze_local")
    assert ours["n"] == 12 and ours["truncated_questions"] > 0
    for s in theirs["samples"]["cloze_local"]:
        lls = np.array([float(ll) for ll, _ in s["filtered_resps"]])
        mine = ours["predictions"][s["doc"]["id"]]
        assert mine["loglikelihood"] == pytest.approx(lls.tolist(), abs=1e-4)
        assert mine["pred"] == int(np.argmax(lls))
        assert mine["pred_norm"] == int(np.argmax(lls / [len(c) for c in s["doc"]["choices"]]))
    res = theirs["results"]["cloze_local"]
    for metric in ("acc", "acc_norm", "acc_bytes"):
        assert ours[metric] == pytest.approx(res[f"{metric},none"]), metric
