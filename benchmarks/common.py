"""Helpers every benchmark script shares: progress lines, the commit and machine of a results file,
CPU time and memory of this process, sizes on disk, and child processes (the vocabadapt CLI, or a
child that prints one JSON line).

Scripts run as `python benchmarks/X.py`, which puts benchmarks/ first on sys.path, so they
`import common`. Nothing here imports vocabadapt: a script's own imports decide which copy it measures.
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

ROOT = Path(__file__).resolve().parents[1]  # the repository root


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


def vocabadapt(args: list[str], log_file: Path, env: dict | None = None) -> float:
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


def json_child(cmd: list[str], what: str, env: dict | None = None) -> dict[str, Any]:
    """Run cmd in the repository root; return the JSON object on its last stdout line; raise naming `what`."""
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
