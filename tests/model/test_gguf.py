"""GGUF as a source model: a tiny Llama written as GGUF here (gguf package, seconds), dequantised into
a plain HF directory equal to the model it came from, run through the pipeline; and the refusals."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest
import torch

from helpers import TEXT, tiny_model, train_bpe_tokenizer, write_config, write_jsonl
from vocabadapt.config import ModelsConfig
from vocabadapt.errors import InputError
from vocabadapt.model.hub import load_model, load_tokenizer

try:
    import gguf
except ImportError:  # a dev install has it (pyproject: dev extras); CI must not skip these silently
    if os.environ.get("CI", "").lower() in ("true", "1"):
        raise
    pytest.skip("the gguf package is not installed: pip install 'gguf>=0.10'", allow_module_level=True)

DOCS = [f"{TEXT} case {i}: the patient number {i} received {i % 7} doses of heparin." for i in range(60)]
SPECIALS = ("<|endoftext|>", "<|pad|>")


def _permute(w: torch.Tensor, n_head: int) -> torch.Tensor:
    # llama.cpp stores q/k rows interleaved for its rotary kernel (convert_hf_to_gguf.py `permute`);
    # transformers undoes this when reading, so writing it is what makes the round trip exact.
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _gguf_tensors(model) -> list[tuple[str, torch.Tensor]]:
    cfg = model.config
    sd = model.state_dict()
    out = [("token_embd.weight", sd["model.embed_tokens.weight"]), ("output_norm.weight", sd["model.norm.weight"])]
    if not cfg.tie_word_embeddings:
        out.append(("output.weight", sd["lm_head.weight"]))
    names = {
        "input_layernorm": "attn_norm",
        "self_attn.v_proj": "attn_v",
        "self_attn.o_proj": "attn_output",
        "post_attention_layernorm": "ffn_norm",
        "mlp.gate_proj": "ffn_gate",
        "mlp.up_proj": "ffn_up",
        "mlp.down_proj": "ffn_down",
    }
    for i in range(cfg.num_hidden_layers):
        p = f"model.layers.{i}."
        out.append((f"blk.{i}.attn_q.weight", _permute(sd[p + "self_attn.q_proj.weight"], cfg.num_attention_heads)))
        out.append((f"blk.{i}.attn_k.weight", _permute(sd[p + "self_attn.k_proj.weight"], cfg.num_key_value_heads)))
        out += [(f"blk.{i}.{g}.weight", sd[f"{p}{hf}.weight"]) for hf, g in names.items()]
    return out


def write_tiny_gguf(
    path: Path, model, tokenizer, quant: str = "F32", arch: str = "llama", raw_override: dict | None = None
) -> Path:
    """Write a tiny HF Llama and its byte-level BPE as a GGUF file the way llama.cpp's converter does.

    quant: "F32", or "Q8_0" for the 2-D weight matrices. raw_override: {tensor name: GGML type name} to
    declare a tensor with that type (zero bytes of the right size), for the unsupported-type test.
    """
    cfg = model.config
    w = gguf.GGUFWriter(str(path), arch)
    w.add_name("tiny test llama")
    w.add_block_count(cfg.num_hidden_layers)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_rope_freq_base(float(cfg.rope_parameters["rope_theta"]))
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_rope_dimension_count(cfg.hidden_size // cfg.num_attention_heads)
    w.add_vocab_size(cfg.vocab_size)
    vocab = tokenizer.get_vocab()
    tokens = sorted(vocab, key=vocab.get)
    merges = json.loads(tokenizer.backend_tokenizer.to_str())["model"]["merges"]
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types([gguf.TokenType.CONTROL if t in SPECIALS else gguf.TokenType.NORMAL for t in tokens])
    w.add_token_merges([" ".join(m) if isinstance(m, list) else m for m in merges])
    w.add_bos_token_id(vocab[SPECIALS[0]])
    w.add_eos_token_id(vocab[SPECIALS[0]])
    w.add_pad_token_id(vocab[SPECIALS[1]])
    for name, tensor in _gguf_tensors(model):
        data = tensor.detach().float().numpy()
        if raw_override and name in raw_override:
            qtype = gguf.GGMLQuantizationType[raw_override[name]]
            block, nbytes = gguf.GGML_QUANT_SIZES[qtype]
            raw = torch.zeros(data.shape[0], data.shape[1] // block * nbytes, dtype=torch.uint8).numpy()
            w.add_tensor(name, raw, raw_dtype=qtype)
        elif quant != "F32" and data.ndim == 2:
            qtype = gguf.GGMLQuantizationType[quant]
            w.add_tensor(name, gguf.quants.quantize(data, qtype), raw_dtype=qtype)
        else:
            w.add_tensor(name, data)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny tied Llama, its tokenizer, and its GGUF file (F32: the round trip is exact)."""
    root = tmp_path_factory.mktemp("gguf")
    tok = train_bpe_tokenizer(DOCS[:20], vocab_size=288, special=SPECIALS)
    model = tiny_model("llama", vocab_size=len(tok), hidden=32, layers=2, max_pos=64, tie=True)
    return root, tok, model, write_tiny_gguf(root / "tiny-f32.gguf", model, tok)


def test_dequantised_directory_equals_the_model_it_was_written_from(tiny, tmp_path):
    from vocabadapt.io import sha256_file
    from vocabadapt.model.gguf import SOURCE_RECORD, gguf_model_dir

    _root, tok, model, path = tiny
    out = gguf_model_dir(path, tmp_path / "cache")
    sha = sha256_file(path)
    assert out == tmp_path / "cache" / "gguf" / sha
    # a plain HF directory: safetensors, no quantization_config, tied embeddings kept tied
    config = json.loads((out / "config.json").read_text())
    assert "quantization_config" not in config and config["tie_word_embeddings"] is True
    assert (out / "model.safetensors").is_file() and not list(out.glob("*.gguf"))
    record = json.loads((out / SOURCE_RECORD).read_text())
    assert record["sha256"] == sha and record["architecture"] == "llama" and record["tensor_types"] == {"F32": 20}
    loaded = load_model(str(path), ModelsConfig(), cache_dir=str(tmp_path / "cache"))
    assert type(loaded).__name__ == "LlamaForCausalLM"
    assert loaded.lm_head.weight.data_ptr() == loaded.model.embed_tokens.weight.data_ptr()
    want = model.state_dict()
    got = loaded.state_dict()
    assert set(got) == set(want)
    for key in want:
        assert torch.equal(got[key], want[key]), key  # q/k un-permuted exactly
    ids = torch.tensor([tok.encode(DOCS[3])[:40]])
    with torch.no_grad():
        assert torch.allclose(loaded(ids).logits, model(ids).logits, atol=1e-5)
    # the tokenizer the file carries tokenises as the one it was written from
    gtok = load_tokenizer(str(path), ModelsConfig(), cache_dir=str(tmp_path / "cache"))
    assert len(gtok) == len(tok) and gtok.encode(DOCS[5], add_special_tokens=False) == tok.encode(DOCS[5])
    assert gtok.eos_token == SPECIALS[0]
    # cached: the second call does no work, even through a renamed copy of the file
    (out / "model.safetensors").touch()
    copy = shutil.copy(path, tmp_path / "renamed.gguf")
    assert gguf_model_dir(copy, tmp_path / "cache") == out


def test_quantised_q8_0_file_dequantises_close_to_the_original(tiny, tmp_path):
    from vocabadapt.model.gguf import gguf_model_dir

    _root, tok, model, _ = tiny
    path = write_tiny_gguf(tmp_path / "tiny-q8.gguf", model, tok, quant="Q8_0")
    out = gguf_model_dir(path, tmp_path / "cache")
    assert json.loads((out / "gguf_source.json").read_text())["tensor_types"] == {"Q8_0": 15, "F32": 5}
    loaded = load_model(str(path), ModelsConfig(), cache_dir=str(tmp_path / "cache"))
    emb, want = loaded.model.embed_tokens.weight, model.model.embed_tokens.weight
    err = (emb - want).abs().max().item()
    # Q8_0: 8-bit codes with one scale per 32 values; weights ~N(0, 0.05) lose at most scale/2 = max|w|/254
    assert 0 < err <= want.abs().max().item() / 254 * 1.01
    assert loaded.lm_head.weight.data_ptr() == emb.data_ptr()


def test_pipeline_runs_on_a_gguf_source_and_records_its_sha256(tiny, tmp_path, capsys):
    from vocabadapt.cli import main
    from vocabadapt.io import sha256_file
    from vocabadapt.stages import STAGE_NAMES

    _root, _tok, _model, path = tiny
    target = train_bpe_tokenizer(DOCS, vocab_size=330, special=SPECIALS)
    target.save_pretrained(str(tmp_path / "target_tok"))
    write_jsonl(tmp_path / "train.jsonl", DOCS)
    write_jsonl(tmp_path / "heldout.jsonl", [f"report {i}: aspirin and heparin for chest pain." for i in range(6)])
    cfg = write_config(
        tmp_path / "gguf.yaml",
        {
            "models": {"source_model": str(path), "target_tokenizer": "target_tok"},
            "corpus": {"inputs": ["train.jsonl"], "heldout_inputs": ["heldout.jsonl"]},
            "tokenization": {"cache_dir": "cache"},
            "embedding": {"fasttext": {"epochs": 2, "dim": 16, "thread": 1}},
            "alignment": {"pivot_count": 50, "similarity_threshold": 0.3},
            "evaluation": {"datasets": ["heldout"], "batch_size": 4},
            "pipeline": {"run_root": "runs"},
            "vocab_adaptation": {
                "stage1_steps": 2,
                "stage2_steps": 2,
                "batch_size": 2,
                "max_seq_length": 32,
                "bf16": False,
                "save_steps": 2,
                "eval_steps": 2,
                "logging_steps": 1,
                "eval_max_bytes": 2000,
            },
        },
    )
    run_dir = tmp_path / "run"
    assert main(["run", str(cfg), "--run-dir", str(run_dir)]) == 0
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["complete"] and all(manifest["stages"][s]["status"] == "done" for s in STAGE_NAMES)
    sha = sha256_file(path)
    stages = manifest["stages"]
    assert stages["tokenize"]["summary"]["tokenizers"]["source_gguf"]["sha256"] == sha
    assert stages["transplant"]["summary"]["source_gguf"]["sha256"] == sha
    assert stages["transplant"]["summary"]["source_gguf"]["dequantised_to"] == str(tmp_path / "cache" / "gguf" / sha)
    # the output models are ordinary HF directories with the target tokenizer's rows
    for stage in ("init", "stage2"):
        config = json.loads((run_dir / "model" / stage / "config.json").read_text())
        assert "quantization_config" not in config and config["vocab_size"] >= len(target)
    # the source model was evaluated (from its dequantised copy) beside the adapted ones
    summary = json.loads((run_dir / "eval" / "summary.json").read_text())
    assert "source" in json.dumps(summary) and "stage2" in json.dumps(summary)


# --------------------------------------------------------------------------------------------------
# refusals: each names the file and what to do


def test_missing_gguf_package_names_the_install_command(tiny, tmp_path, monkeypatch):
    from vocabadapt.model.gguf import gguf_model_dir

    monkeypatch.setitem(sys.modules, "gguf", None)  # import gguf now raises ImportError
    with pytest.raises(InputError, match=r"tiny-f32\.gguf: .*needs the 'gguf' package.*pip install 'gguf>=0\.10'"):
        gguf_model_dir(tiny[3], tmp_path / "cache")
    assert not (tmp_path / "cache" / "gguf").exists() or not any((tmp_path / "cache" / "gguf").iterdir())


@pytest.mark.parametrize("keep", [0.5, 0.9995, 200])
def test_truncated_file_is_refused(tiny, tmp_path, keep):
    from vocabadapt.model.gguf import gguf_model_dir

    data = tiny[3].read_bytes()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(data[: int(len(data) * keep) if keep < 1 else keep])
    with pytest.raises(InputError, match=r"cut\.gguf \([\d,]+ bytes\) is truncated or corrupt; download or copy"):
        gguf_model_dir(cut, tmp_path / "cache")
    assert not list((tmp_path / "cache" / "gguf").iterdir())  # nothing half-written is left to be taken


def test_a_file_that_is_not_gguf_is_refused(tmp_path):
    from vocabadapt.model.gguf import gguf_model_dir

    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"PK\x03\x04 a zip archive, not a model")
    with pytest.raises(InputError, match=r"model\.gguf is not a GGUF file \(it starts with b'PK"):
        gguf_model_dir(fake, tmp_path / "cache")
    with pytest.raises(InputError, match=r"GGUF file .*absent\.gguf does not exist"):
        gguf_model_dir(tmp_path / "absent.gguf", tmp_path / "cache")


def test_unsupported_architecture_is_refused_before_any_work(tiny, tmp_path):
    from vocabadapt.model.gguf import gguf_model_dir

    _, tok, model, _ = tiny
    path = write_tiny_gguf(tmp_path / "rwkv.gguf", model, tok, arch="rwkv6")
    with pytest.raises(InputError, match=r"rwkv\.gguf: architecture 'rwkv6' cannot be read .*llama.*convert"):
        gguf_model_dir(path, tmp_path / "cache")


def test_unsupported_quantisation_is_refused_naming_a_tensor(tiny, tmp_path):
    from vocabadapt.model.gguf import gguf_model_dir

    _, tok, model, _ = tiny
    path = write_tiny_gguf(tmp_path / "q81.gguf", model, tok, raw_override={"blk.0.ffn_up.weight": "Q8_1"})
    with pytest.raises(
        InputError,
        match=r"q81\.gguf: 1 tensor\(s\) are quantised as Q8_1 \(e\.g\. blk\.0\.ffn_up"
        r"\.weight\), which the gguf package cannot dequantise",
    ):
        gguf_model_dir(path, tmp_path / "cache")


def test_audit_reads_the_model_config_from_the_gguf_header(tiny, tmp_path):
    from vocabadapt.model.gguf import gguf_config, gguf_model_dir

    _, tok, model, path = tiny
    header = gguf_config(path, tmp_path / "cache")  # nothing cached yet: read from the header
    assert not (tmp_path / "cache").exists()
    for key in (
        "vocab_size",
        "hidden_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "intermediate_size",
        "tie_word_embeddings",
    ):
        assert header[key] == getattr(model.config, key), key
    gguf_model_dir(path, tmp_path / "cache")
    assert gguf_config(path, tmp_path / "cache")["vocab_size"] == len(tok)  # now from the dequantised copy
