"""The corpus stage: formats, bad lines, dedup, budget, held-out split, errors."""

from __future__ import annotations

import gzip
import json

import pytest

from vocabadapt.config import validate_dict
from vocabadapt.errors import InputError
from vocabadapt.run.context import StageContext
from vocabadapt.run.layout import RunLayout
from vocabadapt.stages.corpus import run as run_stage


def _ctx(tmp_path, corpus: dict, min_len: int = 0):
    cfg = validate_dict({"corpus": corpus, "tokenization": {"min_line_length": min_len}}, "test")
    return StageContext(layout=RunLayout(tmp_path / "run"), config=cfg, stage="corpus")


def _read(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_jsonl_bad_lines_dedup_and_fields(tmp_path):
    f = tmp_path / "a.jsonl"
    f.write_bytes(
        b'{"title": "T1", "abstract": "first  abstract"}\n'
        b"not json\n"
        b'{"other": 1}\n'
        b'{"title": "T1", "abstract": "first abstract"}\n'  # duplicate after whitespace normalisation
        b'{"abstract": "\xff\xfe broken"}\n'
        b'{"abstract": "only abstract"}\n'
    )
    ctx = _ctx(tmp_path, {"inputs": [str(f)], "text_fields": ["title", "abstract"], "heldout_fraction": 0.0})
    stats = run_stage(ctx)
    docs = _read(ctx.layout.path("corpus", "train.jsonl"))
    assert [d["text"] for d in docs] == ["T1\nfirst  abstract", "only abstract"]
    assert docs[0]["id"] == "a.jsonl:1"
    assert stats["documents"] == 2 and stats["duplicates"] == 1 and stats["bad_lines"] == 3
    file_stats = json.loads(ctx.layout.path("corpus", "stats.json").read_text())["files"][str(f)]
    assert file_stats["first_bad_lines"] == [
        "line 2: not valid JSON",
        "line 3: no text in fields ['title', 'abstract']",
        "line 5: not UTF-8",
    ]
    assert stats["bytes"] == len(b"T1\nfirst  abstract") + len(b"only abstract")


def test_txt_blocks_lines_gzip_and_parquet(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    (tmp_path / "b.txt").write_text("para one\nstill one\n\npara two\n")
    with gzip.open(tmp_path / "c.txt.gz", "wt") as g:
        g.write("gz para\n")
    pq.write_table(pa.table({"text": ["pq one", None, "pq two"]}), tmp_path / "d.parquet")
    inputs = [str(tmp_path / n) for n in ("b.txt", "c.txt.gz", "d.parquet")]
    ctx = _ctx(tmp_path, {"inputs": inputs, "heldout_fraction": 0.0})
    stats = run_stage(ctx)
    texts = [d["text"] for d in _read(ctx.layout.path("corpus", "train.jsonl"))]
    assert texts == ["para one\nstill one", "para two", "gz para", "pq one", "pq two"]
    assert stats["bad_lines"] == 1  # the parquet row without text
    ctx2 = _ctx(tmp_path / "l", {"inputs": [inputs[0]], "txt_document": "line", "heldout_fraction": 0.0})
    run_stage(ctx2)
    assert [d["text"] for d in _read(ctx2.layout.path("corpus", "train.jsonl"))] == [
        "para one",
        "still one",
        "para two",
    ]


def test_heldout_split_is_by_hash_and_never_in_training(tmp_path):
    f = tmp_path / "a.jsonl"
    f.write_text("".join(json.dumps({"text": f"document number {i}"}) + "\n" for i in range(400)))
    ctx = _ctx(tmp_path, {"inputs": [str(f)], "heldout_fraction": 0.25})
    stats = run_stage(ctx)
    train = {d["text"] for d in _read(ctx.layout.path("corpus", "train.jsonl"))}
    held = {d["text"] for d in _read(ctx.layout.path("corpus", "heldout.jsonl"))}
    assert not train & held and len(train) + len(held) == 400
    assert 60 < stats["heldout_documents"] < 140
    # Reversed file order: the same documents are held out (the split depends on the text only).
    g = tmp_path / "rev.jsonl"
    g.write_text("".join(reversed(f.read_text().splitlines(keepends=True))))
    ctx2 = _ctx(tmp_path / "r", {"inputs": [str(g)], "heldout_fraction": 0.25})
    run_stage(ctx2)
    assert {d["text"] for d in _read(ctx2.layout.path("corpus", "heldout.jsonl"))} == held


def test_budget_and_separate_heldout_files(tmp_path):
    f = tmp_path / "a.jsonl"
    f.write_text("".join(json.dumps({"text": "x" * 100 + str(i)}) + "\n" for i in range(20)))
    h = tmp_path / "h.jsonl"
    h.write_text(json.dumps({"text": "x" * 100 + "3"}) + "\n")  # also in training: must be dropped there
    ctx = _ctx(tmp_path, {"inputs": [str(f)], "heldout_inputs": [str(h)], "byte_budget": 500})
    stats = run_stage(ctx)
    train = [d["text"] for d in _read(ctx.layout.path("corpus", "train.jsonl"))]
    assert len(train) == 4 and "x" * 100 + "3" not in train and stats["budget_applied"] is True
    assert stats["bytes"] <= 500 and stats["heldout_documents"] == 1 and stats["duplicates"] == 1


def test_errors_name_the_cause(tmp_path):
    with pytest.raises(InputError, match="matches no file"):
        run_stage(_ctx(tmp_path, {"inputs": [str(tmp_path / "missing.jsonl")]}))
    u16 = tmp_path / "u16.txt"
    u16.write_bytes("hello world\n".encode("utf-16"))
    with pytest.raises(InputError, match="UTF-16"):
        run_stage(_ctx(tmp_path, {"inputs": [str(u16)]}))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"body": "x"}\n')
    with pytest.raises(InputError, match="no usable training text.*first: .*line 1"):
        run_stage(_ctx(tmp_path, {"inputs": [str(bad)]}))
    short = tmp_path / "short.jsonl"
    short.write_text('{"text": "abc"}\n')
    with pytest.raises(InputError, match="shorter than tokenization.min_line_length=10"):
        run_stage(_ctx(tmp_path, {"inputs": [str(short)]}, min_len=10))


def test_lone_surrogate_is_a_bad_line_and_damaged_gzip_an_input_error(tmp_path):
    f = tmp_path / "s.jsonl"
    f.write_text(json.dumps({"text": "lone \ud800 surrogate"}) + "\n" + json.dumps({"text": "fine"}) + "\n")
    stats = run_stage(_ctx(tmp_path, {"inputs": [str(f)], "heldout_fraction": 0.0}))
    assert stats["documents"] == 1 and stats["bad_lines"] == 1
    g = tmp_path / "d.jsonl.gz"
    blob = bytearray(gzip.compress(b'{"text": "one"}\n' * 200))
    blob[20] ^= 0xFF  # corrupt the deflate stream: gzip raises zlib.error, not OSError
    g.write_bytes(bytes(blob))
    with pytest.raises(InputError, match="d.jsonl.gz"):
        run_stage(_ctx(tmp_path / "g", {"inputs": [str(g)], "heldout_fraction": 0.0}))


def test_a_few_broken_lines_in_the_middle_of_a_big_file_are_counted_and_named(tmp_path, caplog):
    import logging

    # 60,000 documents (about 3 MB) with 7 broken lines of three kinds far from the start.
    broken = {
        20_001: b"{not json\n",
        30_000: b'{"text": "cut off\n',
        30_001: b"\xff\xfe bad bytes\n",
        40_000: b'{"title": "no text field"}\n',
        45_000: b"[1, 2]\n",
        50_000: b"\x00\x00\n",
        59_999: b'{"text": 42}\n',
    }
    with open(tmp_path / "big.jsonl", "wb") as f:
        for n in range(1, 60_001):
            f.write(broken.get(n) or json.dumps({"text": f"document {n} about heparin and aspirin"}).encode() + b"\n")
    with caplog.at_level(logging.WARNING, logger="vocabadapt"):
        stats = run_stage(_ctx(tmp_path, {"inputs": [str(tmp_path / "big.jsonl")], "heldout_fraction": 0.0}))
    assert stats["bad_lines"] == 7 and stats["documents"] == 60_000 - 7
    per_file = json.loads((tmp_path / "run" / "corpus" / "stats.json").read_text())["files"]
    sample = per_file[str(tmp_path / "big.jsonl")]["first_bad_lines"]
    assert sample == [
        "line 20001: not valid JSON",
        "line 30000: not valid JSON",
        "line 30001: not UTF-8",
        "line 40000: no text in fields ['text']",
        "line 45000: no text in fields ['text']",
    ]
    warning = next(r.getMessage() for r in caplog.records if "bad line(s) skipped" in r.getMessage())
    assert "big.jsonl: 7 bad line(s) skipped (line 20001: not valid JSON;" in warning and warning.endswith(
        ", ...); the rest was read"
    )


def test_exclude_inputs_drop_evaluation_documents_by_text_or_title_from_both_splits(tmp_path):
    # Evaluation documents as the cloze's exclusion file holds them: {"pmid", "title", "text"}.
    excl = tmp_path / "eval_docs.jsonl"
    excl.write_text(
        json.dumps({"pmid": "1", "title": "A title that names the test abstract.", "text": "x"})
        + "\n"
        + json.dumps({"pmid": "2", "text": "Short.\nThe second  test abstract, matched by its whole text."})
        + "\n"
    )
    corpus = tmp_path / "corpus.jsonl"
    rows = [
        {"title": "A title that names the test abstract.", "abstract": "Its body, laid out differently."},  # title
        {"title": "Short.", "abstract": "The second test abstract,   matched by its whole text."},  # text
        {"title": "Short.", "abstract": "A training document whose short title is shared."},  # kept
        *({"title": f"Training title number {i}", "abstract": f"body {i}"} for i in range(40)),
    ]
    corpus.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = {"inputs": [str(corpus)], "text_fields": ["title", "abstract", "text"], "heldout_fraction": 0.3}
    plain = run_stage(_ctx(tmp_path / "plain", cfg))
    ctx = _ctx(tmp_path / "ex", {**cfg, "exclude_inputs": [str(excl)]})
    stats = run_stage(ctx)
    texts = [d["text"] for split in ("train", "heldout") for d in _read(ctx.layout.path("corpus", f"{split}.jsonl"))]
    assert stats["excluded"] == 2 and plain["excluded"] == 0
    assert stats["documents"] + stats["heldout_documents"] == 41 == len(texts)
    assert not any("test abstract" in t or "laid out" in t for t in texts)
    assert "Short.\nA training document whose short title is shared." in texts  # a 6-char first line is no title
    assert json.loads(ctx.layout.path("corpus", "stats.json").read_text())["excluded"] == 2


def test_exclude_inputs_without_documents_is_an_error_naming_the_file(tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(json.dumps({"text": "a training document"}) + "\n")
    empty = tmp_path / "nothing.jsonl"
    empty.write_text(json.dumps({"other": "field"}) + "\n")
    with pytest.raises(InputError, match=r"exclude_inputs: .*nothing.jsonl holds no document"):
        run_stage(_ctx(tmp_path, {"inputs": [str(corpus)], "exclude_inputs": [str(empty)]}))
    with pytest.raises(InputError, match="missing.jsonl' matches no file"):
        run_stage(_ctx(tmp_path, {"inputs": [str(corpus)], "exclude_inputs": [str(tmp_path / "missing.jsonl")]}))


@pytest.mark.shared_data("biomed/abstracts_bc5cdr.jsonl")
def test_the_committed_cloze_exclusion_drops_exactly_the_bc5cdr_test_abstracts(tmp_path):
    from pathlib import Path

    from helpers import SHARED_DATA

    repo = Path(__file__).resolve().parents[2]
    src = SHARED_DATA / "biomed" / "abstracts_bc5cdr.jsonl"
    excl = repo / "examples" / "bc5cdr_cloze" / "test_documents.jsonl.gz"
    cfg = {"inputs": [str(src)], "text_fields": ["title", "abstract", "text"], "heldout_fraction": 0.0}
    stats = run_stage(_ctx(tmp_path, {**cfg, "exclude_inputs": [str(excl)]}))
    # 500 test abstracts, and dev abstract 19370593, a Cochrane review that shares its title with a test one.
    assert stats["excluded"] == 501 and stats["documents"] == 999


def test_texts_within_keeps_cuts_or_drops_the_document_that_crosses_the_limit():
    """One definition of 'texts up to N bytes', with the three cut rules its callers use (issue 24)."""
    from vocabadapt.text.corpus import texts_within
    from vocabadapt.training.callbacks import heldout_sample

    docs = ["aaaa", "bé", "cccccc"]  # 4, 3 and 6 UTF-8 bytes
    assert texts_within(docs, 6, last="cut") == ["aaaa", "b"]  # "é" would be split by the cut: dropped
    assert texts_within(docs, 8, last="cut") == ["aaaa", "bé", "c"]
    assert texts_within(docs, 0, last="cut") == []
    assert texts_within(docs, 6, last="keep") == ["aaaa", "bé"]  # 7 bytes: the crossing one kept whole
    assert texts_within(docs, 4, last="keep") == ["aaaa"]
    assert texts_within(docs, 6, last="drop") == ["aaaa"]
    assert texts_within(docs, 2, last="drop") == ["aaaa"]  # the first is always taken
    assert texts_within(docs, None, last="keep") == docs
    for limit in (1, 4, 6, 7, 12, 13, 100):  # training's held-out sample follows the "drop" rule
        assert texts_within(docs, limit, last="drop") == heldout_sample(docs, limit)
