"""fvt_prior: FVT input rows, output rows = first piece's head row + log share along the bias direction."""

from __future__ import annotations

import math

import pytest
import torch
from safetensors import safe_open

from helpers import TEXT, save_tiny_model, train_bpe_tokenizer
from vocabadapt import init as initialisers
from vocabadapt.align.mapping import TokenMapping, tokenizer_checksum
from vocabadapt.errors import InputError
from vocabadapt.init import fvt_prior
from vocabadapt.init.calibration import Calibration, head_inputs, token_counts
from vocabadapt.model.transplant import transplant_model

OTHER = "gene expression in tumour cells was measured by sequencing . mutations were rare . " * 6


def test_log_shares_split_each_first_piece_by_corpus_counts():
    first = [None, 5, 5, 7, None, 5]
    counts = torch.tensor([100, 3, 0, 9, 4, 1])  # + 1/2 each: 3.5, 0.5, 9.5, 1.5 for the pieces' tokens
    got = fvt_prior.log_shares(first, counts)
    group5 = 3.5 + 0.5 + 1.5
    want = torch.tensor(
        [0.0, math.log(3.5 / group5), math.log(0.5 / group5), 0.0, 0.0, math.log(1.5 / group5)], dtype=torch.float64
    )
    torch.testing.assert_close(got, want)  # a group of one (piece 7) gets log 1 = 0


def test_bias_direction_gives_one_on_hidden_states_with_a_common_component():
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(400, 8, generator=g) * 0.1 + torch.linspace(1, 2, 8)  # a shared offset, as after a norm
    u = fvt_prior.bias_direction(hidden, ridge=1e-6)
    fit = hidden.double() @ u
    assert abs(float(fit.mean()) - 1) < 1e-3 and float(fit.std()) < 0.05


def test_output_rows_exact_for_a_lone_piece_and_shifted_by_log_share_for_a_group():
    g = torch.Generator().manual_seed(1)
    src_out = torch.randn(10, 4, generator=g)
    base = torch.randn(5, 4, generator=g)  # e.g. 4 target tokens + 1 padding row
    u = torch.tensor([0.5, -1.0, 0.25, 2.0], dtype=torch.float64)
    first = [None, 3, 6, 6]
    shares = torch.tensor([0.0, 0.0, math.log(0.25), math.log(0.75)], dtype=torch.float64)
    out = fvt_prior.output_rows(src_out, base, first, shares, u)
    assert torch.equal(out[0], base[0]) and torch.equal(out[4], base[4])  # special and padding rows kept
    assert torch.equal(out[1], src_out[3])  # a token that is its own group gets exactly the source head row
    want = (src_out[6].double() + math.log(0.25) * u).float()
    assert torch.equal(out[2], want)
    mixed = fvt_prior.output_rows(
        src_out, base, first, shares, u, fvt_rows=base, multi=[False, False, True, False], mix=0.5
    )
    assert torch.equal(mixed[1], out[1]) and torch.equal(mixed[3], out[3])  # one-piece rows are never mixed
    torch.testing.assert_close(
        mixed[2], (0.5 * src_out[6].double() + 0.5 * base[2].double() + math.log(0.25) * u).float()
    )
    # the logit difference between the two tokens of piece 6 is log(0.25 / 0.75) wherever h . u = 1
    h = u / (u @ u)
    assert abs(float(out[2].double() @ h - out[3].double() @ h) - math.log(1 / 3)) < 1e-5


@pytest.fixture(scope="module")
def toks():
    return train_bpe_tokenizer([TEXT], vocab_size=300), train_bpe_tokenizer([OTHER + TEXT], vocab_size=290)


def identical_mapping(source, target) -> TokenMapping:
    """identical where the target token string is a source token, fvt elsewhere (as align writes it)."""
    sv, methods, ids, weights = source.get_vocab(), [], [], []
    for t in range(len(target)):
        tok = target.convert_ids_to_tokens(t)
        if t < 2:
            m, i = "special", [t]
        elif tok in sv:
            m, i = "identical", [sv[tok]]
        else:
            m, i = "fvt", [0]
        methods.append(m), ids.append(i), weights.append([1.0])
    return TokenMapping(
        methods, ids, weights, [None] * len(target), len(source), tokenizer_checksum(target), tokenizer_checksum(source)
    )


def tensors(directory):
    out = {}
    for f in sorted(directory.glob("*.safetensors")):
        with safe_open(str(f), "pt") as r:
            out.update({k: r.get_tensor(k) for k in r.keys()})
    return out


@pytest.mark.parametrize("tie", [True, False])
def test_transplant_unties_and_builds_exact_rows(toks, tmp_path, tie):
    from transformers import AutoModelForCausalLM

    source, target = toks
    src_dir = save_tiny_model(tmp_path / "src", source, "llama", tie=tie)
    mapping = identical_mapping(source, target)
    texts = [OTHER + TEXT] * 3
    summary = transplant_model(
        src_dir,
        source,
        target,
        mapping,
        tmp_path / "out",
        init="fvt_prior",
        calibration=Calibration(texts=texts, max_tokens=64),
    )
    assert summary["untied_by_init"] is tie and summary["tied"] is False
    assert summary["init_info"]["fvt_prior"]["hidden_states"] == 64
    before, after = tensors(src_dir), tensors(tmp_path / "out")
    emb_in = before["model.embed_tokens.weight"]
    head_src = emb_in if tie else before["lm_head.weight"]
    new_in, new_out = after["model.embed_tokens.weight"], after["lm_head.weight"]
    # FVT input rows: an identical token's input row is exactly its source row
    identical = [t for t, m in enumerate(mapping.methods) if m == "identical"]
    assert identical
    for t in identical:
        assert torch.equal(new_in[t], emb_in[mapping.source_ids[t][0]])
    # output rows: first piece's head row + log share * u, recomputed here by hand
    ctx = initialisers.InitContext(mapping, source, target)
    recipe = fvt_prior.recipe(ctx)
    first = fvt_prior.first_pieces(ctx, recipe)
    model = AutoModelForCausalLM.from_pretrained(str(src_dir)).eval()
    ids = source(texts, add_special_tokens=False)["input_ids"]
    u = fvt_prior.bias_direction(head_inputs(model, ids, 64))
    shares = fvt_prior.log_shares(first, token_counts(target, texts, len(target)))
    several = 0
    for t in range(2, len(target)):
        pieces = recipe.source_ids[t]
        row = head_src[first[t]].double()
        if recipe.labels[t] == "fvt" and len(pieces) > 1:  # mixed with the mean of all pieces' head rows
            several += 1
            row = (1 - fvt_prior.MIX) * row + fvt_prior.MIX * head_src[pieces].double().mean(0)
        want = (row + shares[t] * u).float()
        torch.testing.assert_close(new_out[t], want, rtol=1e-5, atol=1e-6)
    assert several > 0
    assert torch.equal(new_out[0], new_in[0])  # special rows as the recipe built them
    adapted = AutoModelForCausalLM.from_pretrained(str(tmp_path / "out"))
    assert adapted.config.tie_word_embeddings is False
    assert not torch.equal(adapted.get_input_embeddings().weight, adapted.get_output_embeddings().weight)
    assert torch.equal(adapted.get_output_embeddings().weight, new_out)


def test_refine_without_calibration_text_fails_with_what_to_do(toks, tmp_path):
    source, target = toks
    src_dir = save_tiny_model(tmp_path / "src", source, "llama", tie=True)
    with pytest.raises(InputError, match="fvt_prior needs the source model and training text"):
        transplant_model(
            src_dir,
            source,
            target,
            identical_mapping(source, target),
            tmp_path / "out",
            init="fvt_prior",
            calibration=None,
        )


def test_rows_do_not_depend_on_the_alignment_so_fasttext_noise_cannot_move_them(toks):
    """Only identical and special entries of the mapping are read; aligned/soft entries (which move run to run
    with multi-threaded fastText) are recomputed from the token's pieces."""
    source, target = toks
    plain = identical_mapping(source, target)
    noisy = identical_mapping(source, target)
    for t, m in enumerate(noisy.methods):
        if m == "fvt" and t % 2:
            noisy.methods[t], noisy.source_ids[t], noisy.weights[t] = "aligned", [t % len(source)], [1.0]
    a = fvt_prior.recipe(initialisers.InitContext(plain, source, target))
    b = fvt_prior.recipe(initialisers.InitContext(noisy, source, target))
    assert (a.labels, a.source_ids, a.weights) == (b.labels, b.source_ids, b.weights)


def test_same_inputs_give_bitwise_identical_models(toks, tmp_path):
    source, target = toks
    src_dir = save_tiny_model(tmp_path / "src", source, "llama", tie=True)
    cal = Calibration(texts=[OTHER + TEXT] * 2, max_tokens=48)
    for k in range(2):
        transplant_model(
            src_dir,
            source,
            target,
            identical_mapping(source, target),
            tmp_path / f"out{k}",
            init="fvt_prior",
            calibration=cal,
        )
    assert (tmp_path / "out0" / "model.safetensors").read_bytes() == (
        tmp_path / "out1" / "model.safetensors"
    ).read_bytes()


def test_sharded_tied_checkpoint_is_untied_exactly_as_the_single_file_one(toks, tmp_path):
    """A tied model in several safetensors shards: fvt_prior's head is added as a new tensor to the rewritten
    shards, and the result equals the single-file transplant tensor for tensor (and in its logits)."""
    from transformers import AutoModelForCausalLM

    from helpers import tiny_model

    source, target = toks
    model = tiny_model("llama", vocab_size=len(source), layers=4, tie=True)
    single, sharded = tmp_path / "single", tmp_path / "sharded"
    model.save_pretrained(str(single))
    model.save_pretrained(str(sharded), max_shard_size="40KB")
    for d in (single, sharded):
        source.save_pretrained(str(d))
    assert len(list(sharded.glob("*.safetensors"))) >= 3
    cal = Calibration(texts=[OTHER + TEXT] * 2, max_tokens=48)
    summaries = {
        name: transplant_model(
            d,
            source,
            target,
            identical_mapping(source, target),
            tmp_path / f"out_{name}",
            init="fvt_prior",
            calibration=cal,
        )
        for name, d in (("single", single), ("sharded", sharded))
    }
    assert summaries["sharded"]["untied_by_init"] and summaries["sharded"]["tied"] is False
    a, b = tensors(tmp_path / "out_single"), tensors(tmp_path / "out_sharded")
    assert "lm_head.weight" in b and not torch.equal(b["lm_head.weight"], b["model.embed_tokens.weight"])
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    loaded = AutoModelForCausalLM.from_pretrained(str(tmp_path / "out_sharded")).eval()
    assert loaded.config.tie_word_embeddings is False
    assert torch.equal(loaded.get_output_embeddings().weight, b["lm_head.weight"])
    ids = target(TEXT[:80], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        single_logits = AutoModelForCausalLM.from_pretrained(str(tmp_path / "out_single")).eval()(ids).logits
        assert torch.equal(loaded(ids).logits, single_logits)
