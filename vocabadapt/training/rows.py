"""Which embedding and head rows train, and at what rate: `train_rows: new` and stage 2's `lr_embeddings`.

`train_rows: new` keeps the rows the transplant copied from the source (identical and special tokens)
bitwise as they are while the rows it built train. It is a gradient mask, not a copy of the matrix: a
hook on each matrix zeroes the gradient rows of the copied ids. That alone keeps Adam from moving them
(their first and second moments stay exactly 0, so the update m / (sqrt(v) + eps) is exactly 0), but
decoupled weight decay (AdamW: w -= lr * wd * w) would still shrink them, so the matrices go into a
parameter group without weight decay (`param_groups`). The built rows then get no decay either; the
summary says so.

`lr_embeddings` puts the embedding and head matrices in their own parameter group at that peak rate
(the backbone keeps the stage's rate; the schedule scales both alike), as Nemotron's vocabulary
adaptation does.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch

from ..errors import InputError

log = logging.getLogger(__name__)


class RowMask:
    """Zero the gradient rows of `frozen_ids` in every matrix (input embedding and, untied, the head).

    Args:
        matrices: the embedding/head weights, each (rows, hidden).
        frozen_ids: target ids whose rows stay unchanged.
    Raises:
        InputError: an id beyond a matrix's rows.
    """

    def __init__(self, matrices: list[torch.nn.Parameter], frozen_ids: np.ndarray):
        self.ids = torch.as_tensor(np.asarray(frozen_ids, dtype=np.int64))
        for p in matrices:
            if self.ids.numel() and int(self.ids.max()) >= p.shape[0]:
                raise InputError(
                    f"train_rows: new: copied row id {int(self.ids.max())} is beyond the {p.shape[0]} rows of a "
                    f"{tuple(p.shape)} matrix; the mapping does not belong to this model (rerun transplant)"
                )
        self.handles = [p.register_hook(self._mask) for p in matrices]
        self.count = int(self.ids.numel())

    def _mask(self, grad: torch.Tensor) -> torch.Tensor:
        return grad.index_fill(0, self.ids.to(grad.device), 0.0)  # (rows, hidden), copied rows zero

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def param_groups(
    model: Any,
    matrices: list[torch.nn.Parameter],
    decay_names: set[str],
    weight_decay: float,
    lr: float,
    lr_embeddings: float | None,
    freeze_rows: bool,
) -> list[dict[str, Any]]:
    """Optimizer parameter groups: the backbone (decay / no decay, as Trainer splits them) and the matrices.

    The matrices get `lr_embeddings` (or `lr`), and no weight decay when rows are frozen (see module doc).
    """
    ids = {id(p) for p in matrices}
    seen: set[int] = set()
    body_decay, body_plain, mats = [], [], []
    for name, p in model.named_parameters():
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        if id(p) in ids:
            mats.append(p)
        elif name in decay_names:
            body_decay.append(p)
        else:
            body_plain.append(p)
    groups = [
        {"params": body_decay, "weight_decay": weight_decay, "lr": lr},
        {"params": body_plain, "weight_decay": 0.0, "lr": lr},
        {"params": mats, "weight_decay": 0.0 if freeze_rows else weight_decay, "lr": lr_embeddings or lr},
    ]
    return [g for g in groups if g["params"]]
