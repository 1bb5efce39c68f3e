import pytest

from helpers import SHARED_DATA
from vocabadapt.config import ModelsConfig
from vocabadapt.model.hub import load_tokenizer

TEXT = "The patient received aspirin for cardiomyopathy."


@pytest.mark.shared_data("tokenizers")
@pytest.mark.parametrize("name,kind,size", [("gpt2", "byte-level", 50257), ("biogpt", "BioGptTokenizer", 42384)])
def test_bare_vocab_merges_folders_load(name, kind, size):
    tok = load_tokenizer(str(SHARED_DATA / "tokenizers" / name), ModelsConfig())
    assert len(tok) == size
    ids = tok.encode(TEXT, add_special_tokens=False)
    assert tok.decode(ids) == TEXT
    if kind == "BioGptTokenizer":
        assert type(tok).__name__ == kind and tok.eos_token == "</s>"
    else:
        assert tok.eos_token == "<|endoftext|>" and tok.convert_ids_to_tokens(ids[1]) == "Ġpatient"
