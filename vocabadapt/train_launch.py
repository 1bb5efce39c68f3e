"""Worker entry of a multi-process training stage: `python -m vocabadapt.train_launch RUN_DIR STAGE`.

Started by vocabadapt.train under `accelerate launch` or `torchrun` (one process per GPU); never run by
hand. Each process rebuilds the stage context from the run directory (its config.yaml and manifest),
trains its share of the data (the Trainer handles DDP / FSDP / DeepSpeed), and rank 0 writes the
stage summary to train/<stage>/launch_result.json for the pipeline process to record.
"""

from __future__ import annotations

import sys
from pathlib import Path

from .config import load_config
from .io import write_json
from .pipeline import StageContext, load_manifest
from .train import _is_main, _run_pipeline_stage


def main(argv: list[str]) -> int:
    run_dir, stage = Path(argv[0]), argv[1]
    ctx = StageContext(run_dir=run_dir, config=load_config(run_dir / "config.yaml"), stage=stage,
                       manifest=load_manifest(run_dir))
    summary = _run_pipeline_stage(ctx, stage)
    if _is_main():
        write_json(ctx.path("train", stage, "launch_result.json"), summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
