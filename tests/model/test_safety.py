"""Safety defaults and hostile inputs: remote code, pickle weights, offline hub ids, broken tokenizer
and model files, run-directory escapes, malformed PubMedQA files. No test touches the network."""

from __future__ import annotations

import json
import os
import shutil
import socket
from collections import Counter
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file

from helpers import TEXT, offline_env, run_pipeline_offline, save_tiny_model, train_bpe_tokenizer, write_fuzz_counts
from vocabadapt.config import Config, ModelsConfig
from vocabadapt.errors import InputError, StageError
from vocabadapt.model.hub import load_model, load_tokenizer
from vocabadapt.run import runner as pipeline
from vocabadapt.run.layout import RunLayout
from vocabadapt.stages import STAGES

SAFE = ModelsConfig()
# Bounded, deterministic property tests; benchmarks/faults.py raises the count and collects COUNTS.
EXAMPLES = int(os.environ.get("VOCABADAPT_FUZZ_EXAMPLES", "50"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
COUNTS: Counter = Counter()


@pytest.fixture(scope="module", autouse=True)
def _record_counts():
    yield
    write_fuzz_counts(COUNTS)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    tok = train_bpe_tokenizer([TEXT], vocab_size=300)
    return save_tiny_model(tmp_path_factory.mktemp("m") / "model", tok)


@pytest.fixture()
def copy_of(model_dir, tmp_path):
    def make(name: str = "m") -> Path:
        d = tmp_path / name
        shutil.copytree(model_dir, d)
        return d

    return make


@pytest.fixture()
def no_network(monkeypatch, tmp_path):
    """HF_HUB_OFFLINE=1, an empty HF cache, and any socket connection fails loudly."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def _set_json(path: Path, **updates) -> None:
    data = json.loads(path.read_text())
    data.update(updates)
    path.write_text(json.dumps(data))


# --------------------------------------------------------------------------------------------------
# remote code


def test_model_with_custom_code_is_refused_by_default(copy_of):
    d = copy_of()
    _set_json(d / "config.json", auto_map={"AutoModelForCausalLM": "modeling_evil.EvilForCausalLM"})
    (d / "modeling_evil.py").write_text("raise SystemExit('custom code ran')\n")
    with pytest.raises(InputError) as e:
        load_model(str(d), SAFE)
    msg = str(e.value)
    assert str(d) in msg and "auto_map" in msg and "models.trust_remote_code: true" in msg


def test_tokenizer_with_custom_code_is_refused_by_default(copy_of):
    d = copy_of()
    _set_json(d / "tokenizer_config.json", auto_map={"AutoTokenizer": ["tok_evil.EvilTokenizer", None]})
    with pytest.raises(InputError, match="models.trust_remote_code: true"):
        load_tokenizer(str(d), SAFE)


def test_trust_remote_code_is_off_unless_configured():
    assert Config().models.trust_remote_code is False
    assert Config().models.allow_pickle is False


def test_custom_code_passes_the_gate_when_allowed(copy_of):
    # With the switch on, the refusal is gone; the (plain) model still loads through its own class.
    d = copy_of()
    _set_json(d / "config.json", auto_map={"AutoConfig": "configuration_x.XConfig"})
    try:
        load_model(str(d), ModelsConfig(trust_remote_code=True))
    except InputError as e:
        assert "trust_remote_code: true" not in str(e)


# --------------------------------------------------------------------------------------------------
# pickle weights


@pytest.fixture()
def pickle_dir(copy_of) -> Path:
    d = copy_of("pickled")
    state = load_file(str(d / "model.safetensors"))
    (d / "model.safetensors").unlink()
    torch.save(state, d / "pytorch_model.bin")
    return d


def test_pickle_only_weights_are_refused_by_default(pickle_dir):
    with pytest.raises(InputError) as e:
        load_model(str(pickle_dir), SAFE)
    assert str(pickle_dir) in str(e.value) and "models.allow_pickle: true" in str(e.value)


def test_pickle_weights_load_when_allowed(pickle_dir, model_dir):
    m = load_model(str(pickle_dir), ModelsConfig(allow_pickle=True))
    ref = load_file(str(model_dir / "model.safetensors"))
    emb = m.get_input_embeddings().weight
    assert torch.equal(emb, ref["gpt_neox.embed_in.weight"])


def test_pickle_that_runs_code_is_not_executed(copy_of, tmp_path):
    # A .bin whose unpickling would run os.system: weights_only loading must refuse it, not run it.
    d = copy_of("evil")
    (d / "model.safetensors").unlink()
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"gpt_neox.embed_in.weight": Evil()}, d / "pytorch_model.bin")
    with pytest.raises(InputError, match=str(d)):
        load_model(str(d), ModelsConfig(allow_pickle=True))
    assert not marker.exists()


# --------------------------------------------------------------------------------------------------
# offline hub ids


def test_offline_hub_id_model_gives_one_clear_error(no_network):
    with pytest.raises(InputError) as e:
        load_model("some-org/some-model-that-is-not-cached", SAFE)
    msg = str(e.value)
    assert "some-org/some-model-that-is-not-cached" in msg and "local directory" in msg


def test_offline_hub_id_tokenizer_gives_one_clear_error(no_network):
    with pytest.raises(InputError) as e:
        load_tokenizer("some-org/some-tokenizer", SAFE)
    assert "some-org/some-tokenizer" in str(e.value) and "local directory" in str(e.value)


def test_local_model_loads_with_networking_disabled(no_network, model_dir):
    m = load_model(str(model_dir), SAFE)
    tok = load_tokenizer(str(model_dir), SAFE)
    assert m.get_input_embeddings().weight.shape[0] == len(tok) == 300


# --------------------------------------------------------------------------------------------------
# broken tokenizer and model files


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"not json at all",
        b'{"version": "1.0"}',
        b"[1, 2, 3]",
        b'{"model": {"type": "BPE", "vocab": 5}}',
        b"\xff\xfe\x00garbage",
    ],
)
def test_tokenizer_json_that_is_not_one(tmp_path, content):
    f = tmp_path / "tokenizer.json"
    f.write_bytes(content)
    with pytest.raises(InputError, match=str(f)):
        load_tokenizer(str(f), SAFE)


def test_tokenizer_directory_with_broken_tokenizer_json(copy_of):
    d = copy_of()
    (d / "tokenizer.json").write_text('{"truncated": ')
    with pytest.raises(InputError, match=str(d)):
        load_tokenizer(str(d), SAFE)


def test_tokenizer_config_not_json(copy_of):
    d = copy_of()
    (d / "tokenizer_config.json").write_text("{oops")
    with pytest.raises(InputError, match="tokenizer_config.json"):
        load_tokenizer(str(d), SAFE)


def test_model_config_vocab_size_disagrees_with_weights(copy_of):
    d = copy_of()
    _set_json(d / "config.json", vocab_size=500)  # weights hold 300 rows
    with pytest.raises(InputError, match=str(d)):
        load_model(str(d), SAFE)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_model_weights_with_nan_or_inf(copy_of, bad):
    d = copy_of()
    state = load_file(str(d / "model.safetensors"))
    state["gpt_neox.layers.1.mlp.dense_h_to_4h.weight"][3, 5] = bad
    save_file(state, str(d / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(InputError) as e:
        load_model(str(d), SAFE)
    assert str(d) in str(e.value) and "gpt_neox.layers.1.mlp.dense_h_to_4h.weight" in str(e.value)


@pytest.mark.parametrize("damage", ["truncate", "flip_header", "empty"])
def test_damaged_safetensors(copy_of, damage):
    d = copy_of()
    f = d / "model.safetensors"
    blob = f.read_bytes()
    if damage == "truncate":
        f.write_bytes(blob[: len(blob) // 2])
    elif damage == "flip_header":
        f.write_bytes(blob[:8] + bytes(b ^ 0xFF for b in blob[8:40]) + blob[40:])
    else:
        f.write_bytes(b"")
    with pytest.raises(InputError, match=str(d)):
        load_model(str(d), SAFE)


def test_model_config_not_json_and_missing(copy_of, tmp_path):
    d = copy_of()
    (d / "config.json").write_text("{")
    with pytest.raises(InputError, match="config.json"):
        load_model(str(d), SAFE)
    (d / "config.json").unlink()
    with pytest.raises(InputError, match="no config.json"):
        load_model(str(d), SAFE)
    with pytest.raises(InputError, match="does not exist"):
        load_model(str(tmp_path / "nowhere"), SAFE)


# --------------------------------------------------------------------------------------------------
# run names and paths never escape


@FUZZ
@given(name=st.text(max_size=40))
def test_safe_name_never_escapes_run_root(name):
    COUNTS["run_names"] += 1
    cleaned = pipeline._safe_name(name)
    assert cleaned and "/" not in cleaned and "\\" not in cleaned and "\x00" not in cleaned
    assert cleaned not in (".", "..") and not cleaned.startswith(".")
    root = Path("/runs/root")
    assert (root / f"{cleaned}-20260101T000000Z").resolve().parent == root


@pytest.mark.parametrize("stem", ["../../etc/passwd", "..", ".", "/abs/path", "a/../../b", "~", "", "\x00"])
def test_new_run_dir_stays_under_run_root(tmp_path, stem):
    cfg = Config.model_validate({"pipeline": {"run_root": str(tmp_path / "runs")}})
    d = pipeline.new_run_dir(cfg, stem + ".yaml" if stem else ".yaml")
    assert d.resolve().parent == (tmp_path / "runs").resolve()


@pytest.mark.parametrize("parts", [("..", "x"), ("/etc", "passwd"), ("a", "..", "..", "b"), ("../run-evil",)])
def test_stage_context_path_refuses_escapes(tmp_path, parts):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    ctx = RunLayout(run_dir)
    with pytest.raises(StageError, match="escapes the run directory"):
        ctx.path(*parts)


def test_stage_context_path_refuses_symlink_escape(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "link").symlink_to(tmp_path)
    ctx = RunLayout(run_dir)
    with pytest.raises(StageError):
        ctx.path("link", "outside.txt")
    assert ctx.path("a", "..", "b") == (run_dir / "b").resolve()


def test_no_stage_writes_outside_its_outputs():
    # Every output a stage declares is a path inside the run directory.
    layout = RunLayout(Path("/run"))
    for spec in STAGES:
        for o in spec.output_names(layout):
            assert not Path(o).is_absolute() and ".." not in Path(o).parts, (spec.name, o)


# --------------------------------------------------------------------------------------------------
# PubMedQA files with missing fields or unknown labels

pubmedqa = pytest.importorskip("vocabadapt.evaluation.pubmedqa")

GOOD = {"QUESTION": "Does aspirin reduce pain?", "CONTEXTS": ["Aspirin reduced pain."], "final_decision": "yes"}


@pytest.mark.parametrize(
    "record,expect",
    [
        ({k: v for k, v in GOOD.items() if k != "QUESTION"}, "missing field QUESTION"),
        ({k: v for k, v in GOOD.items() if k != "CONTEXTS"}, "missing field CONTEXTS"),
        ({k: v for k, v in GOOD.items() if k != "final_decision"}, "missing field final_decision"),
        ({**GOOD, "final_decision": "perhaps"}, "final_decision is 'perhaps'"),
        ({**GOOD, "final_decision": 1}, "final_decision is '1'"),
        ({**GOOD, "CONTEXTS": 5}, "CONTEXTS must be"),
        ({**GOOD, "QUESTION": ""}, "QUESTION must be"),
        ({**GOOD, "QUESTION": ["a"]}, "QUESTION must be"),
        ("not an object", "must be a JSON object"),
    ],
)
def test_pubmedqa_bad_record_names_the_record(tmp_path, record, expect):
    f = tmp_path / "qa.json"
    f.write_text(json.dumps({"111": GOOD, "222": record}))
    with pytest.raises(InputError) as e:
        pubmedqa.load_questions(f)
    assert f"{f}: record 222" in str(e.value) and expect in str(e.value)
    jl = tmp_path / "qa.jsonl"
    rec = {**record, "id": "333"} if isinstance(record, dict) else record
    jl.write_text(json.dumps({**GOOD, "id": "1"}) + "\n" + json.dumps(rec) + "\n")
    with pytest.raises(InputError, match=f"{jl}:2"):
        pubmedqa.load_questions(jl)


qa_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.text(max_size=8),
    st.sampled_from(["yes", "no", "maybe", "YES ", "Maybe"]),
    st.lists(st.one_of(st.text(max_size=5), st.integers()), max_size=3),
    st.dictionaries(st.sampled_from(["contexts", "labels"]), st.lists(st.text(max_size=5), max_size=2)),
)


@FUZZ
@given(
    records=st.dictionaries(
        st.text(min_size=1, max_size=5),
        st.dictionaries(
            st.sampled_from(
                ["QUESTION", "CONTEXTS", "final_decision", "question", "context", "label", "answer", "id", "x"]
            ),
            qa_values,
            max_size=6,
        ),
        max_size=4,
    )
)
def test_fuzz_pubmedqa_records(tmp_path_factory, records):
    COUNTS["pubmedqa_records"] += 1
    f = tmp_path_factory.mktemp("qa") / "qa.json"
    f.write_text(json.dumps(records))
    try:
        qs = pubmedqa.load_questions(f)
    except InputError as e:
        assert str(f) in str(e)
        return
    assert qs and all(q.label in ("yes", "no", "maybe") and q.question for q in qs)


# --------------------------------------------------------------------------------------------------
# the demo pipeline with networking disabled for the whole process


@pytest.mark.slow
def test_demo_pipeline_runs_with_networking_disabled(tmp_path):
    """`vocabadapt run configs/demo-tiny.yaml` (made tinier) end to end in a process whose sockets cannot connect."""

    repo = Path(__file__).resolve().parents[2]
    demo = repo / "configs" / "demo-tiny.yaml"
    source_tok = repo / "examples" / "pubmed_demo" / "tokenizers" / "source"
    if not demo.exists() or not source_tok.exists():
        pytest.skip("configs/demo-tiny.yaml or the demo tokenizers are missing")
    model = save_tiny_model(tmp_path / "model", load_tokenizer(str(source_tok), SAFE), hidden=64, max_pos=256)
    env = offline_env(tmp_path)
    sets = [
        f"models.source_model={model}",
        "corpus.byte_budget=200000",
        "embedding.fasttext.epochs=1",
        "embedding.fasttext.thread=1",
        "vocab_adaptation.stage1_steps=2",
        "vocab_adaptation.stage2_steps=2",
        "vocab_adaptation.eval_max_bytes=2000",
        "evaluation.max_samples=2",
        "evaluation.qa.bootstrap=10",
    ]
    run_pipeline_offline(demo, tmp_path / "run", sets, env, repo, timeout=1200)
