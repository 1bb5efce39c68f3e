"""manifest.json: one record per stage, fingerprints of what it read and wrote, up-to-date checks.

A stage is skipped on a rerun when its record says done, the config keys it depends on hash the
same, the upstream stages' outputs are the ones it consumed, and its own outputs still match their
fingerprints. Anything else reruns it, which changes its outputs' fingerprints and so reruns what
reads them. The record is written only after the stage finished, so a stage killed at any point is
never taken for finished.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib
import platform
import resource
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..io import fingerprint
from .context import StageSpec
from .layout import RunLayout

if TYPE_CHECKING:
    from ..config import Config


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def versions() -> dict[str, str]:
    """Versions of Python and the libraries that shape a stage's output."""
    out = {"python": platform.python_version()}
    for mod in ("vocabadapt", "torch", "transformers", "tokenizers", "peft", "accelerate", "numpy"):
        with contextlib.suppress(Exception):
            out[mod] = importlib.import_module(mod).__version__
    return out


def reset_peak_rss() -> None:
    # Linux: writing 5 to clear_refs resets VmHWM, so each stage reports its own peak.
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def peak_rss_mb() -> float:
    """Peak resident memory of this process (since reset_peak_rss) and of its finished children, MB."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return max(int(line.split()[1]) / 1024, children)
    return max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, children)


def output_prints(layout: RunLayout, spec: StageSpec, how: str) -> dict[str, Any]:
    """{run-relative output name: fingerprint} of a stage's outputs."""
    return {name: fingerprint(layout.root / name, how) for name in spec.output_names(layout)}


def stage_is_current(layout: RunLayout, spec: StageSpec, config: Config, manifest: dict) -> tuple[bool, str]:
    """Whether the stage's record still holds; the reason when not."""
    rec = manifest.get("stages", {}).get(spec.name)
    if not rec or rec.get("status") != "done":
        return False, "not finished" if rec else "not run"
    if rec.get("config_hash") != spec.config_hash(config):
        return False, "its config keys changed"
    for up in spec.inputs:
        up_rec = manifest["stages"].get(up)
        if up_rec is None or rec.get("inputs", {}).get(up) != up_rec.get("outputs"):
            return False, f"its input from '{up}' changed"
    now_prints = output_prints(layout, spec, config.pipeline.checkpoint_fingerprints)
    if now_prints != rec.get("outputs"):
        changed = [o for o in now_prints if now_prints.get(o) != rec.get("outputs", {}).get(o)]
        return False, f"its output {', '.join(changed)} is missing or differs from its fingerprint"
    return True, "up to date"


def start_record(spec: StageSpec, config: Config, manifest: dict) -> dict[str, Any]:
    """The record of a stage that starts now (status running; outputs come when it is done)."""
    keys, facts = spec.config_dependence(config)
    return {
        "status": "running",
        "started": now(),
        "config_keys": list(keys),
        **({"config_facts": facts} if facts else {}),
        "config_hash": spec.config_hash(config),
        "inputs": {up: manifest["stages"].get(up, {}).get("outputs") for up in spec.inputs},
    }


def config_differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two config dumps."""
    keys = sorted(set(old) | set(new))
    out = []
    for k in keys:
        a, b = old.get(k), new.get(k)
        path = f"{prefix}{k}"
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_differences(a, b, path + ".")
        elif a != b:
            out.append(path)
    return out
