"""Canonical token forms for the four families, the identical-token map and special roles."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from helpers import SHARED_DATA, TEXT, train_bpe_tokenizer
from vocabadapt.text import vocab as V
from vocabadapt.text.vocab import CanonicalToken

TOK = SHARED_DATA / "tokenizers"


def test_byte_level_forms():
    assert V.canonical_token("Ġthe", "byte_level") == CanonicalToken(b"the", True)
    assert V.canonical_token("ing", "byte_level") == CanonicalToken(b"ing", False)
    # 'Ã' is byte 0xC3 in GPT-2's byte map: a partial UTF-8 sequence, compared as bytes.
    assert V.canonical_token("Ã", "byte_level") == CanonicalToken(b"\xc3", False)
    assert V.canonical_token("ĠĠ", "byte_level") == CanonicalToken(b" ", True)


def test_sentencepiece_wordpiece_end_of_word_forms():
    assert V.canonical_token("▁the", "sentencepiece") == CanonicalToken(b"the", True)
    assert V.canonical_token("ing", "sentencepiece") == CanonicalToken(b"ing", False)
    assert V.canonical_token("<0x41>", "sentencepiece") == CanonicalToken(b"A", None)
    assert V.canonical_token("##ing", "wordpiece") == CanonicalToken(b"ing", False)
    assert V.canonical_token("the", "wordpiece") == CanonicalToken(b"the", True)
    assert V.canonical_token("the</w>", "end_of_word") == CanonicalToken(b"the", True)
    assert V.canonical_token("Nal", "end_of_word") == CanonicalToken(b"Nal", False)
    # Moses splits punctuation whatever the spacing, so its word marker says nothing.
    assert V.canonical_token(",</w>", "end_of_word") == CanonicalToken(b",", None)


def test_identical_rules_across_conventions():
    src = [V.canonical_token(t, "byte_level") for t in ["Ġthe", "the", ",", "Ġ,", "ing", "Ġing"]]
    tgt = [V.canonical_token(t, "end_of_word") for t in ["the</w>", "the", ",</w>", "ing", "xyz</w>"]]
    # whole word ~ word start, inner piece ~ inner piece, punctuation prefers the attached piece.
    assert V.identical_from_forms(tgt, src) == {0: 0, 1: 1, 2: 2, 3: 4}
    # A lone space marker ("Ġ", "▁") is a space on both sides.
    assert V.identical_from_forms([None, CanonicalToken(b"", True)], [CanonicalToken(b"", True)]) == {1: 0}


def test_sentencepiece_model_trained_in_test(tmp_path):
    spm = pytest.importorskip("sentencepiece")
    corpus = tmp_path / "c.txt"
    corpus.write_text("\n".join(TEXT.split(" . ")) + "\nÅngström ÿ\n")
    spm.SentencePieceTrainer.train(
        input=str(corpus),
        model_prefix=str(tmp_path / "sp"),
        vocab_size=300,
        hard_vocab_limit=False,
        byte_fallback=True,
        character_coverage=1.0,
        bos_id=-1,
        eos_id=-1,
        unk_id=0,
        minloglevel=2,
    )
    sp = spm.SentencePieceProcessor(model_file=str(tmp_path / "sp.model"))
    vocab = {sp.id_to_piece(i): i for i in range(sp.get_piece_size())}
    assert V.detect_family(vocab) == "sentencepiece"
    assert "<0x41>" in vocab and V.canonical_token("<0x41>", "sentencepiece").text == b"A"
    forms = [V.canonical_token(t, "sentencepiece") for t in sorted(vocab, key=vocab.get)]
    bpe = train_bpe_tokenizer([TEXT], vocab_size=300)
    _, bforms = V.canonical_vocab(bpe)
    ident = V.identical_from_forms(forms, bforms)
    word_starts = {i: t for t, i in vocab.items() if t.startswith("▁") and len(t) > 1 and i in ident}
    assert len(word_starts) >= 5
    for i, t in word_starts.items():
        assert bpe.convert_ids_to_tokens(ident[i]) == "Ġ" + t[1:]


def test_special_roles_declared_inferred_and_missing():
    bpe = train_bpe_tokenizer([TEXT], vocab_size=300)
    assert V.special_roles(bpe) == {"bos": 0, "eos": 0, "pad": 1, "unk": 0}
    bare = SimpleNamespace(
        bos_token_id=None, eos_token_id=None, pad_token_id=None, unk_token_id=None, added_tokens_decoder={}
    )
    assert V.special_roles(bare) == {}
    mapping, notes = V.special_map(bare, bpe)
    assert mapping == {} and "target tokenizer declares no special tokens" in notes[0]


@pytest.mark.shared_data("tokenizers", "biogpt")
def test_real_families_and_neox_biogpt_identical_count():
    from transformers import BioGptTokenizer

    from vocabadapt.config import ModelsConfig
    from vocabadapt.model.hub import load_tokenizer

    gpt2 = json.loads((TOK / "gpt2" / "vocab.json").read_text())
    assert V.detect_family(gpt2) == "byte_level"
    bio = BioGptTokenizer(str(TOK / "biogpt" / "vocab.json"), str(TOK / "biogpt" / "merges.txt"))
    neox = load_tokenizer(str(TOK / "gpt-neox-20b" / "tokenizer.json"), ModelsConfig())
    assert V.detect_family(bio.get_vocab()) == "end_of_word"
    # GPT-NeoX's bare tokenizer.json declares no roles: inferred from <|endoftext|> / <|padding|>.
    assert V.special_roles(neox) == {"eos": 0, "bos": 0, "pad": 1}
    ident = V.identical_tokens(bio, neox)
    assert len(ident) == 17498
    the, comma = bio.convert_tokens_to_ids("the</w>"), bio.convert_tokens_to_ids(",</w>")
    assert neox.convert_ids_to_tokens(ident[the]) == "Ġthe"
    assert neox.convert_ids_to_tokens(ident[comma]) == ","
    # Same family: GPT-2 -> GPT-NeoX shares most tokens (NeoX retrained its BPE on the Pile).
    g_forms = [V.canonical_token(t, "byte_level") for t in sorted(gpt2, key=gpt2.get)]
    _, n_forms = V.canonical_vocab(neox)
    assert len(V.identical_from_forms(g_forms, n_forms)) == 36937
