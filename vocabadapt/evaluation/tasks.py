"""Evaluation tasks: what `evaluation.datasets` may name, behind an explicit registry.

A task prepares its data once per run, before any model is loaded (so a bad file fails first), and
scores one model at a time, returning the fields it adds to that model's result. Built in:

    heldout    bits per byte on the run's held-out split (vocabadapt.evaluation.bpb)
    pubmedqa   PubMedQA zero-shot and few-shot, scored as lm-eval does (vocabadapt.evaluation.pubmedqa)
    lm_eval    the lm-evaluation-harness tasks of evaluation.lm_eval (vocabadapt.evaluation.lm_eval_tasks);
               runs whenever evaluation.lm_eval.tasks is non-empty
    cloze      a multiple-choice entity cloze, scored as lm-eval's multiple_choice (evaluation.cloze_task)
    general    general-English bits per byte, retention (evaluation.retention); runs whenever
               evaluation.general_inputs is non-empty
    cost       MACs per byte, parameter memory, generation and scoring bytes/s beside the source
               (evaluation.cost_task); runs whenever evaluation.cost.enabled
    <path>     any other entry is a text file scored in bits per byte (named after the file)

A new evaluation (lm-eval tasks, another QA set) is a new module that calls `register(Task(...))`
and is imported at the end of this file; the config validates names against TASKS at load.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from ..config import EvaluationConfig
from ..errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Skip:
    """What a task's prepare returns when it cannot run in this configuration, and why."""

    reason: str


@dataclass(frozen=True)
class Task:
    """One evaluation.

    prepare(entry, cfg, heldout) -> data or Skip: read what the task needs (raise InputError on bad input).
    score(label, model, tokenizer, data, cfg, context) -> fields merged into the model's result dict.
    Optional hooks (None = nothing to add):
    compare(results, baseline, data) -> fields of eval/summary.json comparing the models (results: by name).
    slim(result) -> the model's result without per-item detail (for summaries and printing).
    summary_lines(summary, names) -> lines of the closing summary (summary has "models": {name: slim result}).
    report_columns(summary, name) -> [(header, cell)] of the report's task table, one call per model.
    """

    name: str
    description: str
    prepare: Callable[[str, EvaluationConfig, Path], Any]
    score: Callable[[str, Any, Any, Any, EvaluationConfig, int], dict[str, Any]]
    compare: Optional[Callable[[dict[str, dict], str, Any], dict[str, Any]]] = None
    slim: Optional[Callable[[dict[str, Any]], dict[str, Any]]] = None
    summary_lines: Optional[Callable[[dict[str, Any], list[str]], list[str]]] = None
    report_columns: Optional[Callable[[dict[str, Any], str], list[tuple[str, str]]]] = None


TASKS: dict[str, Task] = {}


def register(task: Task) -> Task:
    if task.name in TASKS:
        raise AssertionError(f"duplicate evaluation task {task.name}")
    TASKS[task.name] = task
    return task


def looks_like_path(entry: str) -> bool:
    """An evaluation.datasets entry that names a file rather than a task."""
    return "/" in entry or "\\" in entry or Path(entry).suffix != ""


def label_of(entry: str) -> str:
    """The name results are filed under: the task name, or a text file's name without suffixes."""
    return entry if entry in TASKS or not looks_like_path(entry) else (Path(entry).name.split(".")[0] or entry)


def unknown_message(entry: str) -> str:
    import difflib

    near = difflib.get_close_matches(entry, list(TASKS), n=1)
    hint = f" (did you mean '{near[0]}'?)" if near else ""
    return (
        f"unknown evaluation task '{entry}'{hint}; tasks: {', '.join(TASKS)}, or the path of a text file "
        f"(.txt/.jsonl/.parquet, optionally .gz)"
    )


def get(entry: str) -> Task:
    """The task an evaluation.datasets entry names (a registered name, else a text file).

    Raises:
        ConfigError: neither a registered task nor a path.
    """
    if entry in TASKS:
        return TASKS[entry]
    if looks_like_path(entry):
        return TEXT_FILE
    raise ConfigError("evaluation.datasets", [f"evaluation.datasets: {unknown_message(entry)}"])


# --------------------------------------------------------------------------------------------------
# built-in tasks


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


def _prepare_pubmedqa(entry: str, cfg: EvaluationConfig, heldout: Path) -> Any:
    from .suite import qa_setup

    if not cfg.qa.enabled:
        return Skip("evaluation.qa.enabled is false")
    if not cfg.qa.file:
        return Skip("evaluation.qa.file is not set")
    return qa_setup(
        cfg.qa.file, cfg.qa.split_ids, cfg.qa.fewshot_file, cfg.qa.fewshot_k, cfg.qa.bootstrap, cfg.max_samples
    )


def _score_pubmedqa(
    label: str, model: Any, tokenizer: Any, qa: Any, cfg: EvaluationConfig, context: int
) -> dict[str, Any]:
    from .pubmedqa import score_questions

    out: dict[str, Any] = {}
    r = score_questions(
        model, tokenizer, qa.questions, context=context, batch_size=cfg.batch_size, bootstrap=qa.bootstrap
    )
    log.info(
        "PubMedQA acc %.3f (lm-eval's), acc_bytes %.3f, macro-F1 %.3f (n=%d, skipped %d)",
        r["acc"] or 0,
        r["acc_bytes"] or 0,
        r["macro_f1"] or 0,
        r["n"],
        r["skipped"],
    )
    out["pubmedqa"] = r
    if qa.shots:
        r = score_questions(
            model,
            tokenizer,
            qa.questions,
            shots=qa.shots,
            context=context,
            batch_size=cfg.batch_size,
            bootstrap=qa.bootstrap,
        )
        log.info("PubMedQA %d-shot acc %.3f", len(qa.shots), r["acc"] or 0)
        out["pubmedqa_fewshot"] = r
    return out


HELDOUT = register(Task("heldout", "bits per byte on the run's held-out split", _prepare_heldout, _score_text))
PUBMEDQA = register(
    Task(
        "pubmedqa",
        "PubMedQA zero-shot and few-shot: lm-eval's acc, acc_bytes, macro-F1",
        _prepare_pubmedqa,
        _score_pubmedqa,
    )
)
# Not registered by name: any evaluation.datasets entry that is a path.
TEXT_FILE = Task("text file", "bits per byte on a text file", _prepare_text_file, _score_text)

# Evaluations in modules of their own register themselves on import.
from . import cloze_task, cost_task, lm_eval_tasks, retention  # noqa: E402,F401


def summary_lines(summary: dict[str, Any], names: list[str]) -> list[str]:
    """Every registered task's lines for the closing summary (Task.summary_lines)."""
    return [line for t in TASKS.values() if t.summary_lines for line in t.summary_lines(summary, names)]


def slim(result: dict[str, Any]) -> dict[str, Any]:
    """A model's result without the registered tasks' per-item detail (Task.slim)."""
    for t in TASKS.values():
        if t.slim:
            result = t.slim(result)
    return result
