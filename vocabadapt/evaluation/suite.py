"""Evaluating models side by side: the per-model measurements, the run summary, and `vocabadapt eval`.

Each model gets every task evaluation.datasets names (vocabadapt.evaluation.tasks: bits per byte on
each text set, PubMedQA, lm-eval tasks, ...), each task's comparison of the models (its `compare`
hook), and once per run: tokenizer efficiency and the vocabulary's cost (evaluation.efficiency) and
alignment quality.
The evaluate stage (vocabadapt.stages.evaluate) chooses the models and writes the results.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from ..config import EvaluationConfig, ModelsConfig
from ..errors import InputError
from ..io import write_json
from . import bpb as bpb_mod
from . import checklist as checklist_mod
from . import efficiency as eff
from . import tasks

if TYPE_CHECKING:
    from ..model.hub import DownloadRetry

log = logging.getLogger(__name__)

_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model")


# --------------------------------------------------------------------------------------------------
# inputs


def read_texts(path: str | Path, max_docs: int | None = None) -> list[str]:
    """Documents of a text file, read by the corpus reader (vocabadapt.text.corpus.read_documents):
    .jsonl/.parquet ("text", else title + abstract), .txt (blank-line separated blocks), optionally .gz.
    Malformed lines are skipped and logged, as in the corpus stage.

    Raises:
        InputError: the file is missing, unreadable or holds no text.
    """
    from ..text.corpus import FileStats, read_documents

    path = Path(path)
    if not path.is_file():
        raise InputError(f"text file {path} does not exist")
    stats = FileStats()
    docs: list[str] = []
    for _, text in read_documents(path, ["text", "title", "abstract"], "block", stats):
        docs.append(text)
        if max_docs and len(docs) >= max_docs:
            break
    if stats.bad_lines:
        log.warning("%s: %d malformed line(s) skipped (%s)", path, stats.bad_lines, "; ".join(stats.first_bad_lines))
    if not docs:
        raise InputError(f"{path} holds no text; give a file with at least one non-empty document")
    return docs


def has_tokenizer(directory: Path) -> bool:
    return directory.is_dir() and any((directory / n).is_file() for n in _TOKENIZER_FILES)


def load_model_for_eval(
    path: str, models_cfg: ModelsConfig, cache_dir: str | None = None, retry: DownloadRetry | None = None
) -> Any:
    """load_model (safe; a hub download retried as `retry` says), on the GPU when there is one, in eval mode."""
    import torch

    from ..model.hub import DownloadRetry, load_model

    model = load_model(path, models_cfg, cache_dir, retry or DownloadRetry())
    if torch.cuda.is_available():
        model = model.to("cuda")
    model.eval()
    return model


def check_vocab(model: Any, tokenizer: Any, name: str) -> None:
    rows = model.get_input_embeddings().weight.shape[0]
    if len(tokenizer) > rows:
        raise InputError(
            f"{name}: the tokenizer has {len(tokenizer)} tokens but the model only {rows} embedding rows; "
            f"this tokenizer does not belong to this model"
        )


Prepared = dict[str, tuple["tasks.Task", Any]]  # result label -> (task, its prepared data)


def gather_inputs(ev: EvaluationConfig, heldout: Path) -> tuple[Prepared, dict[str, str]]:
    """Every task evaluation.datasets names (vocabadapt.evaluation.tasks), prepared before any model loads.

    Args:
        ev: the evaluation section.
        heldout: the held-out text file (the 'heldout' task).
    Returns:
        ({label: (task, data)}, {what was skipped: why}).
    Raises:
        InputError: a text or QA file is missing or malformed.
        ConfigError: an entry names no task and no file.
    """
    prepared: Prepared = {}
    skips: dict[str, str] = {}
    # evaluation.lm_eval.tasks alone asks for the lm_eval task (no need to name it in datasets too)
    extra = ["lm_eval"] if ev.lm_eval.tasks and "lm_eval" not in ev.datasets else []
    # likewise evaluation.general_inputs asks for 'general', and evaluation.cost.enabled for 'cost'
    extra += ["general"] if ev.general_inputs and "general" not in ev.datasets else []
    extra += ["cost"] if ev.cost.enabled and "cost" not in ev.datasets else []
    for entry in [*ev.datasets, *extra]:
        task = tasks.get(entry)
        data = task.prepare(entry, ev, heldout)
        if isinstance(data, tasks.Skip):
            skips[tasks.label_of(entry)] = data.reason
            continue
        prepared[tasks.label_of(entry)] = (task, data)
    for what, why in skips.items():
        log.warning("evaluate: %s skipped: %s", what, why)
    return prepared, skips


def text_sets(prepared: Prepared) -> dict[str, list[str]]:
    """The text sets among the prepared tasks (scored in bits per byte), by label."""
    return {label: data for label, (task, data) in prepared.items() if tasks.is_text(task)}


# --------------------------------------------------------------------------------------------------
# one model


def evaluate_model(
    name: str, model: Any, tokenizer: Any, prepared: Prepared, cfg: EvaluationConfig, context_cap: int | None = None
) -> dict[str, Any]:
    """Every prepared task on one model (bits per byte on each text set, PubMedQA, ...), and model facts."""
    t0 = time.perf_counter()
    check_vocab(model, tokenizer, name)
    context = bpb_mod.model_context(model, tokenizer, cap=context_cap)
    result: dict[str, Any] = {
        "name": name,
        "context": context,
        "facts": eff.model_facts(model),
        "tokenizer_vocab": len(tokenizer),
        "bpb": {},
    }
    for label, (task, data) in prepared.items():
        log.info("%s: %s", name, label)
        for key, value in task.score(label, model, tokenizer, data, cfg, context).items():
            if isinstance(value, dict) and isinstance(result.get(key), dict):
                result[key].update(value)  # e.g. several text sets under "bpb"
            else:
                result[key] = value
    result["wall_s"] = round(time.perf_counter() - t0, 3)
    return result


def build_summary(
    results: dict[str, dict],
    baseline: str,
    final: str | None,
    prepared: Prepared,
    skips: dict[str, str],
    tokenizers: dict[str, Any],
    terms: list[str] | None,
    align: dict[str, Any] | None,
) -> dict[str, Any]:
    """eval/summary.json: models side by side, tokenizer efficiency, vocabulary cost, alignment.

    Args:
        results: per-model results (evaluate_model), in evaluation order.
        baseline, final: the names of the baseline and of the final adapted model (None: none).
        prepared: the tasks that ran and their data (gather_inputs); each task's `compare` hook adds
            its fields (e.g. PubMedQA's paired difference from the baseline).
        skips: what was skipped and why.
        tokenizers: {"source": ..., "target": ...} for tokenizer efficiency (either may be missing).
        terms: domain words (the run's mined terms), or None to take the held-out text's frequent words.
        align: the alignment summary, or None.
    """
    texts = text_sets(prepared)
    summary: dict[str, Any] = {
        "baseline": baseline,
        "final": final,
        "models": {n: tasks.slim(r) for n, r in results.items()},
        "datasets": {
            ds: {"documents": len(d), "bytes": sum(len(t.encode("utf-8")) for t in d)} for ds, d in texts.items()
        },
        "skipped": skips,
    }
    for task, data in prepared.values():
        if task.compare is not None:
            summary.update(task.compare(results, baseline, data))

    # Tokenizer efficiency on the held-out text (else the first text set) with the run's tokenizers.
    eval_texts = texts.get("heldout") or next(iter(texts.values()), None)
    if eval_texts:
        words = terms if terms is not None else eff.frequent_words(eval_texts)
        summary["tokenizers"] = {side: eff.efficiency(t, eval_texts, words) for side, t in tokenizers.items()}
        summary["tokenizers"]["domain_words_from"] = "terms/terms.txt" if terms is not None else "held-out text"
        adapted = final
        if adapted and "target" in summary["tokenizers"] and "source" in results:
            summary["vocab_cost"] = eff.vocab_cost(
                results["source"]["facts"],
                results[adapted]["facts"],
                summary["tokenizers"]["source"]["bytes_per_token"],
                summary["tokenizers"]["target"]["bytes_per_token"],
            )
            summary["vocab_cost"]["compared"] = ["source", adapted]

    if isinstance(align, dict):
        # Scalars and small tables only; the similarity histogram is for the report's plot.
        summary["alignment"] = {
            k: v for k, v in align.items() if k != "similarity_histogram" and len(json.dumps(v)) < 4000
        }
        cov = checklist_mod.coverage_of(align)
        if cov is not None:
            summary["alignment"]["coverage_fraction"] = cov
    return summary


# --------------------------------------------------------------------------------------------------
# the CLI command


def eval_command(
    model: str,
    baseline: str | None,
    texts: Sequence[str],
    pubmedqa: str | None,
    max_samples: int | None,
    out: str | None,
) -> dict[str, Any]:
    """`vocabadapt eval MODEL [--baseline B] [--text F ...] [--pubmedqa F] [--max-samples N] [--out F]`.

    Each model is evaluated with the tokenizer saved in its directory. For PubMedQA, when the file
    is the official ori_pqal.json with test_ground_truth.json beside it, the 500-question test
    split is used; otherwise every record. Returns the result without per-question predictions;
    --out gets the full result.
    Raises:
        InputError: nothing to evaluate, a missing tokenizer, bad text or QA files.
    """
    from ..model.hub import load_tokenizer

    cfg = EvaluationConfig()
    models_cfg = ModelsConfig()
    if not texts and not pubmedqa:
        raise InputError("nothing to evaluate: pass --text FILE (held-out text) and/or --pubmedqa FILE")
    prepared: Prepared = {
        Path(t).name.split(".")[0] or str(t): (tasks.TEXT_FILE, read_texts(t, max_samples)) for t in texts
    }
    if pubmedqa:
        from .pubmedqa_task import PUBMEDQA, cli_setup

        prepared[PUBMEDQA.name] = (PUBMEDQA, cli_setup(pubmedqa, cfg.qa.bootstrap, max_samples))

    results: dict[str, dict] = {}
    for name, path in (("model", model), ("baseline", baseline)):
        if path is None:
            continue
        p = Path(path)
        if p.is_dir() and not has_tokenizer(p):
            raise InputError(
                f"{p} has no tokenizer files (tokenizer.json / tokenizer_config.json); "
                f"save the model's tokenizer into it with tokenizer.save_pretrained('{p}')"
            )
        tok = load_tokenizer(str(path), models_cfg)
        m = load_model_for_eval(str(path), models_cfg)
        results[name] = evaluate_model(name, m, tok, prepared, cfg)
        results[name]["path"] = str(path)
        del m
    full: dict[str, Any] = {"models": results}
    if baseline is not None:
        for task, data in prepared.values():
            if task.compare is not None:
                full.update(task.compare(results, "baseline", data))
        full["bits_per_byte_difference"] = {
            ds: results["model"]["bpb"][ds]["bits_per_byte"] - results["baseline"]["bpb"][ds]["bits_per_byte"]
            for ds in text_sets(prepared)
        }
    if out:
        write_json(Path(out), full)
    return {**full, "models": {n: tasks.slim(r) for n, r in results.items()}}
