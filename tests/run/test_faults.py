"""Fault tests: fuzzed configs and corpus files, run locks, a full disk.

The property tests run a bounded, deterministic number of examples: VOCABADAPT_FUZZ_EXAMPLES per
property, default 30 so the normal suite stays fast (one config case through `vocabadapt config show`
costs 30-90 ms, mostly YAML dumping and argparse). benchmarks/faults.py runs them with 300 each; the
number of cases that ran goes to the JSON file named by VOCABADAPT_FUZZ_LOG when that is set.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import io
import json
import os
import random
import re
import socket
import subprocess
import sys
import tempfile
import textwrap
import zlib
from collections import Counter
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from helpers import write_fuzz_counts
from vocabadapt import cli
from vocabadapt import io as vio
from vocabadapt.config import Config
from vocabadapt.errors import InputError, RunLockedError, StageError
from vocabadapt.run.context import StageContext
from vocabadapt.run.layout import RunLayout
from vocabadapt.run.lock import run_lock

EXAMPLES = int(os.environ.get("VOCABADAPT_FUZZ_EXAMPLES", "30"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)
COUNTS: Counter = Counter()


@pytest.fixture(scope="module", autouse=True)
def _record_counts():
    yield
    write_fuzz_counts(COUNTS)


# --------------------------------------------------------------------------------------------------
# config loader fuzz: the only outcomes are exit 0 or exit 2 with a message naming a key path

SECTIONS = tuple(Config.model_fields)
# One problem line of a ConfigError: "  - <key path>[ (line N)| [from --set]]: message"
PROBLEM = re.compile(r"^  - (?P<path>\S.*?)( \(line \d+\)| \[from --set\])?: \S")
# Problems that are about the file as a whole, not one key.
WHOLE_FILE = (
    "YAML syntax error",
    "the file is empty",
    "the top level must be a mapping",
    "the YAML nests too deeply",
    "has an empty key",
    "is not KEY=VALUE",
)

text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=30)
# what one shell argument holds in practice: no control characters
shell_text = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=30)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    text,
    st.sampled_from(
        [
            "5e-5",
            "1E3",
            "${HOME}",
            "${NOPE_UNSET_VAR}",
            "${X:-7}",
            "~",
            "..",
            "/",
            "yes",
            "off",
            "null",
            ".inf",
            "2020-01-01",
            "'",
            "{",
            "[",
            "-",
            "*a",
        ]
    ),
)
trees = st.recursive(
    scalars,
    lambda kids: st.one_of(
        st.lists(kids, max_size=4),
        st.dictionaries(st.one_of(text, st.integers(-5, 5), st.booleans()), kids, max_size=4),
    ),
    max_leaves=12,
)


def _key_values(model: type[BaseModel], prefix: str = "") -> dict[str, tuple[Any, Any]]:
    """Every leaf key of the schema (dotted) -> (annotation, default), walking sections recursively."""
    out: dict[str, tuple[Any, Any]] = {}
    for name, f in model.model_fields.items():
        ann = f.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out.update(_key_values(ann, f"{prefix}{name}."))
        else:
            out[f"{prefix}{name}"] = (ann, f.get_default(call_default_factory=True))
    return out


LEAVES = _key_values(Config)


def _typed_values(ann: Any) -> st.SearchStrategy:
    """Values near what a key accepts (boundaries, wrong types, near-miss literals) plus junk."""
    origin, args = get_origin(ann), get_args(ann)
    if origin is Literal:
        return st.one_of(st.sampled_from(args), st.sampled_from([str(a).upper() for a in args] + ["", "nope"]))
    if origin is Union or (origin is not None and type(None) in args):
        return st.one_of(*[_typed_values(a) for a in args])
    if ann is type(None):
        return st.none()
    if ann is bool:
        return st.one_of(st.booleans(), st.sampled_from(["yes", "no", "maybe", 0, 1, 2]))
    if ann is int:
        return st.one_of(
            st.integers(-3, 70000), st.integers(-(2**64), 2**64), st.floats(), st.sampled_from(["3", "1e3"])
        )
    if ann is float:
        return st.one_of(st.floats(), st.integers(-5, 5), st.sampled_from(["nan", "1e-3", "-0", "x"]))
    if ann is str:
        return st.one_of(text, st.sampled_from(["../../etc", "/tmp/x", "${HOME}/x", "~/x", "sha1", "md5", "shaa1"]))
    if origin is list:
        return st.one_of(st.lists(_typed_values(args[0]) if args else scalars, max_size=3), text, st.none())
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return st.fixed_dictionaries({}, optional={k: _typed_values(f.annotation) for k, f in ann.model_fields.items()})
    return scalars


@st.composite
def schema_docs(draw) -> dict:
    """A config mapping with random values for a random subset of the real keys (and some typos)."""
    keys = draw(st.lists(st.sampled_from(sorted(LEAVES)), min_size=1, max_size=8, unique=True))
    doc: dict = {}
    for k in keys:
        parts = k.split(".")
        if draw(st.integers(0, 19)) == 0:  # a misspelt key now and then
            parts[-1] = parts[-1][:-1] + "x"
        cur = doc
        for p in parts[:-1]:
            cur = cur.setdefault(p, {})
        cur[parts[-1]] = draw(_typed_values(LEAVES[k][0]))
    if draw(st.integers(0, 9)) == 0:
        doc[draw(st.sampled_from(SECTIONS))] = draw(scalars)  # a section that is not a mapping
    return doc


def _run_config_show(doc_text: str | bytes, overrides: tuple[str, ...] = ()) -> tuple[int, str]:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "cfg.yaml"
        path.write_bytes(doc_text if isinstance(doc_text, bytes) else doc_text.encode("utf-8", "surrogatepass"))
        argv = ["config", "show", str(path)]
        for o in overrides:
            argv += ["--set", o]
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            # Anything but a VocabadaptError escapes main() with its traceback and fails the test.
            try:
                rc = cli.main(argv)
            except SystemExit as e:  # argparse's usage error (e.g. `--set -x=1` looks like an option)
                assert e.code == 2 and "usage:" in err.getvalue(), err.getvalue()
                return 0, ""
        return rc, err.getvalue()


def _check_outcome(rc: int, err: str, must_name_key: bool) -> None:
    assert rc in (0, 2), (rc, err)
    if rc == 0:
        return
    assert err.startswith("error: ") and "problem(s) in the config" in err, err
    problems = [line for line in err.split("\n")[1:] if line.startswith("  - ")]
    assert problems, err
    for line in problems:
        if any(w in line for w in WHOLE_FILE) and not must_name_key:
            continue
        m = PROBLEM.match(line)
        assert m, f"problem without a key path: {line!r}\n{err}"
        if must_name_key:
            assert m["path"] == "(top level)" or m["path"].split(".")[0] in SECTIONS, line


@FUZZ
@given(doc=trees)
def test_fuzz_random_yaml_documents(doc):
    COUNTS["config_random_yaml"] += 1
    rc, err = _run_config_show(yaml.safe_dump(doc, allow_unicode=True))
    _check_outcome(rc, err, must_name_key=False)


@FUZZ
@given(raw=st.one_of(st.binary(max_size=200), text.map(lambda t: "models:\n  " + t), st.text(max_size=80)))
def test_fuzz_raw_bytes_as_config(raw):
    COUNTS["config_raw_bytes"] += 1
    rc, err = _run_config_show(raw if isinstance(raw, bytes) else raw.encode("utf-8", "replace"))
    _check_outcome(rc, err, must_name_key=False)


@FUZZ
@given(doc=schema_docs())
def test_fuzz_every_schema_key(doc):
    COUNTS["config_schema_values"] += 1
    rc, err = _run_config_show(yaml.safe_dump(doc, allow_unicode=True))
    _check_outcome(rc, err, must_name_key=True)


@FUZZ
@given(
    key=st.one_of(st.sampled_from(sorted(LEAVES)), shell_text),
    value=st.one_of(
        text,
        st.sampled_from(["[a, b]", "{x: 1}", "5e-5", "-1", "true", "null", "[", "'", ": :", "${HOME}", "0x10", ".nan"]),
    ),
)
def test_fuzz_set_overrides(key, value):
    COUNTS["config_set_overrides"] += 1
    rc, err = _run_config_show("pipeline: {run_root: runs}\n", (f"{key}={value}",))
    _check_outcome(rc, err, must_name_key=False)
    if rc == 2 and key in LEAVES and "problem(s)" in err and "--set" not in err.splitlines()[0]:
        assert key.split(".")[0] in err or "(top level)" in err, err


@pytest.mark.parametrize(
    "doc",
    [
        "a: &x [*x]\n",  # alias inside its own anchor
        'pipeline: {run_root: "r\\0oot"}\n',  # NUL byte in a path
        "embedding: {fasttext: {minn: 3, maxn: 2}}\n",  # whole-config check (empty error location)
        "models: !!python/object:os.system {}\n",  # unsafe tag
        "\ufeffmodels: {}\n",  # UTF-8 BOM
        "models:\n\tsource_model: x\n",  # tab indentation
        "vocab_adaptation: {lr_stage1: .inf, stage1_steps: 1e400}\n",
        "models: {target_tokenizer: {train: {vocab_size: 10}}}\n",
        "corpus: {inputs: [[1, 2]], hash_name: shaa1}\n",
        "? [a, b]\n: 1\n",  # a list as a mapping key
    ],
)
def test_config_loader_edge_cases(doc):
    rc, err = _run_config_show(doc)
    _check_outcome(rc, err, must_name_key=False)
    if "minn: 3" in doc:
        assert rc == 2 and "embedding.fasttext.maxn" in err


# --------------------------------------------------------------------------------------------------
# run lock

HOLD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from vocabadapt.run.lock import run_lock
    with run_lock(Path(sys.argv[1]) / ".lock"):
        print("locked", flush=True)
        time.sleep(30)
""")


def _hold_lock(run_dir: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_second_process_is_refused(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    holder = _hold_lock(run_dir)
    try:
        assert RunLayout(run_dir).lock.read_text() == f"{holder.pid}@{socket.gethostname()}"
        with pytest.raises(RunLockedError, match=str(holder.pid)):
            with run_lock(RunLayout(run_dir).lock):
                pass
        # the refused attempt must not have touched the owner's lock
        assert RunLayout(run_dir).lock.read_text() == f"{holder.pid}@{socket.gethostname()}"
        # and through the CLI: exit code 3
        cfg = tmp_path / "c.yaml"
        cfg.write_text("pipeline: {run_root: runs}\n")
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            assert cli.main(["run", str(cfg), "--run-dir", str(run_dir)]) == 3
        assert "in use by process" in err.getvalue()
    finally:
        holder.kill()
        holder.wait()


def test_stale_lock_of_dead_process_is_taken_over(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    RunLayout(run_dir).lock.write_text(f"{dead.pid}@{socket.gethostname()}")
    with run_lock(RunLayout(run_dir).lock):
        assert RunLayout(run_dir).lock.read_text() == f"{os.getpid()}@{socket.gethostname()}"
    assert RunLayout(run_dir).lock.read_text() == ""  # released: emptied, kept (see run_lock)


def test_killed_holder_leaves_a_stale_lock_that_is_taken_over(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    holder = _hold_lock(run_dir)
    holder.kill()  # SIGKILL: no cleanup, the lock file stays
    holder.wait()
    assert RunLayout(run_dir).lock.exists()
    with run_lock(RunLayout(run_dir).lock):
        assert RunLayout(run_dir).lock.read_text().startswith(f"{os.getpid()}@")


@pytest.mark.parametrize("content", ["", "garbage", "@", "notapid@" + socket.gethostname()])
def test_unreadable_lock_content_counts_as_stale(tmp_path, content):
    RunLayout(tmp_path).lock.write_text(content)
    with run_lock(RunLayout(tmp_path).lock):
        pass
    assert RunLayout(tmp_path).lock.read_text() == ""


def test_lock_of_another_host_is_respected(tmp_path):
    RunLayout(tmp_path).lock.write_text("123@some-other-host")
    with pytest.raises(RunLockedError, match="some-other-host"):
        with run_lock(RunLayout(tmp_path).lock):
            pass


# --------------------------------------------------------------------------------------------------
# no space left on the device


@pytest.fixture()
def disk_full(monkeypatch):
    """Temp files that atomic writes create are backed by /dev/full: every flush fails with ENOSPC."""
    if not os.path.exists("/dev/full"):
        pytest.skip("needs /dev/full")
    real_mkstemp = tempfile.mkstemp

    def mkstemp(*args, **kwargs):
        fd, name = real_mkstemp(*args, **kwargs)
        os.close(fd)
        return os.open("/dev/full", os.O_WRONLY), name

    monkeypatch.setattr(vio.tempfile, "mkstemp", mkstemp)


def _leftovers(d: Path) -> list[str]:
    return sorted(p.name for p in d.rglob("*") if p.name.startswith(vio.TMP_PREFIX))


def test_enospc_in_atomic_write_keeps_previous_file(tmp_path, disk_full):
    target = tmp_path / "a" / "stats.json"
    target.parent.mkdir()
    target.write_text('{"old": 1}\n')
    with pytest.raises(StageError, match="no space left on the device while writing .*stats.json"):
        with vio.atomic_write(target) as f:
            f.write("x" * 100_000)
    assert target.read_text() == '{"old": 1}\n'
    assert _leftovers(tmp_path) == []


def test_enospc_in_write_json_keeps_previous_file(tmp_path, disk_full):
    target = tmp_path / "manifest.json"
    target.write_text('{"stages": {}}\n')
    with pytest.raises(StageError, match="no space left"):
        vio.write_json(target, {"stages": {"corpus": {"status": "done"}}})
    assert json.loads(target.read_text()) == {"stages": {}}
    assert _leftovers(tmp_path) == []


def test_enospc_in_atomic_write_of_new_file_leaves_nothing(tmp_path, disk_full):
    with pytest.raises(StageError, match="no space left"):
        vio.write_json(tmp_path / "new.json", {"a": 1})
    assert list(tmp_path.iterdir()) == []


def test_enospc_while_filling_atomic_dir_keeps_previous_dir(tmp_path):
    out = tmp_path / "model"
    out.mkdir()
    (out / "w.bin").write_bytes(b"old weights")
    with pytest.raises(StageError, match="no space left on the device while writing .*model"):
        with vio.atomic_dir(out) as tmp:
            (tmp / "w.bin").write_bytes(b"new")
            raise OSError(errno.ENOSPC, "No space left on device")  # what a write into tmp raises
    assert (out / "w.bin").read_bytes() == b"old weights"
    assert _leftovers(tmp_path) == []


def test_enospc_on_final_rename_of_atomic_dir_keeps_previous_dir(tmp_path, monkeypatch):
    out = tmp_path / "model"
    out.mkdir()
    (out / "w.bin").write_bytes(b"old weights")
    real_replace = os.replace
    calls = []

    def replace(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:  # 1st moves the old dir aside, 2nd puts the new one in place
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(vio.os, "replace", replace)
    with pytest.raises(StageError, match="no space left"):
        with vio.atomic_dir(out) as tmp:
            (tmp / "w.bin").write_bytes(b"new")
    monkeypatch.setattr(vio.os, "replace", real_replace)
    assert (out / "w.bin").read_bytes() == b"old weights"
    assert _leftovers(tmp_path) == []


def test_fingerprint_ignores_temp_names_only_inside_the_tree(tmp_path):
    # A run directory that itself lives under a folder named like a temp file is still fingerprinted.
    d = tmp_path / (vio.TMP_PREFIX + "scratch") / "run" / "out"
    d.mkdir(parents=True)
    (d / "a.txt").write_text("abc")
    (d / (vio.TMP_PREFIX + "a.txt.123")).write_text("partial")
    fp = vio.fingerprint(d)
    assert fp["files"] == 1 and fp["bytes"] == 3


# --------------------------------------------------------------------------------------------------
# corpus reader fuzz

from vocabadapt.stages import corpus as corpus_stage  # noqa: E402
from vocabadapt.text import corpus  # noqa: E402


def _corpus_ctx(tmp_path: Path, inputs: list[Path], **corpus_cfg: Any) -> StageContext:
    cfg = Config.model_validate({"corpus": {"inputs": [str(p) for p in inputs], **corpus_cfg}})
    run_dir = tmp_path / "run"
    run_dir.mkdir(exist_ok=True)
    return StageContext(layout=RunLayout(run_dir), config=cfg, stage="corpus")


def _read_all(path: Path, fields=("text",), mode="block"):
    stats = corpus.FileStats()
    docs = list(corpus.read_documents(path, list(fields), mode, stats))
    return docs, stats


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), text),
    lambda k: st.one_of(st.lists(k, max_size=3), st.dictionaries(text, k, max_size=3)),
    max_leaves=6,
)
jsonl_lines = st.one_of(
    st.binary(max_size=60),  # random bytes
    st.builds(lambda t: json.dumps({"text": t}).encode(), text),  # good records
    st.builds(lambda v: json.dumps({"text": v}).encode(), json_values),  # wrong types
    st.builds(lambda v: json.dumps(v).encode(), json_values),  # not an object
    st.sampled_from(
        [
            b"\xff\xfe\x00",
            b'{"text": "a\x00b"}',
            b'{"text": "\\u0000nul"}',
            b"\x00" * 10,
            b'{"text": "caf\xe9"}',
            b'{"text":',
            b"   ",
            b"[]",
            b"null",
            b'{"text": ""}',
        ]
    ),
)


@FUZZ
@given(lines=st.lists(jsonl_lines, max_size=12))
def test_fuzz_jsonl_reader(tmp_path, lines):
    COUNTS["corpus_jsonl_lines"] += 1
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"\n".join(lines))
    try:
        docs, stats = _read_all(path)
    except InputError as e:
        assert str(path) in str(e)  # e.g. a UTF-16 byte-order mark at the start
        return
    physical = path.read_bytes().split(b"\n")
    # every non-blank line is either a document or a counted bad line
    assert len(docs) + stats.bad_lines == sum(1 for line in physical if line.strip())
    assert all(isinstance(t, str) and t.strip() for _, t in docs)


@FUZZ
@given(data=st.binary(max_size=400), mode=st.sampled_from(["block", "line"]))
def test_fuzz_txt_reader(tmp_path, data, mode):
    COUNTS["corpus_txt_bytes"] += 1
    path = tmp_path / "in.txt"
    path.write_bytes(data)
    try:
        docs, stats = _read_all(path, mode=mode)
    except InputError as e:
        assert str(path) in str(e)
        return
    assert all(t.strip() for _, t in docs)
    bad_utf8 = sum(1 for line in data.split(b"\n") if _not_utf8(line))  # files iterate on \n only
    assert stats.bad_lines == bad_utf8


def _not_utf8(b: bytes) -> bool:
    try:
        b.decode("utf-8")
        return False
    except UnicodeDecodeError:
        return True


def test_fuzz_truncated_or_corrupt_gzip(tmp_path):
    # A plain seeded loop rather than hypothesis, so every case runs and the unclean ones are counted.
    unclean: Counter = Counter()
    for case in range(EXAMPLES):
        rnd = random.Random(case)
        payload = "\n".join(
            json.dumps({"text": f"doc {case} {i} " * rnd.randrange(1, 30)}) for i in range(rnd.randrange(1, 20))
        )
        blob = bytearray(gzip.compress(payload.encode()))
        blob = blob[: rnd.randrange(len(blob) + 1)]
        if rnd.random() < 0.5 and len(blob) > 12:
            for _ in range(rnd.randrange(1, 4)):
                blob[rnd.randrange(10, len(blob))] ^= 1 << rnd.randrange(8)
        path = tmp_path / f"in{case}.jsonl.gz"
        path.write_bytes(bytes(blob))
        COUNTS["corpus_gzip_damaged"] += 1
        try:
            docs, stats = _read_all(path)
            assert len(docs) + stats.bad_lines <= payload.count("\n") + 1 + 1
        except InputError as e:
            assert str(path) in str(e)
        except zlib.error:  # was not caught by corpus.read_documents before da93701
            unclean["zlib.error"] += 1
    COUNTS["corpus_gzip_unclean_zlib_error"] += sum(unclean.values())
    assert not unclean, f"{sum(unclean.values())} of {EXAMPLES} damaged gzip files raised zlib.error, not InputError"


def test_huge_line_and_empty_file(tmp_path):
    big = tmp_path / "big.jsonl"
    big.write_text(json.dumps({"text": "word " * 2_000_000}) + "\n" + "x" * 3_000_000 + "\n")
    docs, stats = _read_all(big)
    assert len(docs) == 1 and len(docs[0][1]) == 10_000_000 and stats.bad_lines == 1
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    assert _read_all(empty)[0] == []
    empty_gz = tmp_path / "empty.txt.gz"
    empty_gz.write_bytes(b"")
    assert _read_all(empty_gz)[0] == []


def test_corrupt_parquet_is_a_clean_error(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    good = tmp_path / "good.parquet"
    pq.write_table(pa.table({"text": [f"document {i} " * 20 for i in range(200)], "n": list(range(200))}), good)
    blob = good.read_bytes()
    for name, data in [
        ("cut.parquet", blob[: len(blob) // 2]),
        ("junk.parquet", os.urandom(500)),
        ("flip.parquet", blob[:200] + bytes(b ^ 0x5A for b in blob[200:400]) + blob[400:]),
    ]:
        p = tmp_path / name
        p.write_bytes(data)
        try:
            _read_all(p)
        except InputError as e:
            assert str(p) in str(e)
    wrong = tmp_path / "wrong.parquet"
    pq.write_table(pa.table({"text": [1, 2, None]}), wrong)
    docs, stats = _read_all(wrong)
    assert docs == [] and stats.bad_lines == 3


def test_corpus_stage_stats_add_up_on_messy_input(tmp_path):
    rnd = random.Random(0)
    lines = []
    for i in range(300):
        kind = rnd.randrange(6)
        if kind == 0:
            lines.append(bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 40))).replace(b"\n", b" "))
        elif kind == 1:
            lines.append(json.dumps({"text": i}).encode())
        elif kind == 2:
            lines.append(json.dumps({"text": f"duplicate document {i % 7} about aspirin"}).encode())
        else:
            lines.append(json.dumps({"text": f"document {i} about heparin and pain " * (1 + i % 5)}).encode())
    src = tmp_path / "messy.jsonl"
    src.write_bytes(b"\n".join(lines) + b"\n")
    ctx = _corpus_ctx(tmp_path, [src], heldout_fraction=0.1)
    out = corpus_stage.run(ctx)
    st_json = json.loads((ctx.run_dir / "corpus" / "stats.json").read_text())
    per_file = st_json["files"][str(src)]
    nonblank = sum(1 for line in lines if line.strip())
    # every line is exactly one of: kept for training, held out, over the held-out cap, duplicate,
    # too short, bad
    assert (
        out["documents"]
        + out["heldout_documents"]
        + out["heldout_over_cap"]
        + out["duplicates"]
        + out["too_short"]
        + out["bad_lines"]
    ) == nonblank
    assert per_file["documents"] == out["documents"] + out["heldout_documents"] + out["heldout_over_cap"]
    train = (ctx.run_dir / "corpus" / "train.jsonl").read_text(encoding="utf-8").splitlines()
    held = (ctx.run_dir / "corpus" / "heldout.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(train) == out["documents"] and len(held) == out["heldout_documents"]
    assert sum(len(json.loads(x)["text"].encode()) for x in train) == out["bytes"]
    assert out["duplicates"] >= 1 and out["bad_lines"] >= 1


@pytest.mark.parametrize(
    "record",
    [
        {"text": "lone surrogate \ud800 in an escaped string"},
    ],
)
def test_corpus_stage_escaped_surrogate_is_skipped_or_clean(tmp_path, record):
    src = tmp_path / "s.jsonl"
    # json.dumps escapes the surrogate as \ud800: valid JSON, valid UTF-8, but not encodable text
    src.write_text(json.dumps(record) + "\n" + json.dumps({"text": "a fine document"}) + "\n")
    ctx = _corpus_ctx(tmp_path, [src], heldout_fraction=0.0)
    try:
        out = corpus_stage.run(ctx)
    except (InputError, StageError):
        return
    assert out["documents"] == 1 and out["bad_lines"] == 1


def test_corpus_stage_failures_leave_no_partial_output(tmp_path):
    bad = tmp_path / "b.jsonl.gz"
    bad.write_bytes(gzip.compress(b'{"text": "one"}\n' * 1000)[:-30])
    ctx = _corpus_ctx(tmp_path, [bad], heldout_fraction=0.0)
    with pytest.raises(InputError, match="b.jsonl.gz"):
        corpus_stage.run(ctx)
    assert not (ctx.run_dir / "corpus" / "train.jsonl").exists()
    assert _leftovers(ctx.run_dir) == []
