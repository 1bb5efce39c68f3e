"""The one harness every benchmark shares: progress lines, the commit and machine of a results file,
CPU time and memory of this process, sizes on disk, child processes (the vocabadapt CLI, a benchmark
module, or a child that prints one JSON line), and results files written as Markdown blocks through
vocabadapt.report.markdown.

Benchmarks run as modules from the repository root (`python -m benchmarks.X`), so the repository's own
vocabadapt is the one imported and measured, and no script edits sys.path. Children run with
cwd = the repository root for the same reason.

A script that writes a results file from a JSON record has `render(res) -> list[Block]` (pure: the JSON
alone decides every byte) and a `--render` flag; tests/benchmarks/test_render.py pins each committed .md.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vocabadapt.report.markdown import Block, render_markdown

ROOT = Path(__file__).resolve().parents[1]  # the repository root
RESULTS = ROOT / "benchmarks" / "results"  # the committed results files
CACHE = ROOT / "benchmarks" / "cache"  # scratch and run directories (git-ignored)


# --------------------------------------------------------------------------------------------------
# progress and files


def log(msg: str, file=None) -> None:
    """Print `[HH:MM:SS] msg` at once (to stdout, or to `file`, e.g. sys.stderr)."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=file, flush=True)


def read_json(p: Path):
    """The parsed contents of the JSON file at p."""
    return json.loads(Path(p).read_text())


def du(path: Path) -> int:
    """Bytes in all files below path (0 when it does not exist)."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def utc_now(fmt: str | None = None) -> str:
    """The current UTC time, ISO 8601 to the second, or formatted by strftime `fmt`."""
    now = dt.datetime.now(dt.timezone.utc)
    return now.strftime(fmt) if fmt else now.isoformat(timespec="seconds")


# --------------------------------------------------------------------------------------------------
# the machine


def cpu_model(default: str = "?") -> str:
    """The CPU's model name from /proc/cpuinfo, or `default` where there is none."""
    try:
        with open("/proc/cpuinfo") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), default)
    except OSError:
        return default


def ram_gib() -> float:
    """Total physical memory in GiB (MemTotal of /proc/meminfo; 0 where it cannot be read)."""
    try:
        with open("/proc/meminfo") as f:
            return next((int(line.split()[1]) / 2**20 for line in f if line.startswith("MemTotal")), 0)
    except OSError:
        return 0


def load_average() -> str:
    """The 1-, 5- and 15-minute load averages as `a, b, c` with one decimal each."""
    return ", ".join(f"{x:.1f}" for x in os.getloadavg())


def machine() -> str:
    """One line on host, CPU, cores, RAM, Python and the load average now (quality.py's machine line)."""
    return (
        f"{platform.node() or 'vm'}: {cpu_model()}, {os.cpu_count()} cores, {ram_gib():.0f} GiB RAM, "
        f"Python {platform.python_version()}, load average at start {load_average()}"
    )


# --------------------------------------------------------------------------------------------------
# the commit


def git_commit() -> str:
    """The short hash of the repository's HEAD, or "?" when git cannot tell."""
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    except OSError:
        return "?"
    return sha.stdout.strip() or "?"


def git_dirty(paths: Sequence[str] = (), untracked: bool = True) -> bool:
    """Whether `git status` lists changes (in `paths`, relative to the root, when given; untracked files too)."""
    cmd = ["git", "status", "--porcelain"] + ([] if untracked else ["--untracked-files=no"])
    try:
        out = subprocess.run([*cmd, "--", *paths], cwd=ROOT, capture_output=True, text=True).stdout
    except OSError:
        return False
    return bool(out.strip())


def git_head(script: str | Path | None = None) -> str:
    """HEAD's short hash, noting uncommitted changes in vocabadapt/ or `script` (default: the running one)."""
    paths = ["vocabadapt"]
    script = Path(script or sys.argv[0]).resolve()
    if script.is_file() and script.is_relative_to(ROOT):
        paths.append(script.relative_to(ROOT).as_posix())
    return git_commit() + (" (+ uncommitted changes in vocabadapt/ or this script)" if git_dirty(paths) else "")


# --------------------------------------------------------------------------------------------------
# time and memory of this process


def cpu_seconds() -> float:
    """User + system CPU seconds of this process so far (all threads)."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _status_mb(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MiB (VmHWM; NaN where /proc does not say)."""
    return _status_mb("VmHWM")


def rss_mb() -> float:
    """Resident memory of this process now in MiB (VmRSS; NaN where /proc does not say)."""
    return _status_mb("VmRSS")


# --------------------------------------------------------------------------------------------------
# child processes


def module_command(name: str, *args: str) -> list[str]:
    """The argv that runs benchmark module `name` (e.g. "align_speed") with `args`; run it with cwd=ROOT."""
    return [sys.executable, "-m", f"benchmarks.{name}", *args]


def run_cli(args: list[str], log_file: Path, env: dict | None = None) -> float:
    """Run the vocabadapt CLI; return its wall seconds; raise with the log tail on failure."""
    t = time.perf_counter()
    with open(log_file, "a") as f:
        f.write(f"\n$ vocabadapt {' '.join(args)}\n")
        f.flush()
        rc = subprocess.run(
            [sys.executable, "-m", "vocabadapt", *args],
            cwd=ROOT,
            stdout=f,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        ).returncode
    if rc != 0:
        tail = log_file.read_text()[-3000:]
        raise SystemExit(f"vocabadapt {' '.join(args)} failed (exit {rc}); log {log_file}:\n{tail}")
    return time.perf_counter() - t


def json_child(cmd: list[str], what: str, env: dict | None = None, cwd: Path = ROOT) -> Any:
    """Run cmd in `cwd` (the repository root); return the JSON value on its last stdout line; raise naming `what`."""
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------------------------------
# results files


def markdown_text(blocks: list[Block]) -> str:
    """The Markdown of `blocks` (vocabadapt.report.markdown's renderer), ending in exactly one newline."""
    return render_markdown(blocks).rstrip("\n") + "\n"


def write_markdown(path: Path, blocks: list[Block]) -> Path:
    """Write `blocks` as Markdown to `path` (parents created); return path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(markdown_text(blocks))
    return path


def write_json(path: Path, record: Any, indent: int = 1) -> Path:
    """Write `record` as indented JSON to `path` (non-JSON values as str); return path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=indent, default=str))
    return path
