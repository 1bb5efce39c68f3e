"""Tiny deterministic models, tokenizers and configs for tests (seconds, no downloads).

The builders live in vocabadapt.testing (benchmarks use them too) and are re-exported here; what only tests
need (fuzz counts, the offline environment) is defined below.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vocabadapt.testing import (  # noqa: F401  (re-exported: tests import them as `helpers`)
    SHARED_DATA,
    TEXT,
    save_tiny_model,
    seed_all,
    sentencepiece_folder,
    tiktoken_folder,
    tiny_model,
    train_bpe_tokenizer,
    write_config,
    write_jsonl,
)


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


def tiny_stage_config(seq: int, **overrides: Any):
    """A VocabAdaptationConfig for training tests: 2 + 2 steps of 2 sequences of `seq` tokens, lr 1e-2, a
    checkpoint every 2 steps, no warmup, no held-out checks; `overrides` replace any field."""
    from vocabadapt.config import VocabAdaptationConfig

    base: dict[str, Any] = dict(
        stage1_steps=2,
        stage2_steps=2,
        batch_size=2,
        gradient_accumulation=1,
        max_seq_length=seq,
        lr_stage1=1e-2,
        lr_stage2=1e-2,
        save_steps=2,
        logging_steps=1,
        eval_steps=1000,
        eval_max_bytes=1000,
        warmup_ratio=0.0,
    )
    return VocabAdaptationConfig(**{**base, **overrides})
