"""Vectors only when the row initialiser reads them: embed trains nothing and align maps identical tokens and
the fallback under fvt_prior (the default), fvt, mean and random; tokalign, soft and null train and align.

The pipeline runs corpus..transplant on a tiny model, corpus and tokenizers (seconds)."""

from __future__ import annotations

import contextlib
import io
import json

import pytest

from helpers import TEXT, save_tiny_model, train_bpe_tokenizer, write_config, write_jsonl
from vocabadapt import init as initialisers
from vocabadapt.align.mapping import TokenMapping
from vocabadapt.cli import main
from vocabadapt.config import load_config, validate_dict
from vocabadapt.errors import ConfigError
from vocabadapt.run.runner import run
from vocabadapt.stages import align as align_stage
from vocabadapt.stages import embed as embed_stage

DOCS = [f"{TEXT} case {i}: the patient number {i} received {i % 7} doses of heparin." for i in range(60)]
UNTIL = "transplant"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("novec")
    source_tok = train_bpe_tokenizer(DOCS[:20], vocab_size=280)
    target_tok = train_bpe_tokenizer(DOCS, vocab_size=330)
    save_tiny_model(root / "model", source_tok, "gpt_neox", max_pos=64)
    target_tok.save_pretrained(str(root / "target_tok"))
    write_jsonl(root / "train.jsonl", DOCS)
    config = {
        "models": {"source_model": "model", "target_tokenizer": "target_tok"},
        "corpus": {"inputs": ["train.jsonl"], "heldout_fraction": 0.1},
        "term_mining": {"enabled": False},
        "tokenization": {"workers": 1},
        "embedding": {"fasttext": {"epochs": 2, "dim": 16, "thread": 1}},
        "alignment": {"pivot_count": 50, "similarity_threshold": 0.3, "calibration_tokens": 64},
        "pipeline": {"run_root": "runs", "torch_threads": 1},
    }
    return root, write_config(root / "tiny.yaml", config)


@pytest.fixture(scope="module")
def default_run(setup):
    """The default init (fvt_prior) through transplant, by the CLI; (run dir, its stderr)."""
    root, cfg = setup
    run_dir = root / "default"
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert main(["transplant", str(cfg), "--run-dir", str(run_dir)]) == 0
    return run_dir, err.getvalue()


def _mapping(run_dir):
    return TokenMapping.load(run_dir / "align" / "mapping.json")


def _ran(result):
    return [s for s in result.ran if s in ("corpus", "tokenize", "embed", "align", "transplant")]


def test_every_initialiser_declares_whether_it_reads_vectors():
    from vocabadapt import registry

    assert registry.initialiser_names(reads_vectors=True) == ["tokalign", "soft"]
    assert initialisers.reads_vectors(None) is True
    assert all(initialisers.get(n).reads_vectors == registry.reads_vectors(n) for n in registry.initialiser_names())
    assert initialisers.reads_vectors(initialisers.DEFAULT) is False


def test_default_init_trains_no_vectors_and_says_why(default_run):
    run_dir, err = default_run
    emb = run_dir / "embeddings"
    assert sorted(p.name for p in emb.iterdir()) == ["summary.json"]  # no vectors, ids or counts
    reason = "alignment.init = fvt_prior reads no vectors (embedding.enabled: auto)"
    assert json.loads((emb / "summary.json").read_text()) == {"skipped": True, "reason": reason}
    manifest = json.loads((run_dir / "manifest.json").read_text())
    rec = manifest["stages"]["embed"]
    assert rec["summary"]["skipped"] is True and rec["summary"]["reason"] == reason
    assert rec["config_keys"] == [] and rec["config_facts"] == {"vectors": False}
    assert "[3/9] embed      done (" in err and f"no vectors trained: {reason})" in err
    assert "[4/9] align      done (" in err and f"no vector alignment: {reason})" in err
    # align: identical and special tokens, the fallback (fvt) for every other token; no vector alignment
    summary = json.loads((run_dir / "align" / "summary.json").read_text())
    assert summary["vector_alignment"] == {"done": False, "reason": reason}
    m = _mapping(run_dir)
    assert set(m.methods) <= {"special", "identical", "fvt", "mean"} and "fvt" in m.methods
    assert summary["counts"] == m.counts() and summary["coverage"] == round(m.counts()["identical"] / len(m.methods), 4)
    assert all(s is None for s in m.similarity)
    assert "threshold" not in summary and "pivots" not in summary  # settings that had no effect are not recorded
    provenance = [json.loads(line) for line in (run_dir / "align" / "provenance.jsonl").read_text().splitlines()]
    assert len(provenance) == len(m.methods) and provenance[5]["target_count"] is None
    assert (run_dir / "model" / "init" / "transplant.json").exists()


def test_default_init_rows_are_bitwise_those_of_a_run_with_vectors(setup, default_run):
    """Before this change every run trained vectors and aligned with them; fvt_prior never read that
    alignment, so the transplanted model must be bitwise the same (embedding.enabled: true is that path)."""
    root, cfg = setup
    run_dir, _ = default_run
    with_vectors = run(cfg, ["embedding.enabled=true"], run_dir=root / "with_vectors", until=UNTIL).run_dir
    assert (with_vectors / "embeddings" / "target.npy").exists()
    m = _mapping(with_vectors)
    assert "aligned" in m.methods  # the vector alignment did find tokens: the comparison means something
    assert json.loads((with_vectors / "embeddings" / "summary.json").read_text())["target"]["rows"] > 0
    files = sorted(p.name for p in (run_dir / "model" / "init").glob("*.safetensors"))
    assert files
    for name in files:
        a = (run_dir / "model" / "init" / name).read_bytes()
        b = (with_vectors / "model" / "init" / name).read_bytes()
        assert a == b, name


def test_switching_init_reruns_exactly_what_depends_on_vectors(setup, tmp_path):
    root, cfg = setup
    run_dir = tmp_path / "switch"
    first = run(cfg, run_dir=run_dir, until=UNTIL)
    assert _ran(first) == ["corpus", "tokenize", "embed", "align", "transplant"]
    # fvt reads no vectors either: embed and align stay up to date (nothing to retrain), transplant reruns
    r = run(cfg, ["alignment.init=fvt"], run_dir=run_dir, until=UNTIL)
    assert _ran(r) == ["transplant"]
    # settings of the vector alignment change nothing while no vectors are trained
    r = run(
        cfg,
        ["alignment.init=fvt", "embedding.fasttext.dim=8", "alignment.similarity_threshold=0.9"],
        run_dir=run_dir,
        until=UNTIL,
    )
    assert _ran(r) == []
    # tokalign reads the alignment: vectors are trained, align aligns, transplant rebuilds
    r = run(cfg, ["alignment.init=tokalign"], run_dir=run_dir, until=UNTIL)
    assert _ran(r) == ["embed", "align", "transplant"]
    assert (run_dir / "embeddings" / "source.npy").exists() and "aligned" in _mapping(run_dir).methods
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["stages"]["embed"]["config_facts"] == {"vectors": True}
    assert manifest["stages"]["embed"]["config_keys"] == ["embedding.backend", "embedding.fasttext"]
    # soft reads the same vectors and the same alignment
    r = run(cfg, ["alignment.init=soft"], run_dir=run_dir, until=UNTIL)
    assert _ran(r) == ["transplant"]
    # with vectors, their settings matter again
    r = run(cfg, ["alignment.init=soft", "alignment.similarity_threshold=0.9"], run_dir=run_dir, until=UNTIL)
    assert _ran(r) == ["align", "transplant"]
    # enabled: true with tokalign is the same plan as auto: nothing reruns but transplant (its init changed)
    r = run(cfg, ["alignment.init=tokalign", "embedding.enabled=true"], run_dir=run_dir, until=UNTIL)
    assert _ran(r) == ["align", "transplant"]  # align: back to the configured threshold
    # back to the default: the vectors are dropped, align maps without them
    r = run(cfg, run_dir=run_dir, until=UNTIL)
    assert _ran(r) == ["embed", "align", "transplant"]
    assert sorted(p.name for p in (run_dir / "embeddings").iterdir()) == ["summary.json"]
    assert _mapping(run_dir).methods == _mapping(first.run_dir).methods


def test_stage_hashes_follow_the_vector_plan():

    def hashes(**sections):
        c = validate_dict(sections, "test")
        return embed_stage.SPEC.config_hash(c), align_stage.SPEC.config_hash(c)

    default = hashes()
    assert hashes(alignment={"init": "fvt"}) == hashes(alignment={"init": "mean"}) == default
    assert hashes(alignment={"init": "fvt_prior", "top_k": 9}, embedding={"fasttext": {"dim": 8}}) == default
    assert hashes(embedding={"enabled": False}) == default  # same plan: no vectors
    trained = hashes(alignment={"init": "tokalign"})
    assert trained[0] != default[0] and trained[1] != default[1]
    assert hashes(alignment={"init": "soft"}) == hashes(alignment={"init": None}) == trained
    assert hashes(embedding={"enabled": True}) == trained
    assert hashes(alignment={"init": "tokalign", "fallback": "mean"})[0] == trained[0]  # embed: not its key
    assert validate_dict({}, "test").vector_plan().trained is False


def test_enabled_false_with_an_init_that_reads_vectors_is_refused_at_load(tmp_path):
    for init in ("tokalign", "soft", None):
        path = write_config(tmp_path / "c.yaml", {"embedding": {"enabled": False}, "alignment": {"init": init}})
        with pytest.raises(ConfigError) as e:
            load_config(path)
        msg = str(e.value)
        assert "embedding.enabled" in msg and "alignment.init" in msg and "auto" in msg and "fvt_prior" in msg
    path = write_config(tmp_path / "ok.yaml", {"embedding": {"enabled": False}})
    assert load_config(path).vector_plan().trained is False
    assert load_config(path, ["embedding.enabled=auto", "alignment.init=tokalign"]).vector_plan().trained
    with pytest.raises(ConfigError, match="embedding.enabled"):
        load_config(path, ["embedding.enabled=sometimes"])
    with pytest.raises(ConfigError, match="alignment.init"):
        load_config(path, ["alignment.init=tokalign"])  # --set is checked the same way
