"""Extending a source tokenizer (vocabadapt.text.extend) on real tokenizer formats: GPT-2's byte-level
BPE, GPT-NeoX's tokenizer.json, a Llama-3-style BPE with ignore_merges, and a Llama-2-style SentencePiece
BPE with byte fallback, each learning new tokens on real PubMed abstracts and checked on held-out ones."""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from helpers import SHARED_DATA, sentencepiece_folder, train_bpe_tokenizer
from vocabadapt.config import ModelsConfig, validate_dict
from vocabadapt.errors import ConfigError, InputError
from vocabadapt.model.hub import load_tokenizer
from vocabadapt.text.extend import learn_extension

ABSTRACTS = ("biomed", "abstracts_bc5cdr.jsonl")
GENERAL = "The cat sat on the mat. It was a sunny day, and the children played in the park until evening."


@pytest.fixture(scope="module")
def abstracts() -> tuple[list[str], list[str]]:
    path = SHARED_DATA.joinpath(*ABSTRACTS)
    if not path.exists():
        pytest.skip(f"{path} missing")
    docs = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            docs.append(f"{d['title']}\n{d['abstract']}")
    return docs[:400], docs[1400:1440]  # train, held out (other abstracts)


def _boundaries(tok, text: str) -> set[int]:
    return {end for _, end in tok.backend_tokenizer.encode(text, add_special_tokens=False).offsets}


def check_extension(src, ext, held: list[str]) -> None:
    """What every extension must be: source ids unchanged, new ids after them, no resplit, exact round trip."""
    tgt = ext.tokenizer
    src_vocab, tgt_vocab = src.get_vocab(), tgt.get_vocab()
    assert all(tgt_vocab[t] == i for t, i in src_vocab.items())  # every source token keeps its id
    new_ids = sorted(tgt_vocab[t] for t in ext.new_tokens)
    assert new_ids == list(range(ext.first_new_id, ext.first_new_id + len(ext.new_tokens)))
    assert ext.first_new_id == max(src_vocab.values()) + 1 and len(tgt) == len(src) + len(ext.new_tokens)
    used_new = 0
    for text in [*held, GENERAL]:
        ids = tgt.encode(text, add_special_tokens=False)
        assert tgt.decode(ids) == src.decode(src.encode(text, add_special_tokens=False))
        # Zero re-split boundaries: every target token ends where a source token ends.
        assert _boundaries(tgt, text) <= _boundaries(src, text)
        if max(ids) < ext.first_new_id:  # a text no new merge touches is segmented exactly as the source does
            assert ids == src.encode(text, add_special_tokens=False)
        used_new += sum(i >= ext.first_new_id for i in ids)
    assert used_new > 0


def _bytes_per_token(tok, texts: list[str]) -> float:
    return sum(len(t.encode()) for t in texts) / sum(len(tok.encode(t, add_special_tokens=False)) for t in texts)


@pytest.mark.shared_data("tokenizers", "gpt2")
@pytest.mark.shared_data(*ABSTRACTS)
def test_gpt2_extension_keeps_the_source_and_compresses(abstracts):
    train, held = abstracts
    src = load_tokenizer(str(SHARED_DATA / "tokenizers" / "gpt2"), ModelsConfig(), None)
    ext = learn_extension(src, train, 1000, name="gpt2")
    assert len(ext.new_tokens) == 1000
    check_extension(src, ext, held)
    # General English is untouched (it needs none of the new biomedical tokens).
    assert ext.tokenizer.encode(GENERAL) == src.encode(GENERAL)
    assert _bytes_per_token(ext.tokenizer, held) > 1.05 * _bytes_per_token(src, held)
    # Deterministic: the same corpus gives the same tokenizer.
    again = learn_extension(src, train, 1000, name="gpt2")
    assert again.new_tokens == ext.new_tokens


@pytest.mark.shared_data("tokenizers", "gpt-neox-20b", "tokenizer.json")
@pytest.mark.shared_data(*ABSTRACTS)
def test_neox_extension_keeps_special_and_added_tokens(abstracts, tmp_path):
    train, held = abstracts
    src = load_tokenizer(str(SHARED_DATA / "tokenizers" / "gpt-neox-20b"), ModelsConfig(), None)
    src.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    src.chat_template = "{% for m in messages %}<|im_start|>{{ m['content'] }}<|im_end|>{% endfor %}"
    marked = [f"<|im_start|>{t}<|im_end|>" for t in train]
    ext = learn_extension(src, marked, 300, name="gpt-neox")
    check_extension(src, ext, held)
    tgt = ext.tokenizer
    assert tgt.chat_template == src.chat_template
    assert tgt.convert_tokens_to_ids("<|im_start|>") == src.convert_tokens_to_ids("<|im_start|>")
    assert not any("<|im" in t for t in ext.new_tokens)  # added tokens join nothing
    ids = tgt.encode(marked[0], add_special_tokens=False)
    assert ids[0] == src.convert_tokens_to_ids("<|im_start|>")
    tgt.save_pretrained(tmp_path / "t")  # saved and read back as the run does
    assert AutoTokenizer.from_pretrained(tmp_path / "t").encode(held[0]) == tgt.encode(held[0])


def _no_digit_merges_tokenizer(tmp_path: Path):
    """A byte-level BPE trained on text without digits, so it has no multi-digit or space+digit token (as
    SmolLM2 keeps digits single), but whose pre-tokenizer keeps ' 12' together in one word."""
    lines = [
        "the patient received aspirin for chest pain",
        "the patient was treated with heparin",
        "heparin slows tumour growth in mice",
    ] * 20
    return train_bpe_tokenizer(lines, vocab_size=330)


def test_digit_rule_adds_no_digit_token_where_the_source_has_none(tmp_path):
    src = _no_digit_merges_tokenizer(tmp_path)
    assert not any(any(c.isdigit() for c in t) and len(t) > 1 for t in src.get_vocab())
    corpus = [f"the patient received {n} mg of aspirin at day {n % 7} 2019" for n in range(300)]
    ext = learn_extension(src, corpus, 40, name="tiny")
    assert ext.new_tokens and not any(any(c.isdigit() for c in t) for t in ext.new_tokens)
    check_extension(src, ext, corpus[:20])


def test_digits_merge_where_the_source_itself_merges_them(tmp_path):
    lines = [f"dose {n} mg and {n * 3} mg" for n in range(200)]
    src = train_bpe_tokenizer(lines, vocab_size=320)
    assert any(sum(c.isdigit() for c in t) > 1 for t in src.get_vocab())  # the source has multi-digit tokens
    ext = learn_extension(src, [f"dose {n} mg of 4711 and 4711" for n in range(100)], 30, name="tiny")
    assert any("4711" in t or "471" in t for t in ext.new_tokens)


def test_llama3_style_ignore_merges(tmp_path, abstracts):
    train, held = abstracts
    base = train_bpe_tokenizer(train[:100], vocab_size=600)
    spec = json.loads(base.backend_tokenizer.to_str())
    spec["model"]["ignore_merges"] = True  # Llama 3 / tiktoken style: a whole word in the vocabulary wins
    d = tmp_path / "llama3"
    base.save_pretrained(d)
    (d / "tokenizer.json").write_text(json.dumps(spec))
    src = AutoTokenizer.from_pretrained(d)
    ext = learn_extension(src, train, 200, name="llama3-style")
    assert json.loads(ext.tokenizer.backend_tokenizer.to_str())["model"]["ignore_merges"] is True
    check_extension(src, ext, held)


@pytest.mark.shared_data(*ABSTRACTS)
def test_sentencepiece_bpe_with_byte_fallback(tmp_path, abstracts):
    """The research config's family (Llama 2, Mistral, BioMistral): SentencePiece BPE in a tokenizer.json."""
    pytest.importorskip("sentencepiece")
    train, held = abstracts
    folder = sentencepiece_folder(tmp_path / "sp", train[:200], "bpe", True, vocab_size=800)
    (folder / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "LlamaTokenizer", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"})
    )
    src = load_tokenizer(str(folder), ModelsConfig(), None)  # converted to a fast tokenizer with merges
    ext = learn_extension(src, train, 300, name="sp")
    assert ext.family == "sentencepiece" and len(ext.new_tokens) == 300
    # New pieces never cross a word: a word marker only at the start, and never a byte-fallback piece.
    assert not any("▁" in t[1:] for t in ext.new_tokens)
    assert not any("<0x" in t for t in ext.new_tokens)
    check_extension(src, ext, held + ["naïve Ångström µg ☃ tests"])


def test_unsupported_families_get_a_clear_error(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.train_from_iterator(["the patient received aspirin"] * 10, trainers.UnigramTrainer(vocab_size=30))
    unigram = PreTrainedTokenizerFast(tokenizer_object=tok)
    with pytest.raises(InputError, match=r"t5-like: its tokenizer model is Unigram.*train"):
        learn_extension(unigram, ["the patient"], 10, name="t5-like")
    (tmp_path / "vocab.txt").write_text("\n".join(["[UNK]", "[CLS]", "the", "patient", "##s"]))
    from transformers import BertTokenizerFast

    with pytest.raises(InputError, match="WordPiece"):
        learn_extension(BertTokenizerFast(str(tmp_path / "vocab.txt")), ["the patients"], 10, name="bert")


@pytest.mark.shared_data("tokenizers", "biogpt")
def test_slow_tokenizer_gets_a_clear_error():
    src = load_tokenizer(str(SHARED_DATA / "tokenizers" / "biogpt"), ModelsConfig(), None)
    with pytest.raises(InputError, match="biogpt: a slow"):
        learn_extension(src, ["the patient"], 10, name="biogpt")


def test_fewer_pairs_than_asked_warns_with_the_number_learned(caplog):
    src = train_bpe_tokenizer(["the patient received aspirin"] * 30, vocab_size=300)
    with caplog.at_level(logging.WARNING):
        ext = learn_extension(src, ["heparin slows tumour growth"] * 5, 500, name="tiny")
    assert 0 < len(ext.new_tokens) < 500
    assert f"learned {len(ext.new_tokens)} new tokens of the 500 asked" in caplog.text
    with pytest.raises(InputError, match="no pair"):
        learn_extension(src, ["x"], 5, name="tiny")
    with pytest.raises(InputError, match="new_tokens must be >= 1"):
        learn_extension(src, ["the patient"], 0, name="tiny")


def test_config_takes_one_of_train_or_extend():
    def models(target):
        return {"models": {"source_model": "m", "target_tokenizer": target}}

    cfg = validate_dict(models({"extend": {"new_tokens": 8000}}), "c.yaml")
    assert cfg.models.target_tokenizer.extend.new_tokens == 8000
    assert cfg.models.target_tokenizer.extend.min_frequency == 2
    for bad in ({"extend": {"new_tokens": 10}, "train": {"vocab_size": 1000}}, {"extend": {"new_tokens": 0}}, {}):
        with pytest.raises(ConfigError, match="target_tokenizer"):
            validate_dict(models(bad), "c.yaml")


def _mistral_v1(tmp_path: Path):
    """Mistral-7B v0.1's SentencePiece tokenizer (BioMistral's), from the mistral-common wheel (Apache-2.0)."""
    from vocabadapt.testing import MISTRAL_FILE, mistral_tokenizer_folder

    folder = mistral_tokenizer_folder(tmp_path / "mistral")
    if folder is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI=true but {MISTRAL_FILE} is missing (the Makefile's venv step extracts it)")
        pytest.skip(f"{MISTRAL_FILE} is missing (make venv extracts it)")
    return load_tokenizer(str(folder), ModelsConfig(), None)


@pytest.mark.shared_data(*ABSTRACTS)
def test_real_mistral_sentencepiece_tokenizer(tmp_path, abstracts):
    """The research config's family on its real tokenizer: 32,000 SentencePiece BPE pieces with byte fallback."""
    train, held = abstracts
    src = _mistral_v1(tmp_path)
    assert len(src) == 32000
    ext = learn_extension(src, train, 800, name="mistral-v1")
    assert ext.family == "sentencepiece" and len(ext.new_tokens) == 800 and ext.first_new_id == 32000
    check_extension(src, ext, held)
    texts = [t.replace("▁", " ") for t in ext.new_tokens]
    # SentencePiece never joins a letter to punctuation or a digit to a digit; neither does the extension.
    assert not any(re.search(r"\d\d", t) or re.search(r"[A-Za-z][^\w\s]|[^\w\s][A-Za-z]", t) for t in texts)
    assert _bytes_per_token(ext.tokenizer, held) > 1.1 * _bytes_per_token(src, held)
