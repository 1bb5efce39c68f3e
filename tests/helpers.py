"""Tiny deterministic models, tokenizers and configs for tests (seconds, no downloads)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
import yaml

# ../shared/data from the repository root, unless $VOCABADAPT_SHARED_DATA says where it is.
SHARED_DATA = Path(os.environ.get("VOCABADAPT_SHARED_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")

TEXT = (
    "the patient received aspirin for chest pain . the patient was treated with heparin . "
    "cardiac arrest after cocaine use was reported in the patient . aspirin reduces pain . "
    "the study of tumour growth in mice showed that heparin slows the growth . "
) * 4


def train_bpe_tokenizer(
    texts: list[str], vocab_size: int = 300, special: tuple[str, ...] = ("<|endoftext|>", "<|pad|>")
):
    """A byte-level BPE PreTrainedTokenizerFast trained in memory (bos=eos=first special, pad=second)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(special),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=special[0], eos_token=special[0], unk_token=special[0], pad_token=special[1]
    )


def sentencepiece_folder(
    d: Path, lines: list[str], model_type: str = "bpe", byte_fallback: bool = True, vocab_size: int = 400
) -> Path:
    """A folder holding only a SentencePiece tokenizer.model (as Llama-2 and Mistral releases ship it)."""
    import sentencepiece as spm

    d.mkdir(parents=True)
    corpus = d / "corpus.txt"
    corpus.write_text("\n".join(lines) + "\n")
    spm.SentencePieceTrainer.train(
        input=str(corpus),
        model_prefix=str(d / "tokenizer"),
        model_type=model_type,
        vocab_size=vocab_size,
        byte_fallback=byte_fallback,
        character_coverage=1.0,
        hard_vocab_limit=False,
        num_threads=1,
        minloglevel=2,
    )
    corpus.unlink()
    (d / "tokenizer.vocab").unlink()
    return d


def tiktoken_folder(d: Path, byte_level_tokenizer: Any) -> Path:
    """A folder holding only a tiktoken-format tokenizer.model (as Llama 3's original release): one
    "<base64 token bytes> <rank>" line per non-special token of a byte-level BPE, ranks in merge order."""
    import base64

    from vocabadapt.text.vocab import _byte_decoder, special_ids

    dec = _byte_decoder()
    specials = special_ids(byte_level_tokenizer)
    vocab = sorted((i, t) for t, i in byte_level_tokenizer.get_vocab().items() if i not in specials)
    d.mkdir(parents=True)
    lines = [f"{base64.b64encode(bytes(dec[c] for c in t)).decode()} {rank}" for rank, (_, t) in enumerate(vocab)]
    (d / "tokenizer.model").write_text("\n".join(lines) + "\n")
    return d


def seed_all(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Deterministic weights: every parameter drawn from one seeded generator in name order."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    return model


def tiny_model(
    arch: str = "gpt_neox",
    vocab_size: int = 320,
    hidden: int = 32,
    layers: int = 2,
    max_pos: int = 128,
    tie: bool | None = None,
    seed: int = 0,
) -> torch.nn.Module:
    """A tiny causal LM of the given architecture with deterministic weights.

    arch: gpt_neox (untied, like Pythia), llama (untied), gpt2 (tied), qwen2, mistral.
    """
    import transformers as tf

    common = dict(vocab_size=vocab_size, num_hidden_layers=layers, num_attention_heads=4)
    if arch == "gpt_neox":
        cfg = tf.GPTNeoXConfig(
            hidden_size=hidden,
            intermediate_size=hidden * 4,
            max_position_embeddings=max_pos,
            tie_word_embeddings=bool(tie),
            **common,
        )
    elif arch in ("llama", "qwen2", "mistral"):
        klass = {"llama": tf.LlamaConfig, "qwen2": tf.Qwen2Config, "mistral": tf.MistralConfig}[arch]
        cfg = klass(
            hidden_size=hidden,
            intermediate_size=hidden * 2,
            max_position_embeddings=max_pos,
            num_key_value_heads=2,
            tie_word_embeddings=bool(tie),
            **common,
        )
    elif arch == "gpt2":
        cfg = tf.GPT2Config(
            vocab_size=vocab_size,
            n_embd=hidden,
            n_layer=layers,
            n_head=4,
            n_positions=max_pos,
            tie_word_embeddings=True if tie is None else tie,
            bos_token_id=0,
            eos_token_id=0,
        )
    else:
        raise ValueError(arch)
    cfg.bos_token_id = 0
    cfg.eos_token_id = 0
    cfg.pad_token_id = 1
    torch.manual_seed(seed)
    model = tf.AutoModelForCausalLM.from_config(cfg)
    seed_all(model, seed)
    if cfg.tie_word_embeddings:
        model.tie_weights()
    model.eval()
    return model


def save_tiny_model(directory: Path, tokenizer: Any, arch: str = "gpt_neox", **kwargs: Any) -> Path:
    """Save a tiny model sized to `tokenizer` plus the tokenizer into `directory`."""
    model = tiny_model(arch, vocab_size=len(tokenizer), **kwargs)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(directory), safe_serialization=True)
    tokenizer.save_pretrained(str(directory))
    return directory


def write_jsonl(path: Path, docs: list[str], field: str = "text") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for i, d in enumerate(docs):
            f.write(json.dumps({"id": i, field: d}) + "\n")
    return path


def write_config(path: Path, data: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def write_fuzz_counts(counts: dict) -> None:
    """Add fuzz case counts to the JSON file named by $VOCABADAPT_FUZZ_LOG (benchmarks/faults.py reads it)."""
    import os

    log = os.environ.get("VOCABADAPT_FUZZ_LOG")
    if log and counts:
        old = json.loads(Path(log).read_text()) if Path(log).exists() else {}
        old.update(counts)
        Path(log).write_text(json.dumps(old, indent=2))


# A sitecustomize.py that makes every IPv4/IPv6 connect fail in the process that imports it.
NO_NETWORK_SITECUSTOMIZE = """
import socket

def _refuse(self, address, *args, **kwargs):
    if self.family in (socket.AF_INET, socket.AF_INET6):
        raise OSError(f"network disabled for this test: connect to {address}")
    return _connect(self, address, *args, **kwargs)

_connect = socket.socket.connect
socket.socket.connect = _refuse
socket.socket.connect_ex = lambda self, address: 111
"""


def offline_env(tmp_path: Path) -> dict:
    """Environment for a subprocess with sockets blocked (sitecustomize) and the HF hub offline."""
    import os

    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(NO_NETWORK_SITECUSTOMIZE)
    return {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "hf"),
        "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
    }


def run_pipeline_offline(config: Path, run_dir: Path, sets: list[str], env: dict, cwd: Path, timeout: int) -> dict:
    """`vocabadapt run CONFIG --set ...` in a subprocess under `env` (from offline_env); first proves that the
    socket block is in force, then that every stage finished. Returns the run's manifest."""
    import json
    import subprocess
    import sys

    probe = subprocess.run(
        [sys.executable, "-c", "import socket; socket.create_connection(('1.1.1.1', 443), 2)"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert probe.returncode != 0 and "network disabled" in probe.stderr  # the block is in force
    cmd = [sys.executable, "-m", "vocabadapt", "run", str(config), "--run-dir", str(run_dir)]
    for s in sets:
        cmd += ["--set", s]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=cwd, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["complete"] and all(r["status"] == "done" for r in manifest["stages"].values())
    return manifest
