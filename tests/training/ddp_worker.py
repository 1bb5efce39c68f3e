"""One process of the 2-process DDP test: `torchrun --nproc_per_node 2 tests/ddp_worker.py ROOT STEPS`.

ROOT holds `init/` (model + tokenizer) and `shards/` (token ids) made by tests/test_train.py; each rank
trains stage-2 style (whole model) with batch 1, so together they see batch 2 per step.
"""

import json
import sys
from pathlib import Path

from vocabadapt.config import VocabAdaptationConfig
from vocabadapt.training.settings import StageSettings
from vocabadapt.training.trainer import train_stage


def main() -> None:
    root, steps = Path(sys.argv[1]), int(sys.argv[2])
    cfg = VocabAdaptationConfig(**json.loads((root / "cfg.json").read_text()))
    settings = StageSettings("stage2", steps, cfg.lr_stage2, cfg.stage2_optimizer, "all", 0)
    summary = train_stage(
        settings, cfg, root / "init", root / "shards", root / "ddp_out", root / "ddp_train", root / "ddp_ck"
    )
    if summary:
        (root / "ddp_summary.json").write_text(json.dumps(summary))


if __name__ == "__main__":
    main()
