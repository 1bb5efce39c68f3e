"""Fault-injection benchmark: SIGKILL inside every stage, corrupted artifacts, fuzzed inputs.

    python -m benchmarks.faults --quick          # one kill per stage, 5 corruptions, 100 fuzz cases/property
    python -m benchmarks.faults                  # 3 random kills per stage, 300 fuzz cases/property

writes benchmarks/results/faults.md (and faults.json next to it). What it does:

1. Fuzz: runs tests/test_faults.py and tests/test_safety.py with VOCABADAPT_FUZZ_EXAMPLES raised and
   collects how many cases each property ran and whether any failed uncleanly.
2. Reference: `vocabadapt run configs/demo-tiny.yaml --run-dir REF --set ...` (made tiny by --set), run
   once without interruption.
3. Kills: for each kill point (stage, fraction) a fresh run directory; the same command is started in
   its own process group, manifest.json is polled until the target stage is "running", and after
   `fraction` x that stage's reference wall time the whole group gets SIGKILL (only if the stage is still
   running; the stage actually hit is recorded). Then: no stage that was cut short may be recorded done,
   every stage recorded done must still match its fingerprints, and the same command run again must
   finish; its outputs are compared with the reference (sha256 fingerprints from the manifests: bitwise
   for corpus/tokenize/embed/align/transplant, reported for training; eval/summary.json numbers within a
   relative tolerance).
4. Corruptions: a copy of the reference run has one artifact damaged (bytes flipped, file cut short or
   deleted); the same command must notice it by fingerprint, redo that stage and end with outputs equal
   to the reference.

The source model is examples/pubmed_demo/model when it exists, else a tiny deterministic GPT-NeoX built
by vocabadapt.testing for the demo's source tokenizer (--model tiny forces that).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.harness import (
    RESULTS,
    Block,
    cpu_model,
    git_commit,
    git_dirty,
    json_child,
    log,
    markdown_text,
    read_json,
    utc_now,
    write_json,
    write_markdown,
)

REPO = Path(__file__).resolve().parents[1]

DETERMINISTIC = ("corpus", "tokenize", "embed", "align", "transplant")
KILL_STAGES = ("corpus", "tokenize", "embed", "align", "transplant", "stage1", "stage2", "evaluate", "report")
# Makes configs/demo-tiny.yaml take about two minutes on 2 CPU cores; every run uses exactly these.
TINY = (
    "corpus.byte_budget=200000",
    "embedding.enabled=true",  # the embed stage trains vectors (the default init reads none) and is killed too
    "embedding.fasttext.thread=1",  # bitwise-deterministic fastText
    "embedding.fasttext.epochs=1",
    "vocab_adaptation.stage1_steps=6",
    "vocab_adaptation.stage2_steps=6",
    "vocab_adaptation.save_steps=2",  # checkpoints to resume from
    "vocab_adaptation.eval_steps=6",
    "vocab_adaptation.eval_max_bytes=2000",
    "vocab_adaptation.logging_steps=2",
    "evaluation.max_samples=4",
    "evaluation.qa.bootstrap=20",
)
EVAL_RTOL = 1e-4


# --------------------------------------------------------------------------------------------------
# helpers


def read_manifest(run_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((run_dir / "manifest.json").read_text())
    except (OSError, ValueError):
        return {}


def running_stage(run_dir: Path) -> str | None:
    for name, rec in read_manifest(run_dir).get("stages", {}).items():
        if rec.get("status") == "running":
            return name
    return None


SRC = REPO  # where the vocabadapt package is imported from; main() points it at a frozen snapshot


def snapshot_code(work: Path) -> Path:
    """Copy the vocabadapt package into WORK/src so that edits to the shared working tree during the
    benchmark cannot make the reference and a rerun use different code. Returns the folder to run in."""
    src = work / "src"
    shutil.rmtree(src, ignore_errors=True)
    shutil.copytree(REPO / "vocabadapt", src / "vocabadapt", ignore=shutil.ignore_patterns("__pycache__"))
    return src


def command(config: Path, run_dir: Path, overrides: list[str]) -> list[str]:
    cmd = [sys.executable, "-m", "vocabadapt", "run", str(config), "--run-dir", str(run_dir)]
    for o in overrides:
        cmd += ["--set", o]
    return cmd


def run_to_end(cmd: list[str], logfile: Path, timeout: float = 1800) -> tuple[int, str, float]:
    t0 = time.perf_counter()
    with open(logfile, "w") as f:
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=SRC, timeout=timeout)
    return proc.returncode, logfile.read_text(errors="replace"), time.perf_counter() - t0


def stage_events(output: str) -> dict[str, str]:
    """From the CLI's progress lines '[i/9] stage  running (reason)': stage -> 'ran: reason' / 'skipped'."""
    out: dict[str, str] = {}
    for line in output.splitlines():
        if line.startswith("[") and "] " in line:
            parts = line.split("] ", 1)[1].split(None, 2)
            if len(parts) >= 2 and parts[1] in ("running", "skipped"):
                out[parts[0]] = ("ran: " + (parts[2] if len(parts) > 2 else "")) if parts[1] == "running" else "skipped"
    return out


def output_prints(manifest: dict) -> dict[str, Any]:
    """'stage:output path' -> its fingerprint in the manifest."""
    return {
        f"{s}:{o}": fp for s, rec in manifest.get("stages", {}).items() for o, fp in (rec.get("outputs") or {}).items()
    }


# Outputs that hold wall times or throughput (training metrics, eval JSON, the report) differ between
# any two runs; they are compared by their numbers (eval/summary.json), not their bytes.
TIMING_BEARING = ("train/", "eval", "report")


def flat_numbers(obj: Any, prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.update(flat_numbers(v, f"{prefix}{k}."))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out.update(flat_numbers(v, f"{prefix}{i}."))
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        key = prefix.rstrip(".")
        if not any(w in key for w in ("wall", "seconds", "time", "_s.", "per_s", "tokens_per")):
            out[key] = float(obj)
    return out


def eval_differences(ref_dir: Path, run_dir: Path) -> tuple[int, float, list[str]]:
    """(numbers compared, largest relative difference, keys beyond EVAL_RTOL) of eval/summary.json."""
    try:
        a = flat_numbers(json.loads((ref_dir / "eval" / "summary.json").read_text()))
        b = flat_numbers(json.loads((run_dir / "eval" / "summary.json").read_text()))
    except (OSError, ValueError) as e:
        return 0, math.inf, [f"cannot read eval/summary.json: {e}"]
    worst, bad = 0.0, []
    for k in sorted(set(a) | set(b)):
        if k not in a or k not in b:
            bad.append(f"{k} only in one")
            continue
        rel = abs(a[k] - b[k]) / max(abs(a[k]), 1e-12) if a[k] != b[k] else 0.0
        worst = max(worst, rel)
        if rel > EVAL_RTOL:
            bad.append(f"{k}: {a[k]} vs {b[k]}")
    return len(a), worst, bad


def compare_to_reference(ref: dict, got: dict, ref_dir: Path, run_dir: Path) -> dict[str, Any]:
    ref_p, got_p = output_prints(ref), output_prints(got)
    differ = [k for k in ref_p if ref_p[k] != got_p.get(k)]
    n, worst, bad = eval_differences(ref_dir, run_dir)
    return {
        "deterministic_differ": [k for k in differ if k.split(":")[0] in DETERMINISTIC],
        "weights_differ": [k for k in differ if k.split(":")[1].startswith("model/stage")],
        "timing_bearing_differ": [k for k in differ if k.split(":")[1].startswith(TIMING_BEARING)],
        "eval_numbers": n,
        "eval_max_rel_diff": worst,
        "eval_beyond_tol": bad[:5],
        "eval_beyond_count": len(bad),
    }


# Run as `python -c` with cwd = the code snapshot, so it imports the same vocabadapt as the runs it checks.
CHECK_DONE_CHILD = r"""
import json, sys
from pathlib import Path
from vocabadapt.config import load_config
from vocabadapt.run.layout import RunLayout
from vocabadapt.run.manifest import stage_is_current
from vocabadapt.stages import STAGES

run_dir, config_path, overrides = Path(sys.argv[1]), Path(sys.argv[2]), json.loads(sys.argv[3])
cfg = load_config(config_path, overrides)
manifest = json.loads((run_dir / "manifest.json").read_text()) if (run_dir / "manifest.json").exists() else {}
bad = []
for spec in STAGES:
    rec = manifest.get("stages", {}).get(spec.name)
    if rec and rec.get("status") == "done":
        ok, reason = stage_is_current(RunLayout(run_dir), spec, cfg, manifest)
        if not ok:
            bad.append(f"{spec.name}: {reason}")
print(json.dumps(bad))
"""


def check_done_records(run_dir: Path, config_path: Path, overrides: list[str]) -> list[str]:
    """Stages recorded done whose outputs no longer match their record (a cut-short stage taken as done)."""
    cmd = [sys.executable, "-c", CHECK_DONE_CHILD, str(run_dir), str(config_path), json.dumps(overrides)]
    return json_child(cmd, "check_done_records", cwd=SRC)


def leftover_temps(run_dir: Path) -> int:
    return sum(1 for p in run_dir.rglob(".tmp-*"))


# --------------------------------------------------------------------------------------------------
# parts


FUZZ_TESTS = ("tests/run/test_faults.py", "tests/model/test_safety.py")  # the hypothesis properties fuzz() runs
OLD_FUZZ_TESTS = ("tests/test_faults.py", "tests/test_safety.py")  # their paths in records that predate "tests"


def fuzz(examples: int, work: Path) -> dict[str, Any]:
    counts_file = work / "fuzz_counts.json"
    counts_file.unlink(missing_ok=True)
    env = {**os.environ, "VOCABADAPT_FUZZ_EXAMPLES": str(examples), "VOCABADAPT_FUZZ_LOG": str(counts_file)}
    t0 = time.perf_counter()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-rxXf",
            *FUZZ_TESTS,
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    tail = proc.stdout.strip().splitlines()[-12:]
    counts = json.loads(counts_file.read_text()) if counts_file.exists() else {}
    return {
        "examples_per_property": examples,
        "tests": list(FUZZ_TESTS),
        "counts": counts,
        "pytest_rc": proc.returncode,
        "code": _git_commit(),
        "date": utc_now(),
        "pytest_tail": tail,
        "wall_s": round(time.perf_counter() - t0, 1),
    }


def choose_model(kind: str, work: Path) -> tuple[str, str]:
    demo = REPO / "examples" / "pubmed_demo" / "model"
    if kind in ("auto", "demo") and (demo / "config.json").exists():
        return str(demo), "examples/pubmed_demo/model (the demo's pretrained model)"
    if kind == "demo":
        raise SystemExit("examples/pubmed_demo/model does not exist; build it or use --model tiny")
    from vocabadapt.config import ModelsConfig
    from vocabadapt.model.hub import load_tokenizer
    from vocabadapt.testing import save_tiny_model

    out = work / "tiny_model"
    if not (out / "model.safetensors").exists():
        tok = load_tokenizer(str(REPO / "examples/pubmed_demo/tokenizers/source"), ModelsConfig())
        save_tiny_model(out, tok, arch="gpt_neox", hidden=64, layers=2, max_pos=256)
    return str(
        out
    ), "tiny deterministic GPT-NeoX (vocabadapt.testing, hidden 64, 2 layers) for the demo source tokenizer"


def kill_once(
    cmd: list[str], run_dir: Path, target: str, delay: float, logfile: Path, timeout: float = 900
) -> dict[str, Any]:
    """Start the run, SIGKILL its process group `delay` s after `target` starts (if still running)."""
    with open(logfile, "w") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=SRC, start_new_session=True)
    t_start = None
    landed = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        now_running = running_stage(run_dir)
        if t_start is None and (now_running == target):
            t_start = time.monotonic()
        if t_start is not None and time.monotonic() - t_start >= delay:
            landed = running_stage(run_dir)
            os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.01)
    else:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return {
        "landed": landed,
        "exited_before_kill": landed is None,
        "rc_first": proc.returncode,
        "waited_s": round(time.monotonic() - t_start, 2) if t_start else None,
    }


CORRUPTIONS = (
    ("corpus/train.jsonl", "flip"),
    ("tokens", "flip_largest"),
    ("align/mapping.json", "truncate"),
    ("model/init/model.safetensors", "flip"),
    ("model/stage1/model.safetensors", "truncate"),
    ("embeddings", "delete_largest"),
    ("eval/summary.json", "flip"),
)
STAGE_OF = {
    "corpus": "corpus",
    "tokens": "tokenize",
    "align": "align",
    "model/init": "transplant",
    "model/stage1": "stage1",
    "embeddings": "embed",
    "eval": "evaluate",
}


def corrupt(run_dir: Path, rel: str, how: str, rng: random.Random) -> str:
    p = run_dir / rel
    if p.is_dir():
        files = sorted((f for f in p.rglob("*") if f.is_file()), key=lambda f: f.stat().st_size)
        p = files[-1]
    if how.startswith("delete"):
        p.unlink()
        return f"deleted {p.relative_to(run_dir)}"
    data = bytearray(p.read_bytes())
    if how == "truncate":
        p.write_bytes(bytes(data[: len(data) // 2]))
        return f"cut {p.relative_to(run_dir)} from {len(data)} to {len(data) // 2} bytes"
    for _ in range(8):
        i = rng.randrange(len(data))
        data[i] ^= 0x55
    p.write_bytes(bytes(data))
    return f"flipped 8 bytes of {p.relative_to(run_dir)} ({len(data)} bytes)"


def checkpoint_corruption(
    ref_dir: Path, work: Path, config: Path, overrides: list[str], until: list[str], rng: random.Random
) -> dict[str, Any]:
    """stage1 killed after a checkpoint whose weights were then damaged on disk; the same command again.

    Built from a copy of the reference run: stage1's record set back to "running", its output and the
    later stages' records removed, the newest checkpoint deleted (so the next one is where it resumes),
    and bytes flipped inside that checkpoint's model.safetensors. A safe outcome is a clean refusal or a
    stage1 that starts over; resuming from the damaged weights shows up as eval numbers that differ.
    """
    run_dir = work / "ckpt-corrupt"
    shutil.rmtree(run_dir, ignore_errors=True)
    shutil.copytree(ref_dir, run_dir, symlinks=True)
    m = read_manifest(run_dir)
    later = list(m["stages"])[list(m["stages"]).index("stage1") + 1 :]
    for s in later:
        m["stages"].pop(s)
    m["stages"]["stage1"]["status"] = "running"
    m["complete"] = False
    (run_dir / "manifest.json").write_text(json.dumps(m, indent=2))
    shutil.rmtree(run_dir / "model" / "stage1", ignore_errors=True)
    ckpts = sorted(
        (d for d in (run_dir / "checkpoints" / "stage1").glob("checkpoint-*") if d.is_dir()),
        key=lambda d: int(d.name.split("-")[1]),
    )
    if len(ckpts) < 2:
        return {"skipped": "fewer than two stage1 checkpoints in the reference run"}
    shutil.rmtree(ckpts[-1])
    target = ckpts[-2] / "model.safetensors"
    data = bytearray(target.read_bytes())
    for _ in range(2000):  # in the tensor data, past the JSON header
        i = rng.randrange(len(data) // 2, len(data))
        data[i] ^= 0xFF
    target.write_bytes(bytes(data))
    cmd = command(config, run_dir, overrides) + until
    log(f"checkpoint corruption: flipped 2000 bytes of {target.relative_to(run_dir)}")
    rc, out, wall = run_to_end(cmd, work / "ckpt-corrupt.log")
    resumed = [line.strip() for line in out.splitlines() if "resuming from" in line]
    cmp = compare_to_reference(read_manifest(ref_dir), read_manifest(run_dir), ref_dir, run_dir) if rc == 0 else {}
    rec = {
        "damaged": str(target.relative_to(run_dir)),
        "rerun_rc": rc,
        "rerun_wall_s": round(wall, 1),
        "resumed_from_damaged": any(ckpts[-2].name in r for r in resumed),
        "resume_lines": resumed,
        "error": None if rc == 0 else out[-1500:],
        **cmp,
        "warnings": [line.strip() for line in out.splitlines() if "missing keys" in line or "unexpected keys" in line][
            :4
        ],
    }
    refused_cleanly = rc != 0 and "Traceback" not in out
    rec["safe"] = refused_cleanly or (rc == 0 and not rec["resumed_from_damaged"] and not cmp.get("eval_beyond_count"))
    log(
        f"  rc {rc}, resumed from damaged: {rec['resumed_from_damaged']}, eval max rel diff "
        f"{cmp.get('eval_max_rel_diff')}, safe={rec['safe']}"
    )
    shutil.rmtree(run_dir, ignore_errors=True)
    return rec


# --------------------------------------------------------------------------------------------------


# Mid-stage resume: enough shards that a kill lands between them (2 MB of text, 20k-token shards).
MIDSTAGE = (
    "corpus.byte_budget=2000000",
    "tokenization.shard_tokens=20000",
    "embedding.enabled=true",
    "embedding.fasttext.thread=1",
    "embedding.fasttext.epochs=1",
)


def _tree_digest(d: Path) -> dict[str, str]:
    import hashlib

    return {
        p.relative_to(d).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(d.rglob("*"))
        if p.is_file()
    }


def _kill_when(cmd: list[str], ready, logfile: Path, timeout: float = 900) -> dict[str, Any]:
    """Start `cmd`; SIGKILL its process group as soon as `ready()` returns a value (what it returned is kept)."""
    with open(logfile, "w") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=SRC, start_new_session=True)
    seen = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        seen = ready()
        if seen is not None:
            os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.02)
    else:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return {"killed_at": seen, "rc_first": proc.returncode}


def midstage_resume(work: Path, config: Path, model: str) -> dict[str, Any]:
    """SIGKILL inside tokenize (after some target shards) and inside embed (after the source side), rerun,
    and compare tokens/ and embeddings/ byte for byte with an uninterrupted run."""
    overrides = [f"models.source_model={model}", *MIDSTAGE]
    until = ["--until", "embed"]
    ref_dir = work / "midstage-reference"
    shutil.rmtree(ref_dir, ignore_errors=True)
    rc, out, wall = run_to_end(command(config, ref_dir, overrides) + until, work / "midstage-reference.log")
    if rc != 0:
        return {"error": f"reference run failed (rc {rc}): {out[-1500:]}"}
    ref_tokens, ref_emb = _tree_digest(ref_dir / "tokens"), _tree_digest(ref_dir / "embeddings")
    target_shards = json.loads((ref_dir / "tokens" / "target" / "train" / "meta.json").read_text())["shards"]
    cases = []

    def tokenize_ready(run_dir: Path):
        prog = run_dir / "partial" / "tokenize" / "tokens" / "target" / "train" / "progress.json"
        try:
            n = json.loads(prog.read_text())["shards"]
        except (OSError, ValueError):
            return None
        return f"target/train after shard {n} of {target_shards}" if n >= max(1, target_shards // 2) else None

    def embed_ready(run_dir: Path):
        return "embed after the source side" if (run_dir / "partial" / "embed" / "source.done.json").exists() else None

    for name, ready, needle in (
        ("tokenize", tokenize_ready, "resumed from shard"),
        ("embed", embed_ready, "embed source: kept from the interrupted run"),
    ):
        run_dir = work / f"midstage-{name}"
        shutil.rmtree(run_dir, ignore_errors=True)
        cmd = command(config, run_dir, overrides) + until
        log(f"mid-stage: kill inside {name}")
        info = _kill_when(cmd, lambda ready=ready, run_dir=run_dir: ready(run_dir), work / f"midstage-{name}.log")
        rc2, out2, wall2 = run_to_end(cmd, work / f"midstage-{name}.rerun.log")
        said = [line.split(": ", 1)[-1] for line in out2.splitlines() if needle in line]
        same_tokens = rc2 == 0 and _tree_digest(run_dir / "tokens") == ref_tokens
        same_emb = rc2 == 0 and _tree_digest(run_dir / "embeddings") == ref_emb
        cases.append(
            {
                "stage": name,
                **info,
                "rerun_rc": rc2,
                "rerun_wall_s": round(wall2, 1),
                "rerun_said": said[:3],
                "tokens_identical": same_tokens,
                "embeddings_identical": same_emb,
                "ok": rc2 == 0 and bool(said) and same_tokens and same_emb and info["killed_at"] is not None,
            }
        )
        log(
            f"  killed at {info['killed_at']}; rerun rc {rc2}: {said[:1]}; identical tokens {same_tokens}, "
            f"embeddings {same_emb}"
        )
        shutil.rmtree(run_dir, ignore_errors=True)
    return {
        "config": str(config.relative_to(REPO)) if config.is_relative_to(REPO) else str(config),
        "overrides": overrides,
        "reference_wall_s": round(wall, 1),
        "target_shards": target_shards,
        "cases": cases,
    }


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.faults", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one kill per stage, 100 fuzz cases per property")
    ap.add_argument("--kills-per-stage", type=int, default=3)
    ap.add_argument("--fuzz-examples", type=int, default=None)
    ap.add_argument("--stages", default=",".join(KILL_STAGES), help="comma-separated stages to kill in")
    ap.add_argument("--no-fuzz", action="store_true")
    ap.add_argument("--no-corrupt", action="store_true")
    ap.add_argument("--only-fuzz", action="store_true", help="rerun just the fuzz part into the existing results")
    ap.add_argument(
        "--render",
        "--rewrite",
        action="store_true",
        help="only rewrite the .md files from their .json records (every faults*.json beside --out)",
    )
    ap.add_argument(
        "--only-checkpoint",
        action="store_true",
        help="add just the damaged-checkpoint scenario to an existing results file, reusing WORK/reference",
    )
    ap.add_argument(
        "--only-midstage",
        action="store_true",
        help="add just the mid-stage resume scenario (kill inside tokenize / embed) to the results file",
    )
    ap.add_argument("--config", default=str(REPO / "configs" / "demo-tiny.yaml"))
    ap.add_argument("--until", default=None, help="last stage (when later stages do not work yet)")
    ap.add_argument("--model", choices=("auto", "demo", "tiny"), default="auto")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--frac",
        default="0.05,0.6",
        help="kill after a uniform fraction in this range of the stage's reference wall time "
        "(e.g. 0.6,0.95 to kill training after its first checkpoints)",
    )
    ap.add_argument("--work", default="/tmp/vocabadapt-faults", help="scratch folder for the run directories")
    ap.add_argument("--out", default=str(RESULTS / "faults.md"))
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = Path(args.out)
    if args.render:
        for name, text in rendered_files(out.parent).items():
            (out.parent / name).write_text(text)
        return 0
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    examples = args.fuzz_examples or (100 if args.quick else 300)
    if args.only_fuzz:
        results = read_json(out.with_suffix(".json"))
        results["fuzz"] = fuzz(examples, work)
        write_results(results, out, partial=False)
        return 0 if results["fuzz"]["pytest_rc"] == 0 else 1
    if args.only_checkpoint:
        return only_checkpoint(args, work, out)
    if args.only_midstage:
        return only_midstage(args, work, out)
    return full_run(args, work, out, examples, list(argv if argv is not None else sys.argv[1:]))


def only_checkpoint(args: argparse.Namespace, work: Path, out: Path) -> int:
    """--only-checkpoint: the damaged-checkpoint scenario into an existing record, reusing WORK/reference."""
    global SRC
    SRC = work / "src" if (work / "src" / "vocabadapt").is_dir() else REPO
    results = read_json(out.with_suffix(".json"))
    model, _ = choose_model(args.model, work)
    overrides = [f"models.source_model={model}", *TINY]
    until = ["--until", args.until] if args.until else []
    results["checkpoint_corruption"] = checkpoint_corruption(
        work / "reference", work, Path(args.config), overrides, until, random.Random(args.seed)
    )
    write_results(results, out, partial=False)
    return 0 if results["checkpoint_corruption"].get("safe", True) else 1


def only_midstage(args: argparse.Namespace, work: Path, out: Path) -> int:
    """--only-midstage: the kill-inside-tokenize/embed scenario into the record (a new one when there is none)."""
    global SRC
    SRC = snapshot_code(work)
    results = read_json(out.with_suffix(".json")) if out.with_suffix(".json").exists() else new_record(args)
    model, model_note = choose_model(args.model, work)
    results.setdefault("code", f"{_git_commit()}, vocabadapt/ copied at {utc_now()}")
    results.setdefault("model", model_note)
    results["midstage"] = midstage_resume(work, Path(args.config), model)
    results.setdefault("finished", utc_now())
    write_results(results, out, partial=False)
    return 0 if all(c["ok"] for c in results["midstage"].get("cases", [{"ok": False}])) else 1


def new_record(args: argparse.Namespace, argv: list[str] | None = None) -> dict[str, Any]:
    return {
        "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "quick": args.quick,
        "argv": list(argv if argv is not None else sys.argv[1:]),
    }


def full_run(args: argparse.Namespace, work: Path, out: Path, examples: int, argv: list[str]) -> int:
    """Fuzz, the reference run, the kills, the corruptions, the damaged checkpoint and the mid-stage kills."""
    global SRC
    rng = random.Random(args.seed)
    config = Path(args.config)
    results = new_record(args, argv)
    if not args.no_fuzz:
        log(f"fuzz: {examples} cases per property")
        results["fuzz"] = fuzz(examples, work)
        log(f"fuzz: rc {results['fuzz']['pytest_rc']}, {results['fuzz']['counts']}")
    SRC = snapshot_code(work)
    results["code"] = f"{_git_commit()}, vocabadapt/ copied at {utc_now()}"
    model, model_note = choose_model(args.model, work)
    overrides = [f"models.source_model={model}", *TINY]
    until = ["--until", args.until] if args.until else []
    results.update(model=model_note, overrides=overrides, until=args.until)
    run = Scenario(config, overrides, until, work, work / "reference", args.until)
    ref = reference_run(run, results)
    kills_per_stage = 1 if args.quick else args.kills_per_stage
    stages = [s for s in args.stages.split(",") if s in results["reference"]["stage_wall_s"]]
    frac = tuple(map(float, args.frac.split(",")))
    results["kills"] = kill_scenarios(run, ref, results, stages, kills_per_stage, frac, rng, out)
    results["corruptions"] = [] if args.no_corrupt else corruption_scenarios(run, ref, results, rng, out)
    if not args.no_corrupt and (run.ref_dir / "checkpoints" / "stage1").is_dir():
        results["checkpoint_corruption"] = checkpoint_corruption(run.ref_dir, work, config, overrides, until, rng)
    results["midstage"] = midstage_resume(work, config, model)
    results["finished"] = utc_now()
    write_results(results, out, partial=False)
    log(f"wrote {out}")
    bad = [k for k in results["kills"] if not k["survived"]] + [c for c in results["corruptions"] if not c["recovered"]]
    return 1 if bad else 0


@dataclass(frozen=True)
class Scenario:
    """What every run of the full benchmark shares: the config, its overrides, the stage to stop at and the
    folders (scratch, reference run)."""

    config: Path
    overrides: list[str]
    until: list[str]  # ["--until", STAGE] or []
    work: Path
    ref_dir: Path
    until_stage: str | None

    def command(self, run_dir: Path) -> list[str]:
        return command(self.config, run_dir, self.overrides) + self.until

    def complete(self, manifest: dict[str, Any]) -> bool:
        stages = manifest.get("stages", {})
        return bool(
            manifest.get("complete") or (self.until_stage and stages.get(self.until_stage, {}).get("status") == "done")
        )


def reference_run(run: Scenario, results: dict[str, Any]) -> dict[str, Any]:
    """The uninterrupted run every other one is compared with; records it in results["reference"]."""
    shutil.rmtree(run.ref_dir, ignore_errors=True)
    cmd_ref = run.command(run.ref_dir)
    log("reference run")
    rc, out, wall = run_to_end(cmd_ref, run.work / "reference.log")
    if rc != 0:
        raise SystemExit(f"reference run failed (rc {rc}); see {run.work / 'reference.log'}:\n{out[-3000:]}")
    ref = read_manifest(run.ref_dir)
    stage_wall = {s: rec.get("wall_s", 0.0) for s, rec in ref["stages"].items()}
    results["reference"] = {
        "wall_s": round(wall, 1),
        "stage_wall_s": stage_wall,
        "command": " ".join(cmd_ref).replace(str(run.ref_dir), "RUN_DIR"),
    }
    log(f"reference: {wall:.0f}s, stages {stage_wall}")
    return ref


def kill_scenarios(
    run: Scenario,
    ref: dict[str, Any],
    results: dict[str, Any],
    stages: list[str],
    kills_per_stage: int,
    frac: tuple[float, ...],
    rng: random.Random,
    out: Path,
) -> list[dict[str, Any]]:
    """SIGKILL inside each stage at a random point, then the same command again; one record per kill."""
    kills: list[dict[str, Any]] = []
    stage_wall = results["reference"]["stage_wall_s"]
    for stage in stages:
        for k in range(kills_per_stage):
            fraction = rng.uniform(*frac)  # reference times are noisy: the landed stage is recorded
            delay = fraction * stage_wall[stage]
            run_dir = run.work / f"kill-{stage}-{k}"
            shutil.rmtree(run_dir, ignore_errors=True)
            log(f"kill in {stage} after {delay:.2f}s ({fraction:.0%} of its reference time)")
            rec = kill_and_rerun(run, ref, stage, delay, run_dir, run.work / f"kill-{stage}-{k}")
            kills.append(rec)
            log(
                f"  landed in {rec['landed']}, rerun rc {rec['rerun_rc']} in {rec['rerun_wall_s']:.0f}s, "
                f"survived={rec['survived']}, differ={rec.get('deterministic_differ')}/{rec.get('weights_differ')}, "
                f"eval max rel diff {rec.get('eval_max_rel_diff')}"
            )
            shutil.rmtree(run_dir, ignore_errors=True)
            write_results(results | {"kills": kills}, out, partial=True)
    return kills


def kill_and_rerun(
    run: Scenario, ref: dict[str, Any], stage: str, delay: float, run_dir: Path, log_stem: Path
) -> dict[str, Any]:
    """One kill in `stage` after `delay` seconds, what it left, and the rerun compared with the reference."""
    cmd = run.command(run_dir)
    info = kill_once(cmd, run_dir, stage, delay, log_stem.with_suffix(".log"))
    after = read_manifest(run_dir)
    landed = info["landed"]
    cut_short_done = bool(landed) and after.get("stages", {}).get(landed, {}).get("status") == "done"
    stale_done = check_done_records(run_dir, run.config, run.overrides)
    temps = leftover_temps(run_dir)
    rc2, out2, wall2 = run_to_end(cmd, log_stem.with_suffix(".rerun.log"))
    final = read_manifest(run_dir)
    events = stage_events(out2)
    cmp = compare_to_reference(ref, final, run.ref_dir, run_dir) if rc2 == 0 else {}
    complete = run.complete(final)
    rec = {
        "target": stage,
        "delay_s": round(delay, 2),
        **info,
        "cut_short_recorded_done": cut_short_done,
        "done_records_not_matching": stale_done,
        "temp_leftovers_after_kill": temps,
        "rerun_rc": rc2,
        "rerun_wall_s": round(wall2, 1),
        "rerun_complete": complete,
        "rerun_redid_landed": events.get(landed, "").startswith("ran") if landed else None,
        "rerun_events": events,
        **cmp,
        "rerun_resumed": [
            line.split("resuming from ")[1].split("/")[-1] for line in out2.splitlines() if "resuming from" in line
        ],
        "rerun_error": None if rc2 == 0 else out2[-1500:],
    }
    rec["survived"] = (
        rc2 == 0
        and complete
        and not cut_short_done
        and not stale_done
        and not cmp.get("deterministic_differ")
        and not cmp.get("eval_beyond_count")
    )
    return rec


def corruption_scenarios(
    run: Scenario, ref: dict[str, Any], results: dict[str, Any], rng: random.Random, out: Path
) -> list[dict[str, Any]]:
    """Damage one artifact of a copy of the reference run at a time, then the same command; one record each."""
    corrupts: list[dict[str, Any]] = []
    for rel, how in CORRUPTIONS:
        if not (run.ref_dir / rel).exists():
            continue
        run_dir = run.work / "corrupt"
        shutil.rmtree(run_dir, ignore_errors=True)
        shutil.copytree(run.ref_dir, run_dir, symlinks=True)
        # The copy's manifest names the reference's paths nowhere (all paths are run-dir relative).
        what = corrupt(run_dir, rel, how, rng)
        stage = STAGE_OF[rel.split("/")[0] if not rel.startswith("model/") else "/".join(rel.split("/")[:2])]
        log(f"corrupt: {what}")
        rc3, out3, wall3 = run_to_end(run.command(run_dir), run.work / "corrupt.log")
        events = stage_events(out3)
        cmp = compare_to_reference(ref, read_manifest(run_dir), run.ref_dir, run_dir) if rc3 == 0 else {}
        detected = events.get(stage, "").startswith("ran") and "fingerprint" in events.get(stage, "")
        rec = {
            "artifact": rel,
            "damage": what,
            "stage": stage,
            "rerun_rc": rc3,
            "rerun_wall_s": round(wall3, 1),
            "detected": detected,
            "reason": events.get(stage),
            "rerun_events": events,
            **cmp,
            "rerun_error": None if rc3 == 0 else out3[-1500:],
        }
        rec["recovered"] = (
            rc3 == 0 and detected and not cmp.get("deterministic_differ") and not cmp.get("eval_beyond_count")
        )
        corrupts.append(rec)
        log(f"  detected={detected} ({events.get(stage)}), rc {rc3}, recovered={rec['recovered']}")
        shutil.rmtree(run_dir, ignore_errors=True)
        write_results(results | {"corruptions": corrupts}, out, partial=True)
    return corrupts


# --------------------------------------------------------------------------------------------------
# the results file


def _git_commit() -> str:
    """The code line of faults.md: HEAD, noting uncommitted changes to tracked files."""
    return git_commit() + (" (+ uncommitted changes)" if git_dirty(untracked=False) else "")


def _machine() -> str:
    """The machine line of faults.md."""
    cpu = cpu_model(platform.processor() or platform.machine())
    return f"{cpu}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}, Python {platform.python_version()}"


def write_results(r: dict[str, Any], out: Path, partial: bool) -> None:
    """Write the record `r` to out's .json (with this machine's line, once) and its rendering to `out`."""
    r.setdefault("machine", _machine())
    write_json(out.with_suffix(".json"), r, indent=2)
    write_markdown(out, render(r, partial))


def render(r: dict[str, Any], partial: bool = False) -> list[Block]:
    """The results file of record `r` as Markdown blocks (the record alone decides every byte)."""
    blocks: list[Block] = [("h", 1, "Fault-injection results")]
    if partial:
        blocks.append(("p", "**PARTIAL: the benchmark was still running when this was written.**"))
    blocks += _header_blocks(r) + _unclean_blocks(r) + _kill_blocks(r.get("kills", []))
    blocks += _corruption_blocks(r.get("corruptions", []))
    blocks += _checkpoint_blocks(r.get("checkpoint_corruption")) + _midstage_blocks(r.get("midstage"))
    return blocks + _fuzz_blocks(r.get("fuzz"))


def _header_blocks(r: dict[str, Any]) -> list[Block]:
    argv = (" " + " ".join(r["argv"])) if r.get("argv") else (" --quick" if r.get("quick") else "")
    lines = [
        f"Command: `python -m benchmarks.faults{argv}` (from the repository root, in the project venv)",
        f"Code: {r.get('code', '?')} (every run of this benchmark imports that one snapshot)",
        f"Machine: {r.get('machine', '?')}",
        f"Date: {r.get('started')} to {r.get('finished', '(running)')} UTC",
        f"Source model: {r.get('model', '?')}",
    ]
    # Two trailing spaces: a Markdown line break, so the header reads as lines, not one paragraph.
    header = (
        "  \n".join(lines)
        + "  \n"
        + (
            f"Pipeline command (every kill, rerun and corruption uses exactly this): "
            f"`{r.get('reference', {}).get('command', '?')}`"
        )
    )
    blocks: list[Block] = [("p", header)]
    if r.get("until"):
        blocks.append(("p", f"Stages after `{r['until']}` were not run (`--until {r['until']}`)."))
    return blocks


def unclean_findings(r: dict[str, Any]) -> list[str]:
    """Every outcome of record `r` that was not clean, one line each (the results file lists them first)."""
    unclean = [
        f"kill in {k['target']} (landed in {k['landed']}) not survived; see the kill table"
        for k in r.get("kills", [])
        if not k["survived"]
    ]
    unclean += [
        f"corruption of {c['artifact']} not detected/recovered" for c in r.get("corruptions", []) if not c["recovered"]
    ]
    ck = r.get("checkpoint_corruption") or {}
    if ck and not ck.get("skipped") and not ck.get("safe"):
        unclean.append(
            "a damaged stage-1 checkpoint was resumed from without any check (training continued on the "
            "damaged weights; the final eval numbers moved by up to "
            f"{(ck.get('eval_max_rel_diff') or 0):.1%}); checkpoints carry no fingerprint"
        )
    fz = r.get("fuzz") or {}
    for key, n in sorted(fz.get("counts", {}).items()):
        if "unclean" in key and n:
            kind = key.split("_unclean")[0]
            total = next((v for k2, v in fz["counts"].items() if k2.startswith(kind) and "unclean" not in k2), "?")
            unclean.append(
                f"fuzz {kind}: {n} of {total} cases ended in an exception that is not the project's own "
                f"({key.split('unclean_')[1].replace('_', '.')}); the fix is named in the test's xfail reason"
            )
    unclean += [
        f"test: {line}"
        for line in fz.get("pytest_tail", [])
        if line.startswith(("XFAIL", "FAILED", "ERROR")) and "gzip" not in line
    ]
    return unclean


def _unclean_blocks(r: dict[str, Any]) -> list[Block]:
    # `unclean_note` (in the JSON, written after a fix) replaces the list found by the run: it says what was
    # found and what fixed it, where the computed list would still report the finding as open.
    unclean = [r["unclean_note"]] if r.get("unclean_note") else unclean_findings(r)
    blocks: list[Block] = [("h", 2, "Unclean failures found"), ("p", _bullets(unclean) if unclean else "None.")]
    if r.get("fixed"):
        blocks += [
            ("p", "Found by this benchmark or its tests and fixed since (rerun clean):"),
            ("p", _bullets(r["fixed"])),
        ]
    ref = r.get("reference")
    if ref:
        walls = ", ".join(f"{k} {v}" for k, v in ref["stage_wall_s"].items())
        blocks.append(("p", f"Reference run: {ref['wall_s']} s; stage wall times (s): {walls}"))
    return blocks


def _bullets(items: list[str]) -> str:
    return "\n".join(f"- {x}" for x in items)


def _kill_summary_rows(kills: list[dict[str, Any]]) -> list[list[Any]]:
    rows = []
    for stage in KILL_STAGES:
        ks = [k for k in kills if k["target"] == stage]
        if ks:
            rows.append(
                [
                    stage,
                    len(ks),
                    sum(k["landed"] == stage for k in ks),
                    sum(k["survived"] for k in ks),
                    sum(bool(k["cut_short_recorded_done"] or k["done_records_not_matching"]) for k in ks),
                    sum(bool(k.get("deterministic_differ")) for k in ks),
                    sum(bool(k.get("weights_differ")) for k in ks),
                    f"{max((k.get('eval_max_rel_diff') or 0.0) for k in ks):.2e}",
                    sum(k["temp_leftovers_after_kill"] for k in ks),
                ]
            )
    return rows


def _kill_rows(kills: list[dict[str, Any]]) -> list[list[Any]]:
    rows = []
    for k in kills:
        ran = ", ".join(s for s, e in k.get("rerun_events", {}).items() if e.startswith("ran"))
        diff = ", ".join(k.get("deterministic_differ", []) + k.get("weights_differ", [])) or "none"
        resumed = ", ".join(k.get("rerun_resumed") or []) or "-"
        rows.append(
            [k["target"], k["delay_s"], k["landed"], k["rerun_rc"], k["rerun_redid_landed"], ran, resumed, diff]
            + [f"{(k.get('eval_max_rel_diff') or 0):.2e}"]
        )
    return rows


def _kill_blocks(kills: list[dict[str, Any]]) -> list[Block]:
    if not kills:
        return []
    survived = sum(k["survived"] for k in kills)
    blocks: list[Block] = [
        ("h", 2, "SIGKILL inside a stage, then the same command again"),
        (
            "p",
            "A kill is SIGKILL to the whole process group at a random point of the target stage (the stage "
            "actually running at that moment is the one counted). *Survived*: the rerun exits 0 and completes, "
            "no cut-short stage was recorded done, every stage recorded done after the kill still matched its "
            "fingerprints, deterministic stages' outputs are bitwise equal to the reference, and every "
            f"eval/summary.json number is within relative {EVAL_RTOL} of the reference.",
        ),
        ("table", KILL_SUMMARY_COLUMNS, _kill_summary_rows(kills)),
        (
            "p",
            "Temp files left by a kill are `.tmp-*` names from vocabadapt.io's atomic writes: never taken for an "
            "artifact (fingerprints skip them) but also never removed by a later run.",
        ),
        ("p", f"Total: {len(kills)} kills injected, {survived} survived, {len(kills) - survived} not."),
        (
            "p",
            "Outputs that carry wall times (train/*, eval, report) differ byte-wise between any two runs and are "
            "compared through the eval/summary.json numbers instead.",
        ),
        ("p", "Each kill:"),
        ("table", KILL_COLUMNS, _kill_rows(kills)),
    ]
    for k in kills:
        if not k["survived"]:
            blocks.append(
                (
                    "p",
                    f"**Not survived: kill in {k['target']}** (landed {k['landed']}): rc {k['rerun_rc']}; "
                    f"done records not matching: {k['done_records_not_matching']}; eval beyond tolerance: "
                    f"{k.get('eval_beyond_tol')}",
                )
            )
            blocks.append(("code", (k.get("rerun_error") or "")[-1200:], ""))
    return blocks


KILL_SUMMARY_COLUMNS = [
    "stage",
    "kills injected",
    "landed in stage",
    "survived",
    "cut-short stage recorded done",
    "deterministic outputs differing",
    "trained weights differing bitwise",
    "eval max rel. diff",
    "temp files left by the kill",
]
KILL_COLUMNS = [
    "target",
    "delay s",
    "landed",
    "rerun rc",
    "rerun redid landed stage",
    "stages the rerun ran",
    "training resumed from",
    "outputs differing bitwise (deterministic, weights)",
    "eval max rel. diff",
]


def _corruption_blocks(cs: list[dict[str, Any]]) -> list[Block]:
    if not cs:
        return []
    rows = [
        [c["artifact"], c["damage"], c["stage"], c["detected"], c["reason"]]
        + [", ".join(s for s, e in c.get("rerun_events", {}).items() if e.startswith("ran"))]
        + [c["rerun_rc"], c["recovered"]]
        for c in cs
    ]
    headers = ["artifact", "damage", "stage", "detected", "reason given", "stages rerun", "rerun rc", "recovered"]
    return [
        ("h", 2, "Corrupted artifacts"),
        (
            "p",
            "A copy of the finished reference run gets one artifact damaged, then the same command runs again. "
            "*Detected*: the rerun redid the owning stage because its output differs from the manifest "
            "fingerprint; *recovered*: it exited 0 and the deterministic outputs and eval numbers equal the "
            "reference.",
        ),
        ("table", headers, rows),
        (
            "p",
            f"Total: {len(cs)} corruptions, {sum(c['detected'] for c in cs)} detected, "
            f"{sum(c['recovered'] for c in cs)} recovered.",
        ),
    ]


def _checkpoint_blocks(ck: dict[str, Any] | None) -> list[Block]:
    if not ck:
        return []
    blocks: list[Block] = [
        ("h", 2, "A damaged training checkpoint"),
        (
            "p",
            "stage1 interrupted after a checkpoint, then 2000 bytes flipped inside that checkpoint's "
            "model.safetensors (see `checkpoint_corruption` in benchmarks/faults.py), then the same command. "
            "Safe: a clean refusal, or a stage1 that does not resume from the damaged weights.",
        ),
    ]
    if ck.get("skipped"):
        return blocks + [("p", f"Skipped: {ck['skipped']}")]
    items = [
        f"damaged: `{ck['damaged']}`; rerun exit code {ck['rerun_rc']}",
        f"resumed from the damaged checkpoint: **{ck['resumed_from_damaged']}** ({'; '.join(ck['resume_lines'])})",
        f"eval numbers vs the reference: max relative difference {(ck.get('eval_max_rel_diff') or 0):.2e}, "
        f"{ck.get('eval_beyond_count', 0)} beyond {EVAL_RTOL}; trained weights differing: {ck.get('weights_differ')}",
        f"warnings printed on resume: {ck['warnings'] or 'none'}",
        f"**safe: {ck['safe']}**",
    ]
    return blocks + [("p", _bullets(items))]


def _midstage_blocks(ms: dict[str, Any] | None) -> list[Block]:
    if not ms:
        return []
    blocks: list[Block] = [
        ("h", 2, "Kill inside a long stage, then resume"),
        (
            "p",
            f"`--only-midstage` (also part of the full run): {ms.get('config', 'configs/demo.yaml')} with "
            f"`{' '.join('--set ' + o for o in ms.get('overrides', []))} --until embed`; SIGKILL of the whole "
            "process group once the target side's training split has half its shards (tokenize) or once the "
            "source side's vectors are finished (embed); then the same command again. Identical: every file of "
            "tokens/ and embeddings/ has the sha256 of the uninterrupted reference run. fastText itself trains "
            "all epochs in one call, so a kill inside one side's training redoes that side (see "
            "vocabadapt/stages/embed.py).",
        ),
    ]
    if ms.get("error"):
        return blocks + [("p", f"Not run: {ms['error']}")]
    headers = ["killed in", "killed at", "rerun rc", "rerun said", "tokens identical", "embeddings identical", "ok"]
    rows = [
        [c["stage"], c["killed_at"], c["rerun_rc"], "; ".join(c["rerun_said"])]
        + [c["tokens_identical"], c["embeddings_identical"], c["ok"]]
        for c in ms["cases"]
    ]
    return blocks + [("table", headers, rows)]


def _fuzz_blocks(fz: dict[str, Any] | None) -> list[Block]:
    if not fz:
        return []
    return [
        ("h", 2, "Fuzzed inputs (hypothesis, deterministic seeds)"),
        (
            "p",
            f"`VOCABADAPT_FUZZ_EXAMPLES={fz['examples_per_property']} pytest {' '.join(fz.get('tests', OLD_FUZZ_TESTS))}` "
            f"(exit code {fz['pytest_rc']}, {fz['wall_s']} s; code {fz.get('code', 'as above')}, "
            f"{fz.get('date', '')}). An *unclean failure* is any outcome other than "
            "success or the project's own error (exit 2 with a message naming the key path / file / record).",
        ),
        ("table", ["input kind", "cases run"], [[k, v] for k, v in sorted(fz["counts"].items())]),
        ("p", "pytest summary:"),
        ("code", "\n".join(fz["pytest_tail"]), ""),
    ]


def rendered_files(results: Path) -> dict[str, str]:
    """{results file name: Markdown} for every faults*.json in `results` (what --render writes)."""
    return {
        p.with_suffix(".md").name: markdown_text(render(read_json(p))) for p in sorted(results.glob("faults*.json"))
    }


if __name__ == "__main__":
    raise SystemExit(main())
