"""Any lm-evaluation-harness task on an already-loaded model (evaluation.lm_eval).

lm-eval (an optional extra: `pip install 'vocabadapt[lm-eval]'`) is run through its Python API:
`simple_evaluate` with its HF wrapper `HFLM` around the model and tokenizer the evaluate stage has
in memory, so every stage's model is scored exactly as `lm_eval --model hf` would score it. Tasks
are looked up first in `include_path` alone (fast: the user's own YAMLs, e.g. `dataset_path: json`
with `dataset_kwargs: {data_files: {test: FILE}}`), and in lm-eval's ~10k built-in tasks only when
a name is not found there (indexing those takes ~20 s). Nothing here downloads on purpose: a task
whose dataset lives on the Hugging Face hub fails offline with an error naming the task and the
local-file setting to use instead.
"""

from __future__ import annotations

import copy
import difflib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ..config import EvaluationConfig
from ..errors import ConfigError, InputError
from ..values import fmt, get, number
from .tasks import Skip, Task

log = logging.getLogger(__name__)

EXTRA = "pip install 'vocabadapt[lm-eval]'"
LOCAL_DATA_HINT = (
    "give the task a local file instead: dataset_path: json, dataset_name: null, "
    "dataset_kwargs: {data_files: {test: FILE}} (and training_split/validation_split: null)"
)


def _require() -> Any:
    try:
        import lm_eval
    except ImportError:
        raise ConfigError(
            "evaluation.lm_eval", [f"tasks need lm-evaluation-harness, which is not installed: {EXTRA}"]
        ) from None
    return lm_eval


def task_manager(tasks: Sequence[str], include_path: str | None) -> Any:
    """An lm-eval TaskManager that knows every name in `tasks`.

    Raises:
        ConfigError: lm-eval is missing, include_path is not a folder, or a task name is unknown
            (the message lists the nearest known names).
    """
    _require()
    from lm_eval.tasks import TaskManager

    if include_path is not None and not Path(include_path).is_dir():
        raise ConfigError("evaluation.lm_eval", [f"include_path: {include_path} is not a folder of task YAMLs"])
    manager = TaskManager(include_path=include_path, include_defaults=False) if include_path else None
    if manager is None or any(t not in manager.all_tasks for t in tasks):
        manager = TaskManager(include_path=include_path)  # the built-in tasks too
    unknown = [t for t in tasks if t not in manager.all_tasks]
    if unknown:
        hints = {t: difflib.get_close_matches(t, manager.all_tasks, n=3) for t in unknown}
        raise ConfigError(
            "evaluation.lm_eval",
            [
                "tasks: unknown lm-eval task(s): "
                + "; ".join(f"'{t}'" + (f" (did you mean {', '.join(h)}?)" if h else "") for t, h in hints.items())
                + (
                    f"; your YAMLs are read from {include_path}"
                    if include_path
                    else "; set evaluation.lm_eval.include_path to the folder of your own task YAMLs"
                )
            ],
        )
    return manager


def check_datasets(tasks: Sequence[str], manager: Any) -> None:
    """Build each task once (this reads its dataset) so that a dataset problem names its task,
    before any model is loaded.

    Raises:
        InputError: a task's dataset cannot be read (e.g. a hub dataset while offline).
    """
    for name in tasks:
        try:
            manager.load([name])
        except Exception as e:  # datasets raises many types (ConnectionError, FileNotFoundError, ...)
            raise InputError(
                f"lm-eval task '{name}': cannot load its dataset ({type(e).__name__}: {e}); {LOCAL_DATA_HINT}"
            ) from None


def run_tasks(
    model: Any,
    tokenizer: Any,
    tasks: Sequence[str],
    manager: Any,
    *,
    context: int,
    batch_size: int,
    limit: int | None = None,
    num_fewshot: int | None = None,
) -> dict[str, Any]:
    """Run built lm-eval tasks on a loaded model; return {task: {metric: {"value", "stderr"}}, ...}.

    Args:
        model, tokenizer: the model in memory and its tokenizer (copied: HFLM may set a pad token).
        tasks, manager: task names and the TaskManager from task_manager().
        context: lm-eval's max_length (the same context the rest of the evaluation uses).
    Returns:
        {"tasks": {name: {"metrics": {metric: {"value", "stderr"}}, "samples": n}}, "versions": {...},
         "n_shot": {...}, "limit": limit}; groups appear as tasks.
    """
    import lm_eval
    from lm_eval.models.huggingface import HFLM

    device = str(next(model.parameters()).device)
    lm = HFLM(
        pretrained=model, tokenizer=copy.deepcopy(tokenizer), batch_size=batch_size, max_length=context, device=device
    )
    res = lm_eval.simple_evaluate(
        model=lm,
        tasks=list(tasks),
        task_manager=manager,
        limit=limit,
        num_fewshot=num_fewshot,
        log_samples=False,
        bootstrap_iters=1000,
    )
    out: dict[str, Any] = {}
    for name, values in (res or {}).get("results", {}).items():
        metrics: dict[str, dict] = {}
        for key, v in values.items():
            if "," not in key or "_stderr," in key:
                continue
            metric, filt = key.split(",", 1)
            label = metric if filt == "none" else f"{metric} ({filt})"
            stderr = values.get(f"{metric}_stderr,{filt}")
            metrics[label] = {"value": number(v), "stderr": number(stderr)}
        out[name] = {"metrics": metrics, "samples": (res.get("n-samples") or {}).get(name, {}).get("effective")}
    return {"tasks": out, "versions": res.get("versions", {}), "n_shot": res.get("n-shot", {}), "limit": limit}


def differences(results: dict[str, dict], reference: str = "source") -> dict[str, dict]:
    """{model: {task: {metric: value - reference's value}}} for every model but the reference."""
    ref = (results.get(reference) or {}).get("lm_eval", {}).get("tasks", {})
    out: dict[str, dict] = {}
    for name, r in results.items():
        if name == reference or "lm_eval" not in r:
            continue
        for task, t in r["lm_eval"]["tasks"].items():
            for metric, v in t["metrics"].items():
                base = ref.get(task, {}).get("metrics", {}).get(metric, {}).get("value")
                if v["value"] is not None and base is not None:
                    out.setdefault(name, {}).setdefault(task, {})[metric] = v["value"] - base
    return out


# --------------------------------------------------------------------------------------------------
# the evaluation task (vocabadapt.evaluation.tasks)


@dataclass
class LmEvalSetup:
    """lm-eval tasks checked once (names known, datasets readable) before any model is loaded."""

    tasks: list[str]
    manager: Any
    limit: int | None = None
    num_fewshot: int | None = None


def _prepare(entry: str, cfg: EvaluationConfig, heldout: Path) -> LmEvalSetup | Skip:
    if not cfg.lm_eval.tasks:
        return Skip("evaluation.lm_eval.tasks is empty")
    manager = task_manager(cfg.lm_eval.tasks, cfg.lm_eval.include_path)
    check_datasets(cfg.lm_eval.tasks, manager)
    return LmEvalSetup(list(cfg.lm_eval.tasks), manager, cfg.lm_eval.limit, cfg.lm_eval.num_fewshot)


def _score(
    label: str, model: Any, tokenizer: Any, setup: LmEvalSetup, cfg: EvaluationConfig, context: int
) -> dict[str, Any]:
    r = run_tasks(
        model,
        tokenizer,
        setup.tasks,
        setup.manager,
        context=context,
        batch_size=cfg.batch_size,
        limit=setup.limit,
        num_fewshot=setup.num_fewshot,
    )
    log.info("lm-eval %s", {t: {m: v["value"] for m, v in x["metrics"].items()} for t, x in r["tasks"].items()})
    return {"lm_eval": r}


def _compare(results: dict[str, dict], baseline: str, setup: LmEvalSetup) -> dict[str, Any]:
    # Against the source model (same tokenizer family as the published figures), not the baseline.
    if not any("lm_eval" in r for r in results.values()):
        return {}
    return {"lm_eval_vs_source": differences(results, "source")}


def _report_blocks(s: dict[str, Any], names: list[str]) -> list[tuple]:
    """One row per lm-eval task and metric: each model's value ± stderr, and its difference from the source."""
    if not any(get(s, "models", n, "lm_eval") for n in names):
        return []
    pairs = sorted(
        {
            (task, metric)
            for n in names
            for task, t in (get(s, "models", n, "lm_eval", "tasks") or {}).items()
            for metric in t.get("metrics", {})
        }
    )
    rows = []
    for task, metric in pairs:
        row = [task, metric]
        for n in names:
            v = get(s, "models", n, "lm_eval", "tasks", task, "metrics", metric) or {}
            d = get(s, "lm_eval_vs_source", n, task, metric)
            row.append(
                fmt(v.get("value"))
                + (f" ± {fmt(v.get('stderr'))}" if v.get("stderr") is not None else "")
                + (f" ({d:+.4f})" if isinstance(d, (int, float)) else "")
            )
        rows.append(row)
    return [
        ("h", 3, "lm-evaluation-harness tasks"),
        ("table", ["task", "metric"] + names, rows),
        (
            "p",
            "Value ± lm-eval's standard error; in brackets the difference from the source model. Run by "
            "lm-eval's own code on each model (evaluation.lm_eval).",
        ),
    ]


LM_EVAL = Task(
    "lm_eval",
    "lm-evaluation-harness tasks of evaluation.lm_eval",
    _prepare,
    _score,
    compare=_compare,
    report_blocks=_report_blocks,
)
