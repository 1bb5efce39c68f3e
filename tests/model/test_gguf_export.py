"""GGUF out: a tiny Llama (and Mistral, Qwen2) with a tiny byte-level BPE written as GGUF, read back by a
reader that is not ours (transformers' GGUF loader, through the gguf package): same token ids on held-out
text, same logits within the storage type's error; and the refusals, with nothing left under the final name."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import TEXT, save_tiny_model, tiny_model, train_bpe_tokenizer
from vocabadapt.errors import InputError, StageError
from vocabadapt.model.gguf_export import PRE_TOKENIZERS, _permute_qk, export_gguf

try:
    import gguf
except ImportError:  # a dev install has it (pyproject: dev extras); CI must not skip these silently
    if os.environ.get("CI", "").lower() in ("true", "1"):
        raise
    pytest.skip("the gguf package is not installed: pip install 'gguf>=0.10'", allow_module_level=True)

# Not in TEXT (the tokenizer's training text): digits, punctuation, double spaces, a newline, a special token.
HELDOUT = [
    "Heparin-induced thrombocytopenia in 12 of 340 mice (3.5 %) was reported.",
    "the growth  of tumour cells slowed;\nno cardiac arrest after 2 doses <|endoftext|> next",
    "Aspirin, 81 mg/day: pain reduced?",
]
CHAT = "{% for m in messages %}<|endoftext|>{{ m['role'] }}\n{{ m['content'] }}{% endfor %}"
# relative error of the logits (Frobenius norm of the difference over that of the reference)
TOLERANCE = {"f16": 1e-2, "q8_0": 5e-2}
QK_SCALE, VO_SCALE = 40.0, 5.0


@pytest.fixture(scope="module")
def tokenizer():
    tok = train_bpe_tokenizer([TEXT], vocab_size=300)
    tok.chat_template = CHAT
    return tok


def _model_dir(tmp_path: Path, tokenizer, arch: str = "llama", tie: bool = False) -> Path:
    """A tiny model whose attention is sharp, so rows of q or k in the wrong order change the logits.

    (hidden 64: rows of 64 columns, so every matrix is Q8_0-quantisable in blocks of 32. With the helpers'
    weights of std 0.05, attention scores are ~0 and near-uniform attention hides a q/k permutation error:
    measured, relative logit error 3e-4 with it and without it. Scaled as here: 6e-4 (f16) and 1.3e-2 (q8_0)
    with the permutation, 0.2-0.5 without, so TOLERANCE tells them apart.)
    """
    d = tmp_path / "hf"
    model = tiny_model(arch, vocab_size=len(tokenizer), hidden=64, tie=tie)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "q_proj.weight" in name or "k_proj.weight" in name:
                p.mul_(QK_SCALE)
            elif "v_proj.weight" in name or "o_proj.weight" in name:
                p.mul_(VO_SCALE)
    model.save_pretrained(str(d), safe_serialization=True)
    tokenizer.save_pretrained(str(d))
    return d


def _read_back(path: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    return model, tok


def _rel_error(model_dir: Path, model, ids: list[int]) -> float:
    from transformers import AutoModelForCausalLM

    ref = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()
    x = torch.tensor([ids])
    with torch.no_grad():
        a, b = ref(x).logits, model(x).logits
    return float((a - b).norm() / a.norm())


@pytest.mark.parametrize(
    "arch,tie,gguf_type",
    [
        ("llama", False, "f16"),
        ("llama", True, "f16"),
        ("llama", True, "q8_0"),
        ("llama", False, "q8_0"),
        ("mistral", False, "f16"),
        ("qwen2", True, "f16"),
    ],
)
def test_round_trip_through_transformers(tmp_path, tokenizer, arch, tie, gguf_type):
    model_dir = _model_dir(tmp_path, tokenizer, arch, tie)
    out = tmp_path / "out" / "model.gguf"
    summary = export_gguf(model_dir, out, gguf_type)
    assert summary["tied_embeddings"] is tie and summary["pre_tokenizer"] == "gpt-2"
    assert summary["vocab"] == len(tokenizer) and out.stat().st_size == summary["bytes"]

    reader = gguf.GGUFReader(str(out))
    names = {t.name for t in reader.tensors}
    assert ("output.weight" in names) is (not tie)  # untied: the head is written; tied: readers tie it
    types = {t.tensor_type.name for t in reader.tensors}
    assert types == {"F32", {"f16": "F16", "q8_0": "Q8_0"}[gguf_type]}

    model, tok = _read_back(out)
    assert model.config.tie_word_embeddings is tie
    for text in HELDOUT:
        ids = tokenizer(text)["input_ids"]
        assert tok(text)["input_ids"] == ids, text
        rel = _rel_error(model_dir, model, ids)
        assert rel < TOLERANCE[gguf_type], (text, rel)
    assert (tok.eos_token_id, tok.pad_token_id) == (tokenizer.eos_token_id, tokenizer.pad_token_id)
    assert tok.chat_template == CHAT
    assert len(reader.fields["tokenizer.ggml.merges"].data) == len(
        json.loads(tokenizer._tokenizer.to_str())["model"]["merges"]
    )


def test_q_and_k_rows_are_stored_in_llama_cpp_order(tmp_path, tokenizer):
    """The permutation is what makes the round trip exact: the file holds permuted rows, not HF's."""
    from transformers import AutoModelForCausalLM

    model_dir = _model_dir(tmp_path, tokenizer, "llama")
    out = export_gguf(model_dir, tmp_path / "m.gguf", "f16")["file"]
    hf = AutoModelForCausalLM.from_pretrained(str(model_dir)).state_dict()
    stored = {t.name: np.array(t.data) for t in gguf.GGUFReader(out).tensors}
    for gguf_name, key, heads in (("blk.1.attn_q.weight", "q_proj", 4), ("blk.1.attn_k.weight", "k_proj", 2)):
        w = hf[f"model.layers.1.self_attn.{key}.weight"].numpy()
        expect = _permute_qk(w, heads).astype(np.float16)
        assert np.array_equal(stored[gguf_name], expect)
        assert not np.array_equal(stored[gguf_name], w.astype(np.float16))
    # Qwen2's rope is NeoX-style in llama.cpp too: no permutation
    qwen_dir = save_tiny_model(tmp_path / "qwen", tokenizer, arch="qwen2", hidden=64)
    out = export_gguf(qwen_dir, tmp_path / "q.gguf", "f16")["file"]
    w = AutoModelForCausalLM.from_pretrained(str(qwen_dir)).state_dict()["model.layers.0.self_attn.q_proj.weight"]
    stored_q = next(np.array(t.data) for t in gguf.GGUFReader(out).tensors if t.name == "blk.0.attn_q.weight")
    assert np.array_equal(stored_q, w.numpy().astype(np.float16))


@pytest.mark.parametrize("arch", ["gpt_neox", "gpt2"])
def test_unsupported_architecture_is_refused_and_writes_nothing(tmp_path, tokenizer, arch):
    model_dir = save_tiny_model(tmp_path / "hf", tokenizer, arch=arch)
    out = tmp_path / "out" / "model.gguf"
    with pytest.raises(InputError, match=rf"architecture '{arch}'.*supports llama, mistral, qwen2"):
        export_gguf(model_dir, out)
    assert not out.parent.exists()  # refused before anything was created


def test_rope_scaling_and_llama_biases_are_refused():
    from transformers import LlamaConfig

    from vocabadapt.model.gguf_export import check_architecture

    scaled = LlamaConfig(rope_parameters={"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0})
    with pytest.raises(InputError, match="rope scaling 'linear'"):
        check_architecture(scaled, "m")
    with pytest.raises(InputError, match="attention_bias"):
        check_architecture(LlamaConfig(attention_bias=True), "m")
    assert check_architecture(LlamaConfig(), "m").gguf_arch == "LLAMA"


def test_full_disk_leaves_no_partial_file_and_keeps_the_old_one(tmp_path, tokenizer, monkeypatch):
    model_dir = _model_dir(tmp_path, tokenizer)
    out = tmp_path / "out" / "model.gguf"
    out.parent.mkdir()
    out.write_bytes(b"previous version")
    written = []

    def fail_after_two(self, tensor, tensor_endianess=None):
        if len(written) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        written.append(tensor.nbytes)
        return real(self, tensor, tensor_endianess)

    real = gguf.GGUFWriter.write_tensor_data
    monkeypatch.setattr(gguf.GGUFWriter, "write_tensor_data", fail_after_two)
    with pytest.raises(StageError, match=r"no space left on the device.*nothing was left under that name"):
        export_gguf(model_dir, out)
    assert len(written) == 2  # it failed part-way through the tensor data, not before opening the file
    assert out.read_bytes() == b"previous version"
    assert sorted(p.name for p in out.parent.iterdir()) == ["model.gguf"]  # no temp file left either


def test_unknown_pre_tokenizer_is_refused(tmp_path, tokenizer):
    model_dir = _model_dir(tmp_path, tokenizer)
    data = json.loads((model_dir / "tokenizer.json").read_text())
    data["pre_tokenizer"] = {"type": "Whitespace"}
    (model_dir / "tokenizer.json").write_text(json.dumps(data))
    with pytest.raises(InputError, match="no llama.cpp name known here"):
        export_gguf(model_dir, tmp_path / "m.gguf")
    assert not (tmp_path / "m.gguf").exists()


def test_tied_config_with_a_different_head_is_refused(tmp_path, tokenizer):
    from safetensors.torch import load_file, save_file

    model_dir = _model_dir(tmp_path, tokenizer, tie=False)
    config = json.loads((model_dir / "config.json").read_text())
    config["tie_word_embeddings"] = True
    (model_dir / "config.json").write_text(json.dumps(config))
    weights = load_file(str(model_dir / "model.safetensors"))
    save_file(weights, str(model_dir / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(InputError, match="lm_head.weight differs from model.embed_tokens.weight"):
        export_gguf(model_dir, tmp_path / "m.gguf")


def test_pre_tokenizer_names_split_as_transformers_reads_them():
    """The regexes behind 'llama-bpe' and 'qwen2' are the ones transformers' GGUF reader applies for those names."""
    from transformers.integrations.gguf.gguf_tokenizer_mapping import GGUF_PRE_TOKENIZER_SPLITS

    for shape, name in PRE_TOKENIZERS.items():
        split = next((step[1] for step in shape if step[0] == "Split"), None)
        if split is not None:
            assert GGUF_PRE_TOKENIZER_SPLITS[name] == split, name


def test_export_command_picks_the_last_finished_model(tmp_path, tokenizer, capsys):
    from vocabadapt.cli import main

    run = tmp_path / "run"
    save_tiny_model(run / "model" / "init", tokenizer, arch="llama", hidden=64, seed=1)
    save_tiny_model(run / "model" / "stage1", tokenizer, arch="llama", hidden=64, seed=2)
    # stage2's directory exists but its stage failed: it does not count
    save_tiny_model(run / "model" / "stage2", tokenizer, arch="llama", hidden=64, seed=3)
    stages = {"transplant": {"status": "done"}, "stage1": {"status": "done"}, "stage2": {"status": "failed"}}
    (run / "manifest.json").write_text(json.dumps({"stages": stages}))
    out = tmp_path / "final.gguf"
    assert main(["export", str(run), "--gguf", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["model_dir"] == str(run / "model" / "stage1")
    reader = gguf.GGUFReader(str(out))
    name = reader.fields["general.name"]
    assert bytes(name.parts[name.data[0]]).decode() == "run-stage1"

    assert main(["export", str(run), "--gguf", str(out), "--model", "stage2"]) == 2
    assert "not a finished model (finished: init, stage1)" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["export", str(empty), "--gguf", str(out)]) == 2
    assert "has no finished model" in capsys.readouterr().err


def test_export_names_an_unknown_type(tmp_path):
    from vocabadapt.model.gguf_export import EXPORT_TYPES, export_gguf

    assert set(EXPORT_TYPES) == {"f16", "q8_0"}  # the CLI's --type help names these two
    with pytest.raises(InputError, match="unknown GGUF type 'q4'; choose one of f16, q8_0"):
        export_gguf(tmp_path, tmp_path / "x.gguf", "q4")
