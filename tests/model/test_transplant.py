"""Transplant: identity, exact rows end to end, sharded checkpoints, loud failures, real tokenizers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from helpers import SHARED_DATA, TEXT, save_tiny_model, tiny_model, train_bpe_tokenizer
from vocabadapt.align.mapping import TokenMapping, tokenizer_checksum
from vocabadapt.errors import ConfigError, InputError
from vocabadapt.model.transplant import transplant_model

OTHER = "gene expression in tumour cells was measured by sequencing . mutations were rare . " * 6


@pytest.fixture(scope="module")
def tok():
    return train_bpe_tokenizer([TEXT], vocab_size=300)


@pytest.fixture(scope="module")
def target_tok():
    return train_bpe_tokenizer([OTHER + TEXT], vocab_size=290)


def identity_mapping(tok, checksums: bool = True) -> TokenMapping:
    n = len(tok)
    c = tokenizer_checksum(tok) if checksums else ""
    return TokenMapping(
        methods=["special", "special"] + ["identical"] * (n - 2),
        source_ids=[[i] for i in range(n)],
        weights=[[1.0]] * n,
        similarity=[None] * n,
        source_vocab_size=n,
        target_checksum=c,
        source_checksum=c,
    )


def load(path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(path)).eval()


def tensors(directory: Path) -> dict[str, torch.Tensor]:
    out = {}
    for f in sorted(directory.glob("*.safetensors")):
        with safe_open(str(f), "pt") as r:
            out.update({k: r.get_tensor(k) for k in r.keys()})
    return out


# ------------------------------------------------------------------------------------------------
# identity


@pytest.mark.parametrize("arch", ["gpt_neox", "llama", "gpt2", "qwen2", "mistral"])
def test_identity_transplant_gives_bit_identical_logits(arch, tok, tmp_path):
    src = save_tiny_model(tmp_path / "src", tok, arch)
    summary = transplant_model(src, tok, tok, identity_mapping(tok), tmp_path / "out", pad_to_multiple_of=1)
    assert summary["tied"] is (arch == "gpt2")
    assert summary["rows_copied"] == len(tok) and summary["zero_rows"] == 0 and summary["padding_rows"] == 0
    ids = tok(TEXT[:200], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        a, b = load(src)(ids).logits, load(tmp_path / "out")(ids).logits
    assert torch.equal(a, b)
    before, after = tensors(src), tensors(tmp_path / "out")
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_padding_rows_are_zero_and_never_generated(tok, tmp_path):
    from transformers import AutoTokenizer

    src = save_tiny_model(tmp_path / "src", tok, "gpt_neox")
    summary = transplant_model(src, tok, tok, identity_mapping(tok), tmp_path / "out")  # 300 -> 320 rows
    assert summary["target_rows"] == 320 and summary["padding_rows"] == 20
    model = load(tmp_path / "out")
    assert model.config.vocab_size == 320
    assert model.get_input_embeddings().weight.shape == (320, 32)
    assert torch.equal(model.get_output_embeddings().weight[300:], torch.zeros(20, 32))
    assert model.generation_config.suppress_tokens == list(range(300, 320))
    ids = tok(TEXT[:100], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        padded = model(ids).logits
        reference = load(src)(ids).logits
        assert torch.equal(padded[..., 300:], torch.zeros_like(padded[..., 300:]))
        torch.testing.assert_close(padded[..., :300], reference, rtol=1e-5, atol=1e-6)
        # make padding the most likely tokens: generation must still never produce them
        model.get_output_embeddings().weight[300:] = 100.0 * model.get_output_embeddings().weight[:300].mean(0)
        model.get_output_embeddings().weight[300:] += 50.0 * model.get_input_embeddings().weight[ids[0, -1]]
        assert int(model(ids).logits[0, -1].argmax()) >= 300
        out = model.generate(ids, max_new_tokens=8, do_sample=False)
    assert out.shape[1] == ids.shape[1] + 8 and int(out.max()) < 300
    assert AutoTokenizer.from_pretrained(str(tmp_path / "out")).get_vocab() == tok.get_vocab()


# ------------------------------------------------------------------------------------------------
# exact rows end to end (untied: input and output built separately from one recipe)


def expected_rows(src_rows: torch.Tensor, mapping: TokenMapping, n_src: int) -> dict[int, torch.Tensor]:
    out = {}
    for t, (m, ids, w) in enumerate(zip(mapping.methods, mapping.source_ids, mapping.weights)):
        if ids:
            acc = torch.zeros(src_rows.shape[1], dtype=torch.float64)
            for i, x in zip(ids, w):
                acc = acc + x * src_rows[i].double()
            out[t] = acc.float()
        elif m == "mean":
            out[t] = src_rows[:n_src].double().mean(0).float()
    return out


@pytest.mark.parametrize("arch", ["gpt_neox", "gpt2"])
def test_hand_made_mapping_rows_end_to_end(arch, tok, target_tok, tmp_path):
    src = save_tiny_model(tmp_path / "src", tok, arch)
    n_tgt, n_src = len(target_tok), len(tok)
    methods, ids, weights = [], [], []
    for t in range(n_tgt):
        if t < 2:
            methods.append("special"), ids.append([t]), weights.append([1.0])
        elif t % 3 == 0:
            methods.append("aligned"), ids.append([(5 * t) % n_src]), weights.append([1.0])
        elif t % 3 == 1:
            methods.append("soft"), ids.append([t % n_src, (t + 9) % n_src]), weights.append([0.75, 0.25])
        else:
            methods.append("mean"), ids.append([]), weights.append([])
    mapping = TokenMapping(
        methods, ids, weights, [None] * n_tgt, n_src, tokenizer_checksum(target_tok), tokenizer_checksum(tok)
    )
    summary = transplant_model(src, tok, target_tok, mapping, tmp_path / "out", init=None)
    assert summary["rows_per_method"] == mapping.counts() and summary["zero_rows"] == 0
    before, after = tensors(src), tensors(tmp_path / "out")
    keys = summary["tensors"]
    pairs = [(keys["input"], keys["input"])] + ([(keys["output"], keys["output"])] if keys["output"] else [])
    for k_src, k_out in pairs:
        want = expected_rows(before[k_src], mapping, n_src)
        got = after[k_out]
        assert got.shape == (320, 32)
        for t, row in want.items():
            if mapping.methods[t] == "mean":
                torch.testing.assert_close(got[t], row, rtol=1e-6, atol=1e-7)
            else:
                assert torch.equal(got[t], row), (k_out, t)
    if arch == "gpt_neox":  # the two matrices differ in the source, so they differ here too
        assert not torch.equal(after[keys["input"]], after[keys["output"]])
    other = [k for k in before if k not in (keys["input"], keys["output"])]
    assert all(torch.equal(before[k], after[k]) for k in other)
    model = load(tmp_path / "out")  # loads with no custom code; special ids follow the target
    assert model.config.eos_token_id == target_tok.eos_token_id and model.config.pad_token_id == target_tok.pad_token_id


# ------------------------------------------------------------------------------------------------
# sharded checkpoints


def test_sharded_checkpoint_rewrites_only_embedding_shards_and_matches_unsharded(tok, target_tok, tmp_path):
    model = tiny_model("llama", vocab_size=len(tok), layers=4)
    single, sharded = tmp_path / "single", tmp_path / "sharded"
    model.save_pretrained(str(single))
    model.save_pretrained(str(sharded), max_shard_size="40KB")
    files = sorted(p.name for p in sharded.glob("*.safetensors"))
    assert len(files) >= 3
    mapping = identity_mapping(tok)
    transplant_model(single, tok, tok, mapping, tmp_path / "a", init="fvt")
    b = transplant_model(sharded, tok, tok, mapping, tmp_path / "b", init="fvt")
    assert b["files_copied"] and set(b["files_rewritten"]) | set(b["files_copied"]) == set(files)
    assert len(b["files_rewritten"]) <= 2
    for name in b["files_copied"]:
        assert (sharded / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    ta, tb = tensors(tmp_path / "a"), tensors(tmp_path / "b")
    assert ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)
    index = json.loads((tmp_path / "b" / "model.safetensors.index.json").read_text())
    assert index["metadata"]["total_size"] == sum(t.numel() * t.element_size() for t in tb.values())
    ids = tok(TEXT[:100], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.equal(load(tmp_path / "a")(ids).logits, load(tmp_path / "b")(ids).logits)


MEMORY_SCRIPT = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    sys.path.insert(0, sys.argv[3])
    from helpers import train_bpe_tokenizer, TEXT
    from vocabadapt.align.mapping import TokenMapping
    from vocabadapt.model.transplant import transplant_model

    def hwm_mb():
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024

    tok = train_bpe_tokenizer([TEXT], vocab_size=300)
    n = len(tok)
    mapping = TokenMapping(["identical"] * n, [[i] for i in range(n)], [[1.0]] * n, [None] * n, n)
    big, out = Path(sys.argv[1]), Path(sys.argv[2])
    transplant_model(big, tok, tok, mapping, out / "warm", init="random")  # imports and code paths warmed
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
    base = hwm_mb()
    transplant_model(big, tok, tok, mapping, out / "out", init="random")
    print(json.dumps({"peak_delta_mb": hwm_mb() - base}))
""")


def test_sharded_transplant_reads_only_the_embedding_tensors(tok, tmp_path, monkeypatch):
    """Fast proxy of the memory test below: the only tensors ever read into memory are the embeddings."""
    import safetensors

    from vocabadapt.model import transplant

    model = tiny_model("llama", vocab_size=len(tok), layers=4)
    model.save_pretrained(str(tmp_path / "src"), max_shard_size="40KB")
    loaded: list[str] = []
    real_read = transplant.read_tensor

    def spy(path, name):
        loaded.append(name)
        return real_read(path, name)

    def no_mmap(*a, **k):
        raise AssertionError("safe_open maps whole files; the transplant must not use it")

    monkeypatch.setattr(transplant, "read_tensor", spy)
    monkeypatch.setattr(safetensors, "safe_open", no_mmap)
    transplant_model(tmp_path / "src", tok, tok, identity_mapping(tok), tmp_path / "out")
    assert sorted(loaded) == ["lm_head.weight", "model.embed_tokens.weight"]


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc peak-RSS reset")
def test_sharded_transplant_peak_memory_is_far_below_model_size(tok, tmp_path):
    # ~64 MB of float32 weights in 8 shards, of which the two embedding matrices are 1.2 MB.
    # (benchmarks/transplant_memory.py compares with loading the model, on a bigger one.)
    model = tiny_model("llama", vocab_size=len(tok), hidden=512, layers=6)
    model_mb = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20
    model.save_pretrained(str(tmp_path / "src"), max_shard_size="8MB")
    del model
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1")
    res = subprocess.run(
        [sys.executable, "-c", MEMORY_SCRIPT, str(tmp_path / "src"), str(tmp_path), str(Path(__file__).parents[1])],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    transplant_mb = json.loads(res.stdout.strip().splitlines()[-1])["peak_delta_mb"]
    assert model_mb > 50
    assert transplant_mb < 0.2 * model_mb, (transplant_mb, model_mb)


# ------------------------------------------------------------------------------------------------
# loud failures


def test_mapping_ids_outside_the_source_rows_fail(tok, tmp_path):
    src = save_tiny_model(tmp_path / "src", tok, "gpt_neox")
    mapping = identity_mapping(tok)
    mapping.source_ids[10] = [len(tok)]
    with pytest.raises(InputError, match="target id 10 .* source id 300, outside"):
        transplant_model(src, tok, tok, mapping, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_target_tokenizer_larger_than_mapping_fails(tok, target_tok, tmp_path):
    src = save_tiny_model(tmp_path / "src", tok, "gpt_neox")
    n = len(target_tok) - 1
    mapping = TokenMapping(["identical"] * n, [[i] for i in range(n)], [[1.0]] * n, [None] * n, len(tok))
    with pytest.raises(InputError, match=f"target tokenizer has {n + 1} tokens but the mapping has {n}"):
        transplant_model(src, tok, target_tok, mapping, tmp_path / "out")


def test_mapping_for_another_tokenizer_fails_by_checksum(tok, tmp_path):
    src = save_tiny_model(tmp_path / "src", tok, "gpt_neox")
    mapping = identity_mapping(tok)
    mapping.target_checksum = "0" * 64
    with pytest.raises(InputError, match="made for another target tokenizer"):
        transplant_model(src, tok, tok, mapping, tmp_path / "out")


def test_nan_in_a_source_row_fails_naming_the_tensor(tok, tmp_path):
    model = tiny_model("llama", vocab_size=len(tok))
    with torch.no_grad():
        model.get_output_embeddings().weight[42, 0] = float("inf")
    model.save_pretrained(str(tmp_path / "src"))
    with pytest.raises(InputError, match=r"lm_head.weight: 1 built row\(s\) hold NaN or Inf, e.g. target id 42"):
        transplant_model(tmp_path / "src", tok, tok, identity_mapping(tok), tmp_path / "out")


def test_source_tokenizer_longer_than_embedding_fails(tok, tmp_path):
    model = tiny_model("gpt_neox", vocab_size=200)
    model.save_pretrained(str(tmp_path / "src"))
    with pytest.raises(InputError, match="source tokenizer has 300 tokens but .* only 200 rows"):
        transplant_model(tmp_path / "src", tok, tok, identity_mapping(tok), tmp_path / "out")


def test_pickle_only_weights_are_refused_unless_allowed(tok, tmp_path):
    model = tiny_model("gpt_neox", vocab_size=len(tok))
    model.config.save_pretrained(str(tmp_path / "src"))
    torch.save(model.state_dict(), tmp_path / "src" / "pytorch_model.bin")
    with pytest.raises(InputError, match="only pickle"):
        transplant_model(tmp_path / "src", tok, tok, identity_mapping(tok), tmp_path / "out")
    summary = transplant_model(
        tmp_path / "src", tok, tok, identity_mapping(tok), tmp_path / "out", allow_pickle=True, pad_to_multiple_of=1
    )
    assert summary["rows_copied"] == len(tok)
    ids = tok(TEXT[:100], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.equal(model(ids).logits, load(tmp_path / "out")(ids).logits)


def test_unknown_initialiser_fails_before_work(tok, tmp_path):
    src = save_tiny_model(tmp_path / "src", tok, "gpt_neox")
    with pytest.raises(ConfigError, match="valid: fvt_prior, tokalign, soft, fvt, mean, random"):
        transplant_model(src, tok, tok, identity_mapping(tok), tmp_path / "out", init="tokalgn")


# ------------------------------------------------------------------------------------------------
# the pipeline stage


def test_run_stage_reads_the_run_dir_and_writes_model_init(tok, target_tok, tmp_path):
    from vocabadapt.config import Config
    from vocabadapt.run.context import StageContext
    from vocabadapt.run.layout import RunLayout
    from vocabadapt.stages.transplant import run as run_stage

    run = tmp_path / "run"
    src = save_tiny_model(tmp_path / "src", tok, "qwen2")
    tok.save_pretrained(str(run / "tokenizers" / "source"))
    target_tok.save_pretrained(str(run / "tokenizers" / "target"))
    layout = RunLayout(run)
    s, t = layout.tokenizer("source"), layout.tokenizer("target")
    n = len(t)
    mapping = TokenMapping(
        ["special", "special"] + ["fvt"] * (n - 2),
        [[0], [1]] + [[i % len(s)] for i in range(2, n)],
        [[1.0]] * n,
        [None] * n,
        len(s),
        tokenizer_checksum(t),
        tokenizer_checksum(s),
    )
    mapping.save(run / "align" / "mapping.json")
    config = Config.model_validate(
        {
            "models": {"source_model": str(src)},
            "alignment": {"init": "tokalign"},
            "transplant": {"pad_to_multiple_of": 32},
        }
    )
    ctx = StageContext(layout=layout, config=config, stage="transplant")
    summary = run_stage(ctx)
    assert (
        summary["init"] == "tokalign"
        and summary["target_rows"] == 320
        and summary["mapping_checksum"] == mapping.checksum()
    )
    written = json.loads((run / "model" / "init" / "transplant.json").read_text())
    assert written == summary
    mapping.target_checksum = tokenizer_checksum(s)
    mapping.save(run / "align" / "mapping.json")
    with pytest.raises(InputError, match="another target tokenizer"):
        run_stage(ctx)


# ------------------------------------------------------------------------------------------------
# real tokenizers: GPT-NeoX model onto the BioGPT tokenizer


def identical_plus_fvt_mapping(target, source) -> TokenMapping:
    """Specials by role, identical tokens copied, every other token FVT (mean when it decodes to nothing)."""
    from vocabadapt.init.fvt import fvt_pieces

    try:
        from vocabadapt.text.vocab import identical_tokens, special_map

        identical = identical_tokens(target, source)
        specials = special_map(target, source)[0]
    except ImportError:  # the alignment engine's canonical forms are not there: exact-string identity
        svocab = source.get_vocab()
        identical = {i: svocab[t] for t, i in target.get_vocab().items() if t in svocab}
        specials = {i: source.eos_token_id for i in target.all_special_ids}
    n = len(target)
    todo = [t for t in range(n) if t not in identical and t not in specials]
    pieces = dict(zip(todo, fvt_pieces(target, source, todo)))
    methods, ids, weights = [], [], []
    for t in range(n):
        if t in specials:
            m, i = "special", [specials[t]]
        elif t in identical:
            m, i = "identical", [identical[t]]
        elif pieces[t]:
            m, i = "fvt", pieces[t]
        else:
            m, i = "mean", []
        methods.append(m)
        ids.append(i)
        weights.append([1.0 / len(i)] * len(i))
    return TokenMapping(
        methods, ids, weights, [None] * n, len(source), tokenizer_checksum(target), tokenizer_checksum(source)
    )


@pytest.mark.slow  # ~15 s on 2 idle cores (42k BioGPT tokens decoded one by one by a Python tokenizer)
@pytest.mark.shared_data("tokenizers", "biogpt")
def test_gpt_neox_model_onto_real_biogpt_tokenizer(tmp_path):
    from transformers import AutoTokenizer, BioGptTokenizer, PreTrainedTokenizerFast

    source = PreTrainedTokenizerFast(
        tokenizer_file=str(SHARED_DATA / "tokenizers" / "gpt-neox-20b" / "tokenizer.json"),
        eos_token="<|endoftext|>",
        bos_token="<|endoftext|>",
        pad_token="<|padding|>",
    )
    biogpt = SHARED_DATA / "tokenizers" / "biogpt"
    target = BioGptTokenizer(str(biogpt / "vocab.json"), str(biogpt / "merges.txt"))
    model = tiny_model("gpt_neox", vocab_size=50304, hidden=32)  # Pythia pads 50277 tokens to 50304 rows
    model.save_pretrained(str(tmp_path / "src"))
    mapping = identical_plus_fvt_mapping(target, source)
    counts = mapping.counts()
    assert counts.get("identical", 0) > 5000 and counts.get("fvt", 0) > 5000
    summary = transplant_model(tmp_path / "src", source, target, mapping, tmp_path / "out")
    assert summary["zero_rows"] == 0
    assert summary["target_vocab_size"] == len(target) == 42384 and summary["target_rows"] == 42432
    assert summary["tied"] is False
    out = tmp_path / "out"
    tok = AutoTokenizer.from_pretrained(str(out))
    model = load(out)
    assert model.config.vocab_size == 42432
    assert (model.config.bos_token_id, model.config.eos_token_id, model.config.pad_token_id) == (0, 2, 1)
    ids = tok("aspirin reduces chest pain in patients", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        gen = model.generate(ids, max_new_tokens=5, do_sample=False)
    assert gen.shape == (1, ids.shape[1] + 5) and int(gen.max()) < len(target)
    # an identical token's rows are its source token's rows
    src_t, out_t = tensors(tmp_path / "src"), tensors(out)
    t = next(t for t, m in enumerate(mapping.methods) if m == "identical")
    s = mapping.source_ids[t][0]
    assert torch.equal(out_t["gpt_neox.embed_in.weight"][t], src_t["gpt_neox.embed_in.weight"][s])
    assert torch.equal(out_t["embed_out.weight"][t], src_t["embed_out.weight"][s])


def test_dtype_option_casts_every_float_tensor(tok, tmp_path):
    src = save_tiny_model(tmp_path / "src", tok, "llama")
    summary = transplant_model(src, tok, tok, identity_mapping(tok), tmp_path / "out", dtype="bfloat16")
    assert summary["dtype"] == "bfloat16" and summary["files_copied"] == []
    before, after = tensors(src), tensors(tmp_path / "out")
    assert {t.dtype for t in after.values()} == {torch.bfloat16}
    assert torch.equal(after["model.embed_tokens.weight"][:300], before["model.embed_tokens.weight"].to(torch.bfloat16))
    assert torch.equal(
        after["model.layers.0.mlp.up_proj.weight"], before["model.layers.0.mlp.up_proj.weight"].to(torch.bfloat16)
    )
    assert load(tmp_path / "out").dtype == torch.bfloat16
