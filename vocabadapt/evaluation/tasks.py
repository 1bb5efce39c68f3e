"""Evaluation tasks: what `evaluation.datasets` may name, one object each, listed in vocabadapt.registry.

A task prepares its data once per run, before any model is loaded (so a bad file fails first), and
scores one model at a time, returning the fields it adds to that model's result. Its optional hooks
say what it adds elsewhere, so nothing outside its module names it: the fields of eval/summary.json
that compare models (`compare`), a model's result without per-item detail (`slim`), lines of the
closing summary and of `vocabadapt eval` (`summary_lines`), and its columns, notes and blocks in the
report (`report_columns`, `report_notes`, `report_blocks`). Built in (vocabadapt.registry.TASKS):

    heldout    bits per byte on the run's held-out split (vocabadapt.evaluation.bpb)
    pubmedqa   PubMedQA zero-shot and few-shot, scored as lm-eval does (vocabadapt.evaluation.pubmedqa_task)
    lm_eval    the lm-evaluation-harness tasks of evaluation.lm_eval (vocabadapt.evaluation.lm_eval_tasks);
               runs whenever evaluation.lm_eval.tasks is non-empty
    <path>     any other entry is a text file scored in bits per byte (named after the file)

A new evaluation is a module that defines a `Task` and one `TaskEntry` in vocabadapt.registry.TASKS
naming it; the config validates names against that table at load (docs/extending.md).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from .. import registry
from ..config import EvaluationConfig
from ..errors import ConfigError

log = logging.getLogger(__name__)

Block = tuple  # a report block, as vocabadapt.report.markdown draws it: ("p", text), ("table", headers, rows), ...


@dataclass(frozen=True)
class Skip:
    """What a task's prepare returns when it cannot run in this configuration, and why."""

    reason: str


@dataclass(frozen=True)
class Task:
    """One evaluation and its hooks (every hook may be None).

    prepare(entry, cfg, heldout) -> data or Skip: read what the task needs (raise InputError on bad input).
    score(label, model, tokenizer, data, cfg, context) -> fields merged into the model's result dict.
    compare(results, baseline, data) -> fields of eval/summary.json comparing the models (results: by name).
    slim(result) -> the model's result without per-item detail (for summaries and printing).
    summary_lines(summary, names) -> lines of the closing summary and of `vocabadapt eval` (summary has
        "models": {name: slim result}).
    report_columns(summary, name) -> [(header, cell)] appended to the report's models table, one call per
        model (every call returns the same headers).
    report_notes(summary, names) -> paragraphs under the models table; report_blocks(summary, names) ->
        blocks after them (a heading and a table of its own).
    """

    name: str
    description: str
    prepare: Callable[[str, EvaluationConfig, Path], Any]
    score: Callable[[str, Any, Any, Any, EvaluationConfig, int], dict[str, Any]]
    compare: Optional[Callable[[dict[str, dict], str, Any], dict[str, Any]]] = None
    slim: Optional[Callable[[dict[str, Any]], dict[str, Any]]] = None
    summary_lines: Optional[Callable[[dict[str, Any], list[str]], list[str]]] = None
    report_columns: Optional[Callable[[dict[str, Any], str], list[tuple[str, str]]]] = None
    report_notes: Optional[Callable[[dict[str, Any], list[str]], list[str]]] = None
    report_blocks: Optional[Callable[[dict[str, Any], list[str]], list[Block]]] = None


def load(name: str) -> Task:
    """The registered task `name`, its module imported. Raises KeyError for an unknown name."""
    entry = registry.task_entry(name)
    task = registry.load_ref(entry.task)
    if not isinstance(task, Task) or task.name != name:
        raise AssertionError(f"registry entry {name} names {entry.task}, which is not Task '{name}'")
    return task


def registered() -> list[Task]:
    """Every registered task, in registry order (their modules imported)."""
    return [load(name) for name in registry.task_names()]


def looks_like_path(entry: str) -> bool:
    return registry.looks_like_path(entry)


def label_of(entry: str) -> str:
    """The name results are filed under: the task name, or a text file's name without suffixes."""
    names = registry.task_names()
    return entry if entry in names or not looks_like_path(entry) else (Path(entry).name.split(".")[0] or entry)


def get(entry: str) -> Task:
    """The task an evaluation.datasets entry names (a registered name, else a text file).

    Raises:
        ConfigError: neither a registered task nor a path.
    """
    if entry in registry.task_names():
        return load(entry)
    if looks_like_path(entry):
        return TEXT_FILE
    raise ConfigError("evaluation.datasets", [f"evaluation.datasets: {registry.unknown_task(entry)}"])


# --------------------------------------------------------------------------------------------------
# bits per byte on text: the held-out split and any text file


def _score_text(
    label: str, model: Any, tokenizer: Any, docs: list[str], cfg: EvaluationConfig, context: int
) -> dict[str, Any]:
    from .bpb import bits_per_byte

    r = bits_per_byte(model, tokenizer, docs, context=context, stride=cfg.stride, batch_size=cfg.batch_size)
    log.info("%s %.4f bits/byte over %d bytes (%d tokens)", label, r["bits_per_byte"], r["bytes"], r["tokens"])
    return {"bpb": {label: r}}


def _prepare_heldout(entry: str, cfg: EvaluationConfig, heldout: Path) -> list[str]:
    from ..errors import InputError
    from .suite import read_texts

    if not heldout.is_file():
        raise InputError(
            f"{heldout} is missing; run the corpus stage first (or drop 'heldout' from evaluation.datasets)"
        )
    return read_texts(heldout, cfg.max_samples)


def _prepare_text_file(entry: str, cfg: EvaluationConfig, heldout: Path) -> list[str]:
    from .suite import read_texts

    return read_texts(entry, cfg.max_samples)


HELDOUT = Task("heldout", "bits per byte on the run's held-out split", _prepare_heldout, _score_text)
# Not registered by name: any evaluation.datasets entry that is a path.
TEXT_FILE = Task("text file", "bits per byte on a text file", _prepare_text_file, _score_text)


def is_text(task: Task) -> bool:
    """Whether the task scores a text set in bits per byte (the held-out split or a text file)."""
    return task.score is _score_text


def summary_lines(summary: dict[str, Any], names: list[str]) -> list[str]:
    """Every registered task's lines for the closing summary and `vocabadapt eval` (Task.summary_lines)."""
    return [line for t in registered() if t.summary_lines for line in t.summary_lines(summary, names)]


def slim(result: dict[str, Any]) -> dict[str, Any]:
    """A model's result without the registered tasks' per-item detail (Task.slim), for summaries and printing."""
    for t in registered():
        if t.slim:
            result = t.slim(result)
    return result
