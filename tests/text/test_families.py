"""Every major tokenizer family, each built in seconds in the test, loaded from a folder as the run
loads it (vocabadapt.model.hub.load_tokenizer, then saved into the run and read back), with its
identical-token count against one byte-level BPE tokenizer as target and as source."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from helpers import TEXT, sentencepiece_folder, tiktoken_folder, train_bpe_tokenizer
from vocabadapt.config import ModelsConfig
from vocabadapt.errors import InputError
from vocabadapt.model.hub import load_tokenizer
from vocabadapt.text import tokenizers as T
from vocabadapt.text import vocab as V

spm = pytest.importorskip("sentencepiece")

LINES = TEXT.split(" . ") + ["Ångström units, 5 µg of heparin", "the patient's pain: 10/10"]
SAMPLES = [
    "the patient received aspirin for chest pain",
    "heparin slows tumour growth in mice",
    "Ångström ÿ 5 µg",
    "line one\nline two",
]
CHAT = ("<|im_start|>", "<|im_end|>")


@pytest.fixture(scope="module")
def source():
    """The other side of every comparison: a byte-level BPE (all 256 bytes) with chat-template tokens."""
    tok = train_bpe_tokenizer(LINES, vocab_size=420)
    tok.add_special_tokens({"additional_special_tokens": list(CHAT)})
    return tok


def _sentencepiece(d: Path, model_type: str, byte_fallback: bool) -> Path:
    return sentencepiece_folder(d, LINES, model_type, byte_fallback, vocab_size=400 if byte_fallback else 150)


def _llama2_style(d: Path) -> Path:
    """tokenizer.model (SentencePiece BPE with byte fallback) + tokenizer_config.json naming LlamaTokenizer."""
    _sentencepiece(d, "bpe", True)
    (d / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "LlamaTokenizer",
                "bos_token": "<s>",
                "eos_token": "</s>",
                "unk_token": "<unk>",
                "add_bos_token": True,
                "add_eos_token": False,
            }
        )
    )
    return d


def _tokenizer_json(d: Path) -> Path:
    tok = train_bpe_tokenizer(LINES, vocab_size=280)
    tok.backend_tokenizer.save(
        str(d.mkdir(parents=True) or d / "tokenizer.json")
    )  # the bare file, as GPT-NeoX ships it
    return d


def _vocab_merges(d: Path) -> Path:
    tok = train_bpe_tokenizer(LINES, vocab_size=280)
    d.mkdir(parents=True)
    tok.backend_tokenizer.model.save(str(d))  # vocab.json + merges.txt, as GPT-2's original release
    return d


def _tiktoken(d: Path) -> Path:
    return tiktoken_folder(d, train_bpe_tokenizer(LINES, vocab_size=280))


def _added_and_chat(d: Path) -> Path:
    """tokenizer.json + tokenizer_config.json with added words and chat-template special tokens."""
    tok = train_bpe_tokenizer(LINES, vocab_size=280)
    tok.add_tokens([" aspirin", " heparin", "tumour"])
    tok.add_special_tokens({"additional_special_tokens": list(CHAT)})
    tok.chat_template = "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    tok.save_pretrained(str(d))
    return d


BUILDERS = {
    "tokenizer.json": _tokenizer_json,
    "vocab.json+merges.txt": _vocab_merges,
    "sentencepiece-bpe-bytes": lambda d: _sentencepiece(d, "bpe", True),
    "sentencepiece-bpe": lambda d: _sentencepiece(d, "bpe", False),
    "sentencepiece-unigram-bytes": lambda d: _sentencepiece(d, "unigram", True),
    "sentencepiece-unigram": lambda d: _sentencepiece(d, "unigram", False),
    "sentencepiece+config (Llama-2 style)": _llama2_style,
    "tiktoken": _tiktoken,
    "added+chat-template": _added_and_chat,
}
# family, format guessed from the files, vocabulary size, identical tokens with the family as target
# (target -> source) and as source (source -> target). Measured with sentencepiece 0.2 / tokenizers 0.23;
# the byte pieces, words, added and chat-template tokens behind them are checked one by one below.
EXPECTED = {
    "tokenizer.json": ("byte_level", "tokenizers file", 280, 278, 278),  # all but its 2 specials
    "vocab.json+merges.txt": ("byte_level", "byte-level BPE", 280, 278, 278),
    "sentencepiece-bpe-bytes": ("sentencepiece", "SentencePiece model", 400, 361, 333),  # 256 + 105 pieces
    "sentencepiece-bpe": ("sentencepiece", "SentencePiece model", 150, 106, 106),
    "sentencepiece-unigram-bytes": ("sentencepiece", "SentencePiece model", 320, 311, 284),
    "sentencepiece-unigram": ("sentencepiece", "SentencePiece model", 64, 55, 55),
    "sentencepiece+config (Llama-2 style)": ("sentencepiece", "SentencePiece model", 400, 361, 333),
    "tiktoken": ("byte_level", "tiktoken BPE file", 278, 278, 278),  # no special tokens in the file
    "added+chat-template": ("byte_level", "tokenizers file", 285, 280, 280),  # 278 + 2 of 3 added words
}


def _load_as_run(name: str, tmp_path: Path):
    """Build the family's folder, load it as the tokenize stage does, save it into a run, read it back."""
    folder = BUILDERS[name](tmp_path / "release")
    tok = load_tokenizer(str(folder), ModelsConfig())
    T.save_tokenizer(tok, tmp_path / "run" / "tokenizers" / "target")
    return folder, tok, AutoTokenizer.from_pretrained(str(tmp_path / "run" / "tokenizers" / "target"))


@pytest.mark.parametrize("name", list(BUILDERS))
def test_family_loads_round_trips_and_counts_identical_tokens(name, source, tmp_path):
    family, fmt, size, as_target, as_source = EXPECTED[name]
    folder, tok, again = _load_as_run(name, tmp_path)
    assert T.tokenizer_format(folder).name == fmt
    # Every later stage reads the saved copy: it must encode exactly as the loaded tokenizer does.
    assert len(again) == len(tok) == size
    assert T.encode_texts(again, SAMPLES) == T.encode_texts(tok, SAMPLES)
    assert V.canonical_vocab(again)[0] == family
    assert len(V.identical_tokens(again, source)) == as_target
    assert len(V.identical_tokens(source, again)) == as_source


def test_sentencepiece_encodes_as_the_sentencepiece_library_does(tmp_path):
    for name in ("sentencepiece-bpe-bytes", "sentencepiece-unigram"):
        folder, tok, _ = _load_as_run(name, tmp_path / name)
        sp = spm.SentencePieceProcessor(model_file=str(folder / "tokenizer.model"))
        assert T.encode_texts(tok, SAMPLES) == [sp.encode(t) for t in SAMPLES]


@pytest.mark.parametrize("name", ["sentencepiece-bpe-bytes", "sentencepiece-unigram-bytes"])
def test_byte_fallback_pieces_match_the_same_byte_in_either_direction(name, source, tmp_path):
    _, _, sp = _load_as_run(name, tmp_path)
    byte_ids = {i: t for t, i in sp.get_vocab().items() if t.startswith("<0x") and t.endswith(">")}
    assert len(byte_ids) == 256
    as_target = V.identical_tokens(sp, source)
    as_source = V.identical_tokens(source, sp)
    src_tokens = V.vocab_list(source)
    dec = V._byte_decoder()
    for tid, piece in byte_ids.items():  # every <0xNN> -> the source's byte-level token for byte NN
        assert bytes(dec[c] for c in src_tokens[as_target[tid]]) == bytes([int(piece[3:5], 16)])
    newline = sp.convert_tokens_to_ids("<0x0A>")
    assert src_tokens[as_target[newline]] == "Ċ"  # GPT-2's printable form of byte 0x0A
    assert as_source[source.convert_tokens_to_ids("Ċ")] == newline
    # A whole word matches across the two notations (▁ and Ġ both mark a word start).
    word = sp.convert_tokens_to_ids("▁patient")
    assert src_tokens[as_target[word]] == "Ġpatient"


def test_added_words_and_chat_template_tokens(source, tmp_path):
    _, _, tok = _load_as_run("added+chat-template", tmp_path)
    ident = V.identical_tokens(tok, source)
    src_tokens = V.vocab_list(source)
    # Added words are literal text: " heparin" is a word start, like "Ġheparin"; "tumour" an inner piece,
    # so it is not the source's word-start "Ġtumour".
    assert src_tokens[ident[tok.convert_tokens_to_ids(" heparin")]] == "Ġheparin"
    assert src_tokens[ident[tok.convert_tokens_to_ids(" aspirin")]] == "Ġaspirin"
    assert tok.convert_tokens_to_ids("tumour") not in ident and "Ġtumour" in src_tokens
    # Chat-template tokens are special: never matched by spelling, but by their exact text among specials.
    specials, _ = V.special_map(tok, source)
    for t in CHAT:
        assert tok.convert_tokens_to_ids(t) not in ident
        assert specials[tok.convert_tokens_to_ids(t)] == source.convert_tokens_to_ids(t)
    assert "<|im_start|>user" in tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)


# ----------------------------------------------------------------------------------------------------
# errors: the folder, the guessed format, the missing package or file


@pytest.mark.parametrize(
    "name, hidden, package",
    [
        ("sentencepiece-bpe", "google.protobuf", "protobuf"),
        ("tiktoken", "tiktoken", "tiktoken"),
    ],
)
def test_missing_package_is_named_with_the_folder_and_format(name, hidden, package, tmp_path, monkeypatch):
    import importlib.util

    folder = BUILDERS[name](tmp_path / "release")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == hidden else real(n, *a))
    with pytest.raises(InputError) as e:
        load_tokenizer(str(folder), ModelsConfig())
    msg = str(e.value)
    assert msg.startswith(f"{folder}: cannot read this tokenizer") and "(tokenizer.model)" in msg
    assert EXPECTED[name][1] in msg and f"pip install {package}" in msg


def test_unreadable_or_empty_folders_name_path_and_format(tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "tokenizer.model").write_bytes(b"\x0a\x05not a model\xff")
    with pytest.raises(
        InputError,
        match=r"broken: could not load a tokenizer from it \(its files look like a "
        r"SentencePiece model \(tokenizer.model\)\)",
    ):
        load_tokenizer(str(broken), ModelsConfig())
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "README.md").write_text("weights elsewhere")
    with pytest.raises(InputError, match=r"empty: no tokenizer files found .* the folder holds: README.md"):
        load_tokenizer(str(empty), ModelsConfig())


def test_a_target_that_does_not_load_leaves_nothing_in_the_run(source, tmp_path):
    from vocabadapt.config import validate_dict
    from vocabadapt.run.context import StageContext
    from vocabadapt.run.layout import RunLayout
    from vocabadapt.stages.tokenize import prepare_tokenizers

    source.save_pretrained(str(tmp_path / "src"))
    broken = tmp_path / "tok"
    broken.mkdir()
    (broken / "tokenizer.model").write_text("not base64 and not protobuf\n")
    cfg = validate_dict(
        {
            "models": {"source_tokenizer": str(tmp_path / "src"), "target_tokenizer": str(broken)},
            "term_mining": {"enabled": False},
        },
        "test",
    )
    layout = RunLayout(tmp_path / "run")
    (tmp_path / "run").mkdir()
    with pytest.raises(InputError, match=str(broken)):
        prepare_tokenizers(StageContext(layout=layout, config=cfg, stage="tokenize"))
    assert not layout.tokenizers_dir.exists() and not layout.terms_dir.exists()
