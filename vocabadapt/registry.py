"""The extension points' one list each: row initialisers and evaluation tasks, by name, importing nothing.

Each entry names its code as `module:attribute` (the way Python entry points do), so this table can
be read without torch: the config validates `alignment.init` and `evaluation.datasets` here at load,
and `vocabadapt audit` runs without importing the code behind the names. `vocabadapt.init.get(name)`
and `vocabadapt.evaluation.tasks.get(name)` import the named code when a stage uses it.

A new initialiser is one module under vocabadapt/init/ (its `recipe`, optionally a `refine`) and one
`InitialiserEntry` below; a new evaluation task is one module under vocabadapt/evaluation/ (a `Task`
with its hooks) and one `TaskEntry` below. docs/extending.md walks through both.
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any, Optional


def load_ref(ref: str) -> Any:
    """The object a `package.module:attribute` reference names (imported now)."""
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


def did_you_mean(name: str, valid: list[str]) -> str:
    """' (did you mean 'x'?)' for the nearest valid name, or '' when none is close."""
    near = difflib.get_close_matches(name, valid, n=1)
    return f" (did you mean '{near[0]}'?)" if near else ""


# --------------------------------------------------------------------------------------------------
# row initialisers (alignment.init; vocabadapt.init)


@dataclass(frozen=True)
class InitialiserEntry:
    """One row initialiser, as the config and the audit need to know it (the code is loaded on use).

    name: the `alignment.init` value.
    reads_vectors: whether it reads the mapping's aligned and soft entries (what the co-occurrence
        vectors produced); those that do not rebuild every non-identical row themselves, so for them
        the embed stage trains nothing (Config.vector_plan).
    recipe: `module:function` of its recipe, (InitContext) -> Recipe.
    refine: `module:function` of its refine step (run after the rows are built; may read the source
        model and calibration text), or None.
    summary: one line for the config reference and error messages.
    """

    name: str
    reads_vectors: bool
    recipe: str
    summary: str
    refine: Optional[str] = None


INITIALISERS: list[InitialiserEntry] = [
    InitialiserEntry(
        "fvt_prior",
        reads_vectors=False,
        recipe="vocabadapt.init.fvt_prior:recipe",
        refine="vocabadapt.init.fvt_prior:refine",
        summary="FVT input rows; output rows split each first piece's probability by corpus share (unties)",
    ),
    InitialiserEntry(
        "tokalign", True, "vocabadapt.init.tokalign:recipe", "aligned tokens copy their top-1 source row (TokAlign)"
    ),
    InitialiserEntry(
        "soft", True, "vocabadapt.init.soft:recipe", "aligned tokens use the mapping's weighted top-k source rows"
    ),
    InitialiserEntry("fvt", False, "vocabadapt.init.fvt:recipe", "mean of the token's source-tokenizer pieces (FVT)"),
    InitialiserEntry("mean", False, "vocabadapt.init.mean:recipe", "every non-special row is the source rows' mean"),
    InitialiserEntry(
        "random", False, "vocabadapt.init.random_rows:recipe", "every non-special row drawn from N(mean, std)"
    ),
]

# The schema's alignment.init default (lowest held-out bits per byte at init, issue 18).
DEFAULT_INITIALISER = "fvt_prior"
# alignment.init = null: the mapping's own per-token method (TokAlign match above the threshold, else the
# fallback), which reads the vector alignment.
MAPPING_READS_VECTORS = True


def initialiser_entry(name: str) -> InitialiserEntry:
    """The entry named `name`. Raises KeyError (with the valid names) for an unknown one."""
    for e in INITIALISERS:
        if e.name == name:
            return e
    raise KeyError(unknown_initialiser(name))


def initialiser_names(reads_vectors: Optional[bool] = None) -> list[str]:
    """Registered initialiser names, in registry order; only those that do (not) read vectors when given."""
    return [e.name for e in INITIALISERS if reads_vectors is None or e.reads_vectors == reads_vectors]


def reads_vectors(name: Optional[str]) -> bool:
    """Whether initialiser `name` (None = the mapping's per-token method) reads the vector alignment."""
    return MAPPING_READS_VECTORS if name is None else initialiser_entry(name).reads_vectors


def unknown_initialiser(name: str) -> str:
    names = initialiser_names()
    return (
        f"unknown initialiser '{name}'{did_you_mean(name, names)}; valid: {', '.join(names)}, or null for the "
        f"mapping's per-token method"
    )


# --------------------------------------------------------------------------------------------------
# evaluation tasks (evaluation.datasets; vocabadapt.evaluation.tasks)


@dataclass(frozen=True)
class TaskEntry:
    """One evaluation task: the `evaluation.datasets` name, `module:attribute` of its Task, one line."""

    name: str
    task: str
    summary: str


TASKS: list[TaskEntry] = [
    TaskEntry("heldout", "vocabadapt.evaluation.tasks:HELDOUT", "bits per byte on the run's held-out split"),
    TaskEntry(
        "pubmedqa",
        "vocabadapt.evaluation.pubmedqa_task:PUBMEDQA",
        "PubMedQA zero-shot and few-shot: lm-eval's acc, acc_bytes, macro-F1, paired Δ against the baseline",
    ),
    TaskEntry(
        "lm_eval",
        "vocabadapt.evaluation.lm_eval_tasks:LM_EVAL",
        "the lm-evaluation-harness tasks of evaluation.lm_eval (runs whenever evaluation.lm_eval.tasks is set)",
    ),
    TaskEntry(
        "cloze",
        "vocabadapt.evaluation.cloze_task:CLOZE",
        "multiple-choice entity cloze (evaluation.cloze.file): lm-eval's acc, acc_norm, acc_bytes, paired Δ vs source",
    ),
    TaskEntry(
        "general",
        "vocabadapt.evaluation.retention:GENERAL",
        "general-English bits per byte and its change from the source (runs whenever evaluation.general_inputs is set)",
    ),
    TaskEntry(
        "cost",
        "vocabadapt.evaluation.cost_task:COST",
        "MACs per byte, parameter memory, generation and scoring bytes/s beside the source "
        "(runs whenever evaluation.cost.enabled)",
    ),
]


def task_names() -> list[str]:
    return [e.name for e in TASKS]


def task_entry(name: str) -> TaskEntry:
    """The entry named `name`. Raises KeyError (with the valid names) for an unknown one."""
    for e in TASKS:
        if e.name == name:
            return e
    raise KeyError(unknown_task(name))


def looks_like_path(entry: str) -> bool:
    """An evaluation.datasets entry that names a file rather than a task."""
    return "/" in entry or "\\" in entry or PurePath(entry).suffix != ""


def unknown_task(entry: str) -> str:
    names = task_names()
    return (
        f"unknown evaluation task '{entry}'{did_you_mean(entry, names)}; tasks: {', '.join(names)}, or the path "
        f"of a text file (.txt/.jsonl/.parquet, optionally .gz)"
    )
