"""The BC5CDR entity cloze: PubTator parsing, question building, scoring (lm-eval parity is in
test_lm_eval_parity.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import SHARED_DATA, TEXT, tiny_model, train_bpe_tokenizer
from vocabadapt.errors import InputError
from vocabadapt.evaluation import cloze

REPO = Path(__file__).resolve().parents[2]


def _pubtator(docs: list[tuple[str, str, str, list[tuple[str, str, str]]]]) -> str:
    """PubTator text from (pmid, title, abstract, [(mention, type, concept)]); offsets found in the text."""
    out = []
    for pmid, title, abstract, mentions in docs:
        full = title + " " + abstract
        out += [f"{pmid}|t|{title}", f"{pmid}|a|{abstract}"]
        for text, etype, concept in mentions:
            start = full.index(text)
            out.append(f"{pmid}\t{start}\t{start + len(text)}\t{text}\t{etype}\t{concept}")
        out.append(f"{pmid}\tCID\tD1\tD2")
        out.append("")
    return "\n".join(out) + "\n"


CHEMS = ["aspirin", "heparin", "cocaine", "lithium", "warfarin", "morphine"]
DISEASES = ["pain", "arrest", "seizures", "nausea", "fever", "delirium"]


def _docs() -> list:
    docs = []
    for i in range(6):
        c, d = CHEMS[i], DISEASES[i]
        title = f"Study number {i} of drug effects."
        abstract = f"Patients were followed for a long time in the clinic and then treated with {c} which caused {d} ."
        docs.append((str(100 + i), title, abstract, [(c, "Chemical", f"C{i}"), (d, "Disease", f"D{i}")]))
    return docs


def test_read_pubtator_offsets_and_mentions(tmp_path):
    f = tmp_path / "cdr.txt"
    f.write_text(_pubtator(_docs()))
    docs = cloze.read_pubtator(f)
    assert [d.pmid for d in docs] == [str(100 + i) for i in range(6)]
    d0 = docs[0]
    assert [(m.text, m.type, m.concept) for m in d0.mentions] == [
        ("aspirin", "Chemical", "C0"),
        ("pain", "Disease", "D0"),
    ]
    assert d0.text[d0.mentions[0].start : d0.mentions[0].end] == "aspirin"


def test_a_pubtator_file_without_annotations_is_an_error_naming_it(tmp_path):
    f = tmp_path / "no_mentions.PubTator.txt"
    f.write_text("1|t|A title.\n1|a|An abstract without annotations.\n\n")
    with pytest.raises(InputError, match=r"no_mentions\.PubTator\.txt: 1 document\(s\) but no mention annotation"):
        cloze.read_pubtator(f)
    bad = tmp_path / "shifted.txt"
    bad.write_text("1|t|A title.\n1|a|Aspirin here.\n1\t0\t7\tAspirin\tChemical\tC1\n")
    with pytest.raises(InputError, match=r"shifted.txt: PMID 1: mention 'Aspirin' at 0-7 does not match"):
        cloze.read_pubtator(bad)
    with pytest.raises(InputError, match="empty.txt: no PubTator document"):
        (tmp_path / "empty.txt").write_text("\n")
        cloze.read_pubtator(tmp_path / "empty.txt")


def test_questions_mask_a_mention_and_offer_same_type_distractors_from_other_abstracts(tmp_path):
    f = tmp_path / "cdr.txt"
    f.write_text(_pubtator(_docs()))
    docs = cloze.read_pubtator(f)
    qs = cloze.build_questions(docs, 8, seed=1, min_context_chars=40)
    assert qs == cloze.build_questions(docs, 8, seed=1, min_context_chars=40)  # seeded
    assert qs != cloze.build_questions(docs, 8, seed=2, min_context_chars=40)
    assert len(qs) == 8 and len({q["pmid"] for q in qs}) == 6  # every abstract before any second mention
    by_pmid = {d.pmid: d for d in docs}
    for q in qs:
        doc = by_pmid[q["pmid"]]
        gold = q["choices"][q["gold"]]
        m = next(m for m in doc.mentions if m.text == gold)
        assert q["context"] == doc.text[: m.start].rstrip(" ")
        pool = CHEMS if q["type"] == "Chemical" else DISEASES
        assert len(q["choices"]) == 4 and len(set(q["choices"])) == 4 and set(q["choices"]) <= set(pool)
        assert not any(x.text in q["choices"] for x in doc.mentions if x.text != gold)  # distractors from elsewhere
    # a mention too close to the start has too little context to be asked
    assert cloze.build_questions(docs, 50, min_context_chars=40)[0]["context"].startswith("Study number")
    with pytest.raises(InputError, match="no cloze question"):
        cloze.build_questions(docs, 5, min_context_chars=10_000)


def test_load_cloze_checks_records(tmp_path):
    f = tmp_path / "q.jsonl"
    f.write_text(json.dumps({"id": "a", "context": "x", "choices": ["p", "q"], "gold": 2}) + "\n")
    with pytest.raises(InputError, match=r"q.jsonl:1: 'gold' must be an index into choices \(0..1\)"):
        cloze.load_cloze(f)
    with pytest.raises(InputError, match="does not exist"):
        cloze.load_cloze(tmp_path / "missing.jsonl")


def test_score_cloze_values_on_a_model_that_knows_one_answer(tmp_path):
    tok = train_bpe_tokenizer([TEXT + " aspirin heparin cocaine lithium" * 5], vocab_size=400)
    model = tiny_model("llama", vocab_size=len(tok), max_pos=64, seed=2)
    qs = [
        cloze.ClozeQuestion("q1", "the patient received", ("aspirin", "heparin", "cocaine", "lithium"), 0, "Chemical"),
        cloze.ClozeQuestion("q2", "the study of", ("aspirin", "heparin", "cocaine", "lithium"), 2, "Chemical"),
    ]
    r = cloze.score_cloze(model, tok, qs, bootstrap=200)
    assert r["n"] == 2 and r["chance"] == 0.25
    for q in qs:
        p = r["predictions"][q.id]
        ll = np.array(p["loglikelihood"])
        assert p["pred"] == int(np.argmax(ll)) and p["pred_norm"] == int(np.argmax(ll / [7, 7, 7, 7]))
    acc = np.mean([r["predictions"][q.id]["pred"] == q.gold for q in qs])
    assert r["acc"] == acc and r["by_type"]["Chemical"] == {"n": 2, "acc": acc}
    assert r["acc_ci95"][0] <= r["acc"] <= r["acc_ci95"][1]
    # each choice's log-likelihood is that of its tokens after the context, by hand
    ids = tok("the patient received aspirin")["input_ids"]
    ctx = tok("the patient received")["input_ids"]
    with torch.no_grad():
        lp = torch.log_softmax(model(torch.tensor([ids])).logits[0].float(), -1)
    by_hand = sum(float(lp[t - 1, ids[t]]) for t in range(len(ctx), len(ids)))
    assert r["predictions"]["q1"]["loglikelihood"][0] == pytest.approx(by_hand, abs=1e-4)


def test_committed_cloze_file_is_the_builders_output_and_valid():
    qs = cloze.load_cloze(REPO / "examples" / "bc5cdr_cloze" / "bc5cdr_cloze.jsonl")
    assert len(qs) == 600 and len({q.id for q in qs}) == 600
    assert all(len(q.choices) == 4 and len(set(q.choices)) == 4 for q in qs)
    golds = np.bincount([q.gold for q in qs], minlength=4)
    assert golds.min() > 100  # the gold position is shuffled, not always first


@pytest.mark.shared_data("biomed/raw/bc5cdr/CDR_TestSet.PubTator.txt")
def test_builder_reproduces_the_committed_files(tmp_path):
    import subprocess
    import sys

    src = SHARED_DATA / "biomed" / "raw" / "bc5cdr" / "CDR_TestSet.PubTator.txt"
    subprocess.run(
        [sys.executable, "-m", "benchmarks.build_bc5cdr_cloze", "--source", str(src), "--out", str(tmp_path)],
        cwd=REPO,
        check=True,
        capture_output=True,
    )
    for name in ("bc5cdr_cloze.jsonl", "test_documents.jsonl.gz"):
        assert (tmp_path / name).read_bytes() == (REPO / "examples" / "bc5cdr_cloze" / name).read_bytes(), name
