"""Launching a training stage as several processes (one per GPU) with accelerate launch or torchrun.

The pipeline stays one process; only a training stage fans out. The caller names the worker module
and its arguments (vocabadapt.stages.train's `python -m` entry); each worker trains its share of the
data (HF Trainer handles DDP / FSDP / DeepSpeed) and rank 0 writes the stage summary back.
"""

from __future__ import annotations

import logging
import subprocess
import sys

from ..config import VocabAdaptationConfig
from ..errors import StageError

log = logging.getLogger(__name__)


def launch_command(cfg: VocabAdaptationConfig, worker: list[str]) -> list[str]:
    """The command line that starts `python <worker...>` in cfg.num_processes processes."""
    if cfg.launcher == "torchrun":
        return [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={cfg.num_processes}",
            *worker,
        ]
    cmd = [sys.executable, "-m", "accelerate.commands.launch", f"--num_processes={cfg.num_processes}"]
    if cfg.accelerate_config:
        cmd.append(f"--config_file={cfg.accelerate_config}")
    return cmd + worker


def launch(cfg: VocabAdaptationConfig, worker: list[str], name: str) -> None:
    """Run the worker in cfg.num_processes processes and wait for them.

    Raises:
        StageError: the launch exited with a non-zero code.
    """
    cmd = launch_command(cfg, worker)
    log.info("%s: launching %d training processes: %s", name, cfg.num_processes, " ".join(cmd))
    proc = subprocess.run(cmd)
    if proc.returncode != 0:
        raise StageError(
            f"{name}: the {cfg.launcher} launch exited with code {proc.returncode}; see the log above "
            f"(rerun the same command to resume from the last checkpoint)"
        )
