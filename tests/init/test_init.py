"""Row initialisers: the registry, and every built row checked against a hand computation."""

from __future__ import annotations

import pytest
import torch

from helpers import TEXT, train_bpe_tokenizer
from vocabadapt import init as initialisers
from vocabadapt.align.mapping import TokenMapping
from vocabadapt.errors import ConfigError, InputError
from vocabadapt.model.transplant import build_rows

N_SRC = 300
HIDDEN = 16
OTHER = "gene expression in tumour cells was measured by sequencing . mutations were rare . " * 6


@pytest.fixture(scope="module")
def tokenizers():
    source = train_bpe_tokenizer([TEXT], vocab_size=N_SRC)
    target = train_bpe_tokenizer([OTHER + TEXT], vocab_size=290)
    return source, target


def hand_mapping(n_tgt: int, n_src: int) -> TokenMapping:
    """A mapping that cycles through every method; ids and weights chosen so sums are easy to check."""
    methods, ids, weights, sims = [], [], [], []
    cycle = ("identical", "aligned", "soft", "fvt", "mean", "random", "zero")
    for t in range(n_tgt):
        if t < 2:  # the tokenizers' <|endoftext|>, <|pad|>
            m, i, w = "special", [t], [1.0]
        else:
            m = cycle[t % len(cycle)]
            a, b, c = (7 * t) % n_src, (11 * t + 3) % n_src, (13 * t + 5) % n_src
            i, w = {
                "identical": ([a], [1.0]),
                "aligned": ([b], [1.0]),
                "soft": ([a, b, c], [0.25, 0.5, 0.25]),  # top-1 is b (the highest weight)
                "fvt": ([c, a], [0.5, 0.5]),
                "mean": ([], []),
                "random": ([], []),
                "zero": ([], []),
            }[m]
        methods.append(m)
        ids.append(i)
        weights.append(w)
        sims.append(0.9 if m in ("aligned", "soft") else None)
    return TokenMapping(methods=methods, source_ids=ids, weights=weights, similarity=sims, source_vocab_size=n_src)


def weighted(src: torch.Tensor, ids: list[int], w: list[float]) -> torch.Tensor:
    """sum_j w_j * src[id_j], accumulated in float64 in order, cast to src's dtype (the documented recipe)."""
    acc = torch.zeros(src.shape[1], dtype=torch.float64)
    for i, x in zip(ids, w):
        acc = acc + x * src[i].double()
    return acc.to(src.dtype)


@pytest.fixture(scope="module")
def src():
    return torch.randn(N_SRC + 20, HIDDEN, generator=torch.Generator().manual_seed(3))  # 20 source padding rows


def test_registry_lists_every_initialiser_and_get_raises_with_valid_names():
    from vocabadapt import registry

    assert registry.initialiser_names() == ["fvt_prior", "tokalign", "soft", "fvt", "mean", "random"]
    assert initialisers.get("fvt_prior").refine is not None and initialisers.get("fvt").refine is None
    assert initialisers.DEFAULT in registry.initialiser_names()
    assert initialisers.get(None).recipe is initialisers.mapping_recipe
    from vocabadapt.init import fvt

    loaded = initialisers.get("fvt")
    assert (loaded.name, loaded.reads_vectors, loaded.recipe) == ("fvt", False, fvt.recipe)
    with pytest.raises(ConfigError, match="fvt_prior, tokalign, soft, fvt, mean, random"):
        initialisers.get("fvtt")


def build(name, tokenizers, src, **kw):
    source, target = tokenizers
    mapping = hand_mapping(len(target), N_SRC)
    ctx = initialisers.InitContext(mapping, source, target, seed=5)
    recipe = initialisers.get(name).recipe(ctx)
    rows = build_rows(src, recipe, n_used=N_SRC, n_rows=320, seed=5, **kw)
    return mapping, recipe, rows


def source_mean(src):
    return src[:N_SRC].double().mean(0)


@pytest.mark.parametrize("name", [None, "soft"])
def test_mapping_default_and_soft_rows_are_the_weighted_sums(name, tokenizers, src):
    mapping, recipe, rows = build(name, tokenizers, src)
    n = mapping.target_vocab_size
    assert rows.shape == (320, HIDDEN) and rows.dtype == src.dtype
    for t in range(n):
        m = mapping.methods[t]
        if m in ("special", "identical", "aligned", "soft", "fvt"):
            assert torch.equal(rows[t], weighted(src, mapping.source_ids[t], mapping.weights[t])), (t, m)
        elif m == "mean":
            torch.testing.assert_close(rows[t].double(), source_mean(src), rtol=1e-6, atol=1e-7)
        elif m == "zero":
            assert torch.equal(rows[t], torch.zeros(HIDDEN))
    assert torch.equal(rows[n:], torch.zeros(320 - n, HIDDEN))  # padding
    assert recipe.counts() == mapping.counts()


def test_tokalign_copies_the_top1_source_row(tokenizers, src):
    mapping, recipe, rows = build("tokalign", tokenizers, src)
    soft_ids = [t for t, m in enumerate(mapping.methods) if m == "soft"]
    assert soft_ids
    for t in soft_ids:
        assert torch.equal(rows[t], src[mapping.source_ids[t][1]])  # weight 0.5 is the top one
        assert recipe.labels[t] == "aligned"
    for t, m in enumerate(mapping.methods):
        if m in ("special", "identical", "aligned"):
            assert torch.equal(rows[t], src[mapping.source_ids[t][0]])
        if m == "fvt":  # mapping's own fvt entries stay
            assert torch.equal(rows[t], weighted(src, mapping.source_ids[t], mapping.weights[t]))
    assert recipe.copied_rows() == sum(m in ("special", "identical", "aligned", "soft") for m in mapping.methods)


def test_fvt_recomputes_every_non_special_non_identical_row(tokenizers, src):
    source, target = tokenizers
    mapping, recipe, rows = build("fvt", tokenizers, src)
    checked = 0
    for t, m in enumerate(mapping.methods):
        if m in ("special", "identical"):
            assert torch.equal(rows[t], src[mapping.source_ids[t][0]])
            continue
        text = target.decode([t])
        if "\ufffd" in text:  # a partial UTF-8 byte: mapped byte by byte onto the source's byte tokens
            vocab = source.get_vocab()
            pieces = [vocab[c] for c in target.convert_ids_to_tokens(t)]
        else:
            pieces = source.encode(text, add_special_tokens=False)
        assert pieces, t
        assert recipe.labels[t] == "fvt"
        assert torch.equal(rows[t], weighted(src, pieces, [1.0 / len(pieces)] * len(pieces))), t
        checked += 1
    assert checked > 200


@pytest.mark.parametrize("name", ["mean", "random"])
def test_baselines_replace_every_non_special_row(name, tokenizers, src):
    mapping, recipe, rows = build(name, tokenizers, src)
    n = mapping.target_vocab_size
    specials = [0, 1]
    for t in specials:
        assert torch.equal(rows[t], src[t])
    others = [t for t in range(n) if t not in specials]
    assert set(recipe.labels[t] for t in others) == {name}
    if name == "mean":
        for t in others:
            torch.testing.assert_close(rows[t].double(), source_mean(src), rtol=1e-6, atol=1e-7)
    else:
        mean, std = source_mean(src), src[:N_SRC].double().std(0)
        g = torch.Generator().manual_seed(5)
        expect = (torch.randn(len(others), HIDDEN, generator=g, dtype=torch.float64) * std + mean).float()
        torch.testing.assert_close(rows[others], expect, rtol=1e-6, atol=1e-6)
        _, _, again = build(name, tokenizers, src)
        assert torch.equal(rows, again)  # seeded


def test_norm_match_rescales_combined_rows_and_leaves_copies(tokenizers, src):
    mapping, _, plain = build(None, tokenizers, src)
    _, _, rows = build(None, tokenizers, src, norm_match=True)
    norms = src[:N_SRC].double().norm(dim=1)
    for t, m in enumerate(mapping.methods):
        ids, w = mapping.source_ids[t], mapping.weights[t]
        if m in ("special", "identical", "aligned"):
            assert torch.equal(rows[t], plain[t])
        elif m in ("soft", "fvt"):
            want = sum(x * norms[i] for i, x in zip(ids, w))
            assert rows[t].double().norm().item() == pytest.approx(want.item(), rel=1e-5)
            cos = torch.nn.functional.cosine_similarity(rows[t], plain[t], dim=0)
            assert cos.item() == pytest.approx(1.0, abs=1e-5)
        elif m == "mean":
            assert rows[t].double().norm().item() == pytest.approx(norms.mean().item(), rel=1e-5)
        elif m == "zero":
            assert torch.equal(rows[t], torch.zeros(HIDDEN))


def test_special_entry_without_source_gets_the_mean_and_other_empty_entries_fail(tokenizers, src):
    source, target = tokenizers
    mapping = hand_mapping(len(target), N_SRC)
    mapping.source_ids[0], mapping.weights[0] = [], []
    ctx = initialisers.InitContext(mapping, source, target)
    rows = build_rows(src, initialisers.mapping_recipe(ctx), n_used=N_SRC, n_rows=len(target))
    torch.testing.assert_close(rows[0].double(), source_mean(src), rtol=1e-6, atol=1e-7)
    t = mapping.methods.index("aligned")
    mapping.source_ids[t], mapping.weights[t] = [], []
    with pytest.raises(InputError, match=f"target id {t} has method 'aligned' but no source ids"):
        initialisers.mapping_recipe(ctx)


def test_build_rows_refuses_non_finite_rows(tokenizers, src):
    bad = src.clone()
    bad[7, 3] = float("nan")
    source, target = tokenizers
    mapping = hand_mapping(len(target), N_SRC)
    recipe = initialisers.mapping_recipe(initialisers.InitContext(mapping, source, target))
    with pytest.raises(InputError, match="NaN or Inf"):
        build_rows(bad, recipe, n_used=N_SRC, n_rows=320, name="embed.weight")
    big = src.clone() * 1e5  # finite in float32, overflows in float16
    with pytest.raises(InputError, match="embed.weight: .* NaN or Inf"):
        build_rows(big, recipe, n_used=N_SRC, n_rows=320, out_dtype=torch.float16, name="embed.weight")
