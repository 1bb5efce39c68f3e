"""Partial work of a long stage, kept across a kill so that the rerun resumes instead of starting over.

A stage that can resume (tokenize: per finished shard; embed: per finished tokenizer side) writes into
RunLayout.partial(stage) and moves its outputs into place only when it is done. The folder carries a
key (the stage's config hash and the identity of its inputs); a rerun with another key starts over, so
work done for other settings or other inputs is never mixed into the result. The runner removes the
folder (StageSpec.resume_state) when a finished stage is redone or forced.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any, Iterable

from ..io import read_json_or_none, write_json

log = logging.getLogger(__name__)

KEY_FILE = "key.json"


def file_identity(paths: Iterable[Path]) -> list[list[Any]]:
    """[name, size, mtime_ns] of each file: changes whenever a stage rewrites it (atomic writes make a new
    inode and mtime), without reading gigabytes to hash them."""
    out = []
    for p in paths:
        st = os.stat(p)
        out.append([str(p.name), st.st_size, st.st_mtime_ns])
    return out


def open_partial(directory: Path, key: dict[str, Any]) -> bool:
    """Make `directory` the partial-work folder for `key`.

    Returns True when it already held work for the same key (the caller resumes from it), False when it
    was created empty (a different key's leftovers are removed first, and logged).
    """
    if directory.exists():
        if read_json_or_none(directory / KEY_FILE) == key:
            return True
        log.info("%s: partial work from other settings or inputs; starting over", directory)
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    write_json(directory / KEY_FILE, key)
    return False


def finish_partial(directory: Path) -> None:
    """Remove the partial-work folder after its outputs were moved into place."""
    shutil.rmtree(directory, ignore_errors=True)
