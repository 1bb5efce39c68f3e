"""Distillation across tokenizers (vocabadapt.training.byte_align, .distill, .objective) and train_rows / lr_embeddings
(vocabadapt.training.rows), on tiny models in seconds."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, TrainerCallback

from helpers import TEXT, save_tiny_model, tiny_stage_config, train_bpe_tokenizer
from vocabadapt.config import Config, VocabAdaptationConfig
from vocabadapt.errors import InputError
from vocabadapt.text.shards import ShardWriter
from vocabadapt.training.byte_align import Alignment, DistillCollator, align_segment
from vocabadapt.training.distill import (
    CHUNK_DISTANCES,
    LOSSES,
    Forward,
    LossInputs,
    TeacherSource,
    build_teacher,
    next_token_loss,
    shared_vocabulary,
)
from vocabadapt.training.settings import stage_settings
from vocabadapt.training.trainer import train_stage

SEQ = 24
SENTS = [s.strip() + " ." for s in TEXT.split(" . ") if s.strip()]


@pytest.fixture(scope="module")
def toks():
    src = train_bpe_tokenizer(SENTS, vocab_size=280)
    ext = train_bpe_tokenizer(SENTS, vocab_size=330)  # more merges of the same text: every boundary is a source one
    rep = train_bpe_tokenizer(["patien tre ceived aspi rin cardi ac arres t"] * 20, vocab_size=290)  # other splits
    return {"src": src, "ext": ext, "rep": rep}


def test_extension_like_pair_every_target_boundary_is_shared(toks):
    text = "the patient received aspirin"
    t = toks["ext"](text)["input_ids"]
    # target: the | Ġpatient | Ġre | ce | iv | ed | Ġ | aspirin           ends 3 11 14 16 18 20 21 28
    # source: the | Ġpatient | Ġ | re | ce | i | v | ed | Ġ | as | p | i | rin  ends 3 11 12 14 16 17 18 20 21 23 24 25 28
    assert toks["ext"].convert_ids_to_tokens(t) == ["the", "Ġpatient", "Ġre", "ce", "iv", "ed", "Ġ", "aspirin"]
    batch = DistillCollator(toks["ext"], toks["src"], 0, 64, with_labels=False)([{"input_ids": torch.tensor(t)}])
    a = batch["align"]
    assert toks["src"].convert_ids_to_tokens(batch["source_ids"][0].tolist()) == [
        "the", "Ġpatient", "Ġ", "re", "ce", "i", "v", "ed", "Ġ", "as", "p", "i", "rin",
    ]  # fmt: skip
    assert a["hidden_t"].tolist() == [0, 1, 2, 3, 4, 5, 6, 7]
    assert a["hidden_s"].tolist() == [0, 1, 3, 4, 6, 7, 8, 12]
    # chunks after the first boundary: (3,11] (11,14] (14,16] (16,18] (18,20] (20,21] (21,28]
    assert int(a["chunks"]) == 7
    assert a["chunk_t_id"].tolist() == [0, 1, 2, 3, 4, 5, 6]
    assert a["chunk_s_id"].tolist() == [0, 1, 1, 2, 3, 3, 4, 5, 6, 6, 6, 6]
    # one token on both sides: Ġpatient, ce, ed, Ġ (predicted from target positions 0 2 4 5, source 0 3 6 7)
    assert a["kl_t"].tolist() == [0, 2, 4, 5] and a["kl_s"].tolist() == [0, 3, 6, 7]
    s = {k: int(v) for k, v in batch["align_stats"].items()}
    assert s["positions"] == 8 and s["boundaries"] == 8 and s["signal_positions"] == 8


def test_replacement_pair_shares_only_some_boundaries(toks):
    text = "the patient received aspirin"
    t = toks["rep"](text)["input_ids"]
    # target: t h e Ġ patien t Ġ re c ei ved Ġaspi rin   ends 1 2 3 4 10 11 12 14 15 17 20 25 28
    # source ends 3 11 12 14 16 17 18 20 21 23 24 25 28: shared 3 11 12 14 17 20 25 28
    assert toks["rep"].convert_ids_to_tokens(t) == [
        "t", "h", "e", "Ġ", "patien", "t", "Ġ", "re", "c", "ei", "ved", "Ġaspi", "rin",
    ]  # fmt: skip
    batch = DistillCollator(toks["rep"], toks["src"], 0, 64, with_labels=False)([{"input_ids": torch.tensor(t)}])
    a = batch["align"]
    assert a["hidden_t"].tolist() == [2, 5, 6, 7, 9, 10, 11, 12]
    assert a["hidden_s"].tolist() == [0, 1, 2, 3, 5, 7, 11, 12]
    assert a["kl_t"].tolist() == [5, 6, 11] and a["kl_s"].tolist() == [1, 2, 11]
    s = {k: int(v) for k, v in batch["align_stats"].items()}
    assert s["boundaries"] == 8 and s["signal_positions"] == 11  # positions 2..12 of 13


def test_packed_rows_never_align_across_documents(toks):
    tok = toks["ext"]
    a, b = tok("the patient")["input_ids"], tok("aspirin reduces pain .")["input_ids"]
    row = torch.tensor(a + [0] + b)  # 0 = EOS
    batch = DistillCollator(tok, toks["src"], 0, 64, with_labels=True)([{"input_ids": row}, {"input_ids": row}])
    al, src = batch["align"], batch["source_ids"]
    L, Ls = row.numel(), src.shape[1]
    assert torch.equal(batch["labels"], batch["input_ids"])
    eos_s = int((src[0] == toks["src"].eos_token_id).nonzero()[0])
    for t_idx, s_idx in ((al["hidden_t"], al["hidden_s"]), (al["kl_t"], al["kl_s"])):
        for t, s in zip(t_idx.tolist(), s_idx.tolist()):
            assert t // L == s // Ls  # same row
            assert (t % L < len(a)) == (s % Ls < eos_s)  # same document
    # a chunk is the bytes between two boundaries of one document: its positions stay in one segment
    for cid in range(int(al["chunks"])):
        tp = al["chunk_t"][al["chunk_t_id"] == cid] % L
        assert bool((tp < len(a)).all()) or bool((tp > len(a)).all())


def test_align_segment_without_shared_boundary_adds_nothing():
    out = Alignment()
    assert align_segment(np.array([2, 5]), np.array([1, 3, 4]), 0, 0, out) == (0, 0, 0)
    assert out.tensors()["hidden_t"].numel() == 0 and int(out.tensors()["chunks"]) == 0


def _forward(model, ids):
    out = model(input_ids=ids, output_hidden_states=True)
    return Forward([out.hidden_states[-1], out.hidden_states[1]], out.logits)


@pytest.mark.parametrize("distance", sorted(CHUNK_DISTANCES))
def test_every_loss_is_zero_for_the_same_model_and_tokenizer(toks, tmp_path, distance):
    tok = toks["src"]
    d = save_tiny_model(tmp_path / "m", tok, arch="llama", hidden=16, max_pos=64)
    model = AutoModelForCausalLM.from_pretrained(str(d)).eval()
    rows = [tok(" ".join(SENTS[i : i + 2]))["input_ids"][:SEQ] for i in (0, 2)]
    items = [{"input_ids": torch.tensor(r[:12] + [0] + r[12 : SEQ - 1])} for r in rows]
    batch = DistillCollator(tok, tok, 0, 64, with_labels=False)(items)
    assert torch.equal(batch["source_ids"], batch["input_ids"])  # same tokenizer: the same ids come back
    teacher = build_teacher(model, model, shared_body=True)
    with torch.no_grad():
        student = _forward(model, batch["input_ids"])
        t = teacher(batch["source_ids"], [-1, 1])
    st, ss = shared_vocabulary(tok, tok, len(tok))
    x = LossInputs(student, t, batch["input_ids"], batch["source_ids"], batch["align"], st, ss, 2.0, distance)
    assert int(batch["align"]["chunks"]) > 10 and batch["align"]["kl_t"].numel() > 10
    for name, (fn, _) in LOSSES.items():
        assert float(fn(x)) == 0.0, name
    # distill+ce's next-token loss is the model's own cross-entropy, from the same log-probabilities
    with torch.no_grad():
        hf = model(input_ids=batch["input_ids"], labels=batch["input_ids"]).loss
    torch.testing.assert_close(next_token_loss(x), hf, rtol=1e-5, atol=1e-6)
    # and each loss sees a difference: perturb the student's hidden states and logits
    noisy = Forward([h + 0.1 for h in student.hidden], student.logits + torch.randn_like(student.logits))
    x2 = LossInputs(noisy, t, batch["input_ids"], batch["source_ids"], batch["align"], st, ss, 2.0, distance)
    for name, (fn, _) in LOSSES.items():
        assert float(fn(x2)) > 1e-4, name


def test_non_start_marking_tokenizer_is_refused_with_a_message():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import BertTokenizerFast

    vocab = {"[UNK]": 0, "[SEP]": 1, "the": 2, "##re": 3, "pat": 4}
    t = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    t.pre_tokenizer = pre_tokenizers.Whitespace()
    bert = BertTokenizerFast(tokenizer_object=t, unk_token="[UNK]", sep_token="[SEP]")
    from vocabadapt.training.byte_align import token_bytes

    with pytest.raises(InputError, match="byte-level BPE or SentencePiece"):
        token_bytes(bert)


# --------------------------------------------------------------------------------------------------
# through train_stage


def _cfg(**kw) -> VocabAdaptationConfig:
    return tiny_stage_config(SEQ, **{**dict(stage1_steps=4, stage2_steps=4), **kw})


@pytest.fixture(scope="module")
def run_data(tmp_path_factory, toks):
    """A source model (src tokenizer), a student with the extension tokenizer and the same body, target shards."""
    root = tmp_path_factory.mktemp("distill")
    rng = random.Random(0)
    docs = [" ".join(rng.sample(SENTS, k=rng.randint(1, 3))) for _ in range(120)]
    src, ext = toks["src"], toks["ext"]
    source_dir = save_tiny_model(root / "source", src, arch="llama", hidden=16, max_pos=128)
    student = AutoModelForCausalLM.from_pretrained(str(source_dir))
    student.resize_token_embeddings(len(ext), mean_resizing=False)  # same body; rows >= 280 new
    with torch.no_grad():
        g = torch.Generator().manual_seed(1)
        for w in (student.get_input_embeddings().weight, student.get_output_embeddings().weight):
            w[len(src) :] = torch.randn(w.shape[0] - len(src), w.shape[1], generator=g) * 0.05
    student.save_pretrained(str(root / "student"))
    ext.save_pretrained(str(root / "student"))
    w = ShardWriter(root / "shards", shard_tokens=1000)
    for d in docs:
        w.add(ext(d)["input_ids"], len(d.encode()))
    w.close()
    return {
        "root": root,
        "student": root / "student",
        "shards": root / "shards",
        "teacher": TeacherSource(model_dir=source_dir, tokenizer=src),
        "copied": np.arange(len(src)),
        "heldout": docs[:6],
    }


def _train(rd, tmp_path, cfg, stage="stage1", tag="a", **kw):
    return train_stage(
        stage_settings(cfg, stage),
        cfg,
        rd["student"],
        rd["shards"],
        tmp_path / f"{tag}_out",
        tmp_path / f"{tag}_train",
        tmp_path / f"{tag}_ck",
        teacher=rd["teacher"],
        **kw,
    )


class _Kill(TrainerCallback):
    def __init__(self, at: int):
        self.at = at

    def on_step_end(self, args, state, control, **kw):
        if state.global_step == self.at:
            raise KeyboardInterrupt("simulated kill")


def test_distill_stage1_trains_reports_signal_and_resumes_to_the_same_weights(run_data, tmp_path):
    cfg = _cfg(objective_stage1="distill+ce", distill={"kl_weight": 0.5, "hidden_layers": [-1, 1]})
    whole = _train(run_data, tmp_path, cfg, heldout_texts=run_data["heldout"])
    d = whole["distill"]
    assert whole["objective"] == "distill+ce"
    assert set(d) >= {"hidden", "chunk", "kl", "ce", "signal_fraction", "boundaries_fraction", "kl_fraction"}
    assert 0.5 < d["signal_fraction"] <= 1.0  # an extension: nearly every position has a teacher signal
    assert d["hidden"] > 0 and d["chunk"] > 0
    recs = [json.loads(x) for x in (tmp_path / "a_train" / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in recs if r["type"] == "train"]
    assert len(train) == 4 and all("distill_chunk" in r for r in train)
    # total = hidden + chunk + 0.5 kl + ce at every logged step
    for r in train:
        expect = r["distill_hidden"] + r["distill_chunk"] + 0.5 * r["distill_kl"] + r["distill_ce"]
        assert r["loss"] == pytest.approx(expect, rel=1e-4)
    before = load_file(str(run_data["student"] / "model.safetensors"))
    after = load_file(str(tmp_path / "a_out" / "model.safetensors"))
    assert not torch.equal(before["model.embed_tokens.weight"], after["model.embed_tokens.weight"])
    assert torch.equal(before["model.layers.0.mlp.up_proj.weight"], after["model.layers.0.mlp.up_proj.weight"])

    with pytest.raises(KeyboardInterrupt):
        _train(run_data, tmp_path, cfg, tag="b", callbacks=[_Kill(3)])
    resumed = _train(run_data, tmp_path, cfg, tag="b")
    assert resumed["resumed_from"].endswith("checkpoint-2")
    b = load_file(str(tmp_path / "b_out" / "model.safetensors"))
    for k in after:
        torch.testing.assert_close(after[k], b[k], rtol=0, atol=0, msg=k)


def test_train_rows_new_leaves_every_copied_row_bitwise_unchanged(run_data, tmp_path):
    cfg = _cfg(objective_stage2="distill", train_rows="new", weight_decay=0.1, lr_embeddings=5e-2)
    summary = _train(run_data, tmp_path, cfg, stage="stage2", frozen_rows=run_data["copied"])
    assert summary["train_rows"] == {"frozen_rows": 280} and summary["lr_embeddings"] == 5e-2
    before = load_file(str(run_data["student"] / "model.safetensors"))
    after = load_file(str(tmp_path / "a_out" / "model.safetensors"))
    for key in ("model.embed_tokens.weight", "lm_head.weight"):
        assert torch.equal(before[key][:280], after[key][:280]), key  # copied rows: bitwise
        assert not torch.equal(before[key][280:], after[key][280:]), key  # new rows trained
    assert not torch.equal(before["model.layers.0.mlp.up_proj.weight"], after["model.layers.0.mlp.up_proj.weight"])


def test_lr_embeddings_gives_the_matrices_their_own_group(run_data):
    from vocabadapt.training.rows import param_groups

    model = AutoModelForCausalLM.from_pretrained(str(run_data["student"]))
    mats = [model.get_input_embeddings().weight, model.get_output_embeddings().weight]
    decay = {n for n, _ in model.named_parameters() if "norm" not in n}
    groups = param_groups(model, mats, decay, 0.1, 1e-4, 1e-3, freeze_rows=True)
    assert [g["lr"] for g in groups] == [1e-4, 1e-4, 1e-3]
    assert groups[2]["weight_decay"] == 0.0 and [id(p) for p in groups[2]["params"]] == [id(p) for p in mats]
    n = sum(p.numel() for g in groups for p in g["params"])
    assert n == sum(p.numel() for p in model.parameters())


def test_distill_config_keys_and_refusals():
    cfg = Config.model_validate({"vocab_adaptation": {"objective_stage1": "distill"}})
    assert cfg.vocab_adaptation.distill.chunk_distance == "abs"
    with pytest.raises(ValueError, match="every distill weight"):
        VocabAdaptationConfig(objective_stage1="distill", distill={"hidden_weight": 0, "chunk_weight": 0})
    with pytest.raises(ValueError, match="'abs' or 'binary_kl'"):
        VocabAdaptationConfig(distill={"chunk_distance": "l2"})


def test_teacher_with_another_vocabulary_is_refused_before_training(run_data, tmp_path, toks):
    cfg = _cfg(objective_stage1="distill")
    bad = TeacherSource(model_dir=run_data["teacher"].model_dir, tokenizer=toks["ext"])  # 330 > 280 rows
    with pytest.raises(InputError, match="not this model's tokenizer"):
        train_stage(
            stage_settings(cfg, "stage1"),
            cfg,
            run_data["student"],
            run_data["shards"],
            tmp_path / "o",
            tmp_path / "t",
            tmp_path / "c",
            teacher=bad,
        )
    assert not (tmp_path / "o").exists()


def test_stage_recipe_distils_from_models_source_model_and_freezes_mapped_rows(run_data, tmp_path, toks):
    """vocabadapt.stages.train: the teacher comes from models.source_model + tokenizers/source, and
    train_rows: new freezes the rows align/mapping.json says were copied."""
    import shutil

    from vocabadapt.align.mapping import TokenMapping
    from vocabadapt.errors import StageError
    from vocabadapt.run.context import StageContext
    from vocabadapt.run.layout import RunLayout
    from vocabadapt.stages.train import run as run_training

    run = tmp_path / "run"
    shutil.copytree(run_data["student"], run / "model" / "init")
    shutil.copytree(run_data["shards"], run / "tokens" / "target" / "train")
    toks["src"].save_pretrained(str(run / "tokenizers" / "source"))
    layout = RunLayout(run)
    config = Config(
        models={"source_model": str(run_data["teacher"].model_dir)},
        vocab_adaptation=_cfg(stage1_steps=2, objective_stage1="distill", train_rows="new"),
    )
    with pytest.raises(StageError, match="train_rows: new needs"):  # no mapping yet
        run_training(StageContext(layout=layout, config=config, stage="stage1"))
    n = len(toks["ext"])
    methods = ["identical" if i < 280 else "fvt" for i in range(n)]
    TokenMapping(methods, [[min(i, 279)] for i in range(n)], [[1.0]] * n, [None] * n, 280).save(layout.mapping)
    summary = run_training(StageContext(layout=layout, config=config, stage="stage1"))
    assert summary["train_rows"] == {"frozen_rows": 280} and summary["objective"] == "distill"
    before = load_file(str(run / "model" / "init" / "model.safetensors"))
    after = load_file(str(run / "model" / "stage1" / "model.safetensors"))
    assert torch.equal(before["lm_head.weight"][:280], after["lm_head.weight"][:280])
    assert not torch.equal(before["lm_head.weight"][280:], after["lm_head.weight"][280:])


def test_the_config_names_every_chunk_distance():
    from typing import get_args

    from vocabadapt.config.training import DistillConfig
    from vocabadapt.training.distill import CHUNK_DISTANCES

    assert set(get_args(DistillConfig.model_fields["chunk_distance"].annotation)) == set(CHUNK_DISTANCES)
