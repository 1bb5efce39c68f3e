"""PubMedQA (PQA-L format): loading, lm-evaluation-harness scoring, accuracy, macro-F1, bootstrap intervals.

The answer is chosen exactly as lm-evaluation-harness 0.4.13's `pubmedqa` task chooses it (checked
against its source: lm_eval/tasks/pubmedqa/, lm_eval/api/model.py, lm_eval/models/huggingface.py;
tests/evaluation/test_lm_eval_parity.py runs lm-eval itself and compares every question):

    prompt  "Abstract: " + "\n".join(CONTEXTS) + "\nQuestion: " + QUESTION + "\nAnswer:"
    choices " yes", " no", " maybe" (lm-eval's choices "yes"/"no"/"maybe" after its target delimiter " ")
    tokens  the prompt and prompt + choice are encoded with the tokenizer's own special tokens (as
            lm-eval's tok_encode); the choice's tokens are those of prompt + choice past the length of
            the encoded prompt; a sequence longer than the model's context + 1 is cut from the left
    acc       argmax of the summed log-likelihood of each choice's tokens (log-softmax over every
              output row of the model, as lm-eval), first on ties
    acc_bytes argmax of that log-likelihood divided by the choice's UTF-8 bytes without the
              delimiter (3, 2, 5): lm-eval's `acc_bytes` metric of the same task

Few-shot prompts follow lm-eval's layout (each example: prompt + " " + answer + "\n\n"); the
examples themselves are drawn from a pool here (lm-eval draws from its own train split).

Accepted files: the official ori_pqal.json ({id: {"QUESTION", "CONTEXTS", "final_decision", ...}}),
a JSON list, or JSONL of records with an id field ("id", "pubid" or "PMID"). Field names are matched
case-insensitively; "context" may be a string, a list, or {"contexts": [...]} (the HF layout);
the label may be "final_decision", "label" or "answer". Texts are used as they are (lm-eval does not
strip them either).
"""

from __future__ import annotations

import gzip
import json
import logging
import random
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import InputError
from .bpb import model_context
from .choices import choice_loglikelihoods, encode_pair, tok_encode  # noqa: F401 (re-exported)

log = logging.getLogger(__name__)

LABELS = ("yes", "no", "maybe")  # lm-eval's doc_to_choice, in its order (argmax ties go to the first)
TARGET_DELIMITER = " "  # lm-eval's default target_delimiter, put before each choice
FEWSHOT_DELIMITER = "\n\n"  # lm-eval's default fewshot_delimiter, after each example's answer
CHOICES = tuple(TARGET_DELIMITER + lab for lab in LABELS)
CHOICE_BYTES = tuple(len(lab.encode("utf-8")) for lab in LABELS)  # lm-eval's acc_bytes divisors

_ID_KEYS = ("id", "pubid", "pmid")
_QUESTION_KEYS = ("question",)
_CONTEXT_KEYS = ("contexts", "context")
_LABEL_KEYS = ("final_decision", "label", "answer")


@dataclass(frozen=True)
class Question:
    id: str
    question: str
    contexts: tuple[str, ...]  # the abstract's sections, joined by "\n" in the prompt
    label: str


def _field(rec: dict, keys: tuple[str, ...], where: str, what: str) -> Any:
    lower = {str(k).lower(): v for k, v in rec.items()}
    for k in keys:
        if k in lower and lower[k] is not None:
            return lower[k]
    raise InputError(
        f"{where}: missing field {what} (one of {', '.join(repr(k) for k in keys)}); a PubMedQA record needs "
        f"QUESTION, CONTEXTS and final_decision, as in ori_pqal.json"
    )


def _contexts(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, dict):  # HF layout: {"contexts": [...], "labels": [...], ...}
        value = value.get("contexts")
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise InputError(f"{where}: CONTEXTS must be a string or a list of strings, not {type(value).__name__}")


def _parse_record(rec: Any, rid: str | None, where: str) -> Question:
    if not isinstance(rec, dict):
        raise InputError(f"{where}: a record must be a JSON object, got {type(rec).__name__}")
    if rid is None:
        rid = str(_field(rec, _ID_KEYS, where, "id"))
    question = _field(rec, _QUESTION_KEYS, where, "QUESTION")
    contexts = _contexts(_field(rec, _CONTEXT_KEYS, where, "CONTEXTS"), where)
    label = str(_field(rec, _LABEL_KEYS, where, "final_decision")).strip().lower()
    if label not in LABELS:
        raise InputError(f"{where}: final_decision is '{label}'; it must be one of {', '.join(LABELS)}")
    if not isinstance(question, str) or not question.strip():
        raise InputError(f"{where}: QUESTION must be a non-empty string")
    return Question(id=str(rid), question=question, contexts=contexts, label=label)


def _read_text(path: Path) -> str:
    """A file's UTF-8 text, gunzipped when it ends in .gz."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rt", encoding="utf-8") as f:
                return f.read()
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError, EOFError, zlib.error) as e:
        raise InputError(f"{path}: cannot read it as UTF-8 text ({e})") from None


def load_questions(
    path: str | Path, ids: Sequence[str] | None = None, exclude: Sequence[str] = (), max_samples: int | None = None
) -> list[Question]:
    """Read a PubMedQA-format file.

    Args:
        path: .json (dict by id, or a list) or .jsonl file, optionally .gz.
        ids: keep only these ids, in this order (e.g. the official test split).
        exclude: drop these ids (few-shot pools leave out the evaluated questions).
        max_samples: keep a seeded sample of N (in file order).
    Raises:
        InputError: missing file, bad JSON, a record without a required field, or unknown ids.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"PubMedQA file {path} does not exist")
    text = _read_text(path)
    items: list[Question] = []
    data: Any = None
    if not path.name.endswith((".jsonl", ".jsonl.gz")):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            if e.msg != "Extra data":  # "Extra data" = several JSON values: read it as JSONL below
                raise InputError(f"{path}: not valid JSON at line {e.lineno} ({e.msg})") from None
    if data is None:
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise InputError(f"{path}:{n}: not valid JSON ({e.msg})") from None
            items.append(_parse_record(rec, None, f"{path}:{n}"))
    elif isinstance(data, dict):
        items = [_parse_record(rec, str(k), f"{path}: record {k}") for k, rec in data.items()]
    elif isinstance(data, list):
        items = [_parse_record(rec, None, f"{path}: record #{i}") for i, rec in enumerate(data)]
    else:
        raise InputError(f"{path}: expected an object keyed by id, a list of records, or JSONL")
    if not items:
        raise InputError(f"{path} holds no questions")
    if ids is not None:
        by_id = {q.id: q for q in items}
        missing = [i for i in ids if str(i) not in by_id]
        if missing:
            raise InputError(f"{path}: {len(missing)} requested id(s) are not in the file, e.g. {missing[:3]}")
        items = [by_id[str(i)] for i in ids]
    if exclude:
        drop = {str(i) for i in exclude}
        items = [q for q in items if q.id not in drop]
    if max_samples is not None and max_samples < len(items):
        # A seeded sample in file order, not the first N: files are often sorted by label or id.
        keep = sorted(random.Random(0).sample(range(len(items)), max_samples))
        items = [items[i] for i in keep]
    return items


def load_split_ids(path: str | Path) -> list[str]:
    """Ids of a split file: the keys of a JSON object (test_ground_truth.json) or a JSON list."""
    path = Path(path)
    try:
        data = json.loads(_read_text(path))
    except json.JSONDecodeError as e:
        raise InputError(f"split file {path}: cannot read it as JSON ({e})") from None
    if isinstance(data, dict):
        return [str(k) for k in data]
    if isinstance(data, list):
        return [str(k) for k in data]
    raise InputError(f"split file {path}: expected a JSON object keyed by id or a list of ids")


# --------------------------------------------------------------------------------------------------
# prompts


def prompt_text(q: Question, shots: Sequence[Question] = ()) -> str:
    """lm-eval's pubmedqa context: few-shot examples with their answers, then this question's prompt."""
    examples = "".join(doc_to_text(s) + TARGET_DELIMITER + s.label + FEWSHOT_DELIMITER for s in shots)
    return examples + doc_to_text(q)


def doc_to_text(q: Question) -> str:
    """lm_eval/tasks/pubmedqa/preprocess_pubmedqa.py: doc_to_text."""
    return "Abstract: {}\nQuestion: {}\nAnswer:".format("\n".join(q.contexts), q.question)


# --------------------------------------------------------------------------------------------------
# metrics


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Macro-F1 over the labels present in y_true or y_pred (sklearn's f1_score(average='macro'))."""
    labels = np.union1d(y_true, y_pred)
    f1s = []
    for lab in labels:
        tp = np.sum((y_pred == lab) & (y_true == lab))
        fp = np.sum((y_pred == lab) & (y_true != lab))
        fn = np.sum((y_pred != lab) & (y_true == lab))
        denom = 2 * tp + fp + fn
        f1s.append(2 * tp / denom if denom else 0.0)
    return float(np.mean(f1s)) if f1s else 0.0


def _macro_f1_batch(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Macro-F1 for each row of (B, n) label-code arrays, vectorised (labels 0..2)."""
    f1s, present = [], []
    for lab in range(len(LABELS)):
        t, p = y_true == lab, y_pred == lab
        tp = np.sum(t & p, axis=1)
        fp = np.sum(~t & p, axis=1)
        fn = np.sum(t & ~p, axis=1)
        denom = 2 * tp + fp + fn
        f1s.append(np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0))
        present.append(np.any(t | p, axis=1))
    f1 = np.stack(f1s)  # (labels, B)
    pres = np.stack(present)
    return (f1 * pres).sum(0) / np.maximum(pres.sum(0), 1)


def _codes(labels: Sequence[str]) -> np.ndarray:
    return np.array([LABELS.index(x) for x in labels], dtype=np.int64)


def metrics(y_true: Sequence[str], y_pred: Sequence[str], bootstrap: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Accuracy ("acc") and macro-F1 with 95 % percentile bootstrap intervals (resampling questions)."""
    t, p = _codes(y_true), _codes(y_pred)
    out: dict[str, Any] = {
        "n": int(len(t)),
        "acc": float(np.mean(t == p)) if len(t) else None,
        "macro_f1": macro_f1(t, p) if len(t) else None,
        "label_counts": {lab: int(np.sum(t == i)) for i, lab in enumerate(LABELS)},
        "prediction_counts": {lab: int(np.sum(p == i)) for i, lab in enumerate(LABELS)},
    }
    if bootstrap and len(t):
        idx = np.random.default_rng(seed).integers(0, len(t), size=(bootstrap, len(t)))  # (B, n)
        acc = np.mean(t[idx] == p[idx], axis=1)
        f1 = _macro_f1_batch(t[idx], p[idx])
        out["acc_ci95"] = [float(np.percentile(acc, 2.5)), float(np.percentile(acc, 97.5))]
        out["macro_f1_ci95"] = [float(np.percentile(f1, 2.5)), float(np.percentile(f1, 97.5))]
        out["bootstrap"] = bootstrap
    return out


def paired_difference(
    model_preds: dict[str, dict], baseline_preds: dict[str, dict], bootstrap: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """Paired bootstrap of (model - baseline) accuracy and macro-F1 over the questions both scored.

    Each argument maps question id -> {"label", "pred"}. Returns the point differences, their 95 %
    intervals and p_not_better = share of resamples where the model's accuracy is not above the
    baseline's.
    """
    ids = [i for i in model_preds if i in baseline_preds]
    if not ids:
        return {"n": 0, "note": "no question scored by both models"}
    t = _codes([model_preds[i]["label"] for i in ids])
    pm = _codes([model_preds[i]["pred"] for i in ids])
    pb = _codes([baseline_preds[i]["pred"] for i in ids])
    out: dict[str, Any] = {
        "n": len(ids),
        "accuracy_diff": float(np.mean(t == pm) - np.mean(t == pb)),
        "macro_f1_diff": macro_f1(t, pm) - macro_f1(t, pb),
    }
    if bootstrap:
        idx = np.random.default_rng(seed).integers(0, len(ids), size=(bootstrap, len(ids)))
        d_acc = np.mean(t[idx] == pm[idx], axis=1) - np.mean(t[idx] == pb[idx], axis=1)
        d_f1 = _macro_f1_batch(t[idx], pm[idx]) - _macro_f1_batch(t[idx], pb[idx])
        out["accuracy_diff_ci95"] = [float(np.percentile(d_acc, 2.5)), float(np.percentile(d_acc, 97.5))]
        out["macro_f1_diff_ci95"] = [float(np.percentile(d_f1, 2.5)), float(np.percentile(d_f1, 97.5))]
        out["p_not_better"] = float(np.mean(d_acc <= 0))
        out["bootstrap"] = bootstrap
    return out


# --------------------------------------------------------------------------------------------------
# scoring


def choose_shots(pool: Sequence[Question], k: int, seed: int = 0) -> list[Question]:
    """k few-shot examples drawn with a fixed seed; the same examples for every question and model."""
    if k <= 0:
        return []
    if len(pool) < k:
        raise InputError(f"few-shot needs {k} examples but the pool holds {len(pool)}; lower evaluation.qa.fewshot_k")
    return random.Random(seed).sample(list(pool), k)


def score_questions(
    model: Any,
    tokenizer: Any,
    questions: Sequence[Question],
    shots: Sequence[Question] = (),
    context: int | None = None,
    batch_size: int = 8,
    bootstrap: int = 1000,
    seed: int = 0,
    on_batch: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Answer every question as lm-eval's pubmedqa task does; return both figures and the predictions.

    Args:
        context: tokens the model reads (lm-eval's max_length); None = the model's context.
    Returns:
        "acc" (lm-eval's choice: summed log-likelihood) with "acc_ci95", "macro_f1", "macro_f1_ci95",
        "prediction_counts"; the same for the per-byte choice with the suffix "_bytes" ("acc_bytes",
        ...); "n", "label_counts", "skipped" (a choice longer than the context), "truncated_questions"
        (prompt cut from the left to fit), "scoring" (which figure is which) and "predictions":
        {id: {"label", "pred", "pred_bytes", "loglikelihood": {label: summed log-likelihood}}}.
    """
    model.eval()
    context = context or model_context(model)
    items = [(q.id, prompt_text(q, shots), CHOICES) for q in questions]
    scored = choice_loglikelihoods(model, tokenizer, items, context, batch_size=batch_size, on_batch=on_batch)
    lls, skipped, truncated = scored.loglikelihoods, scored.skipped, scored.truncated
    preds: dict[str, dict] = {}
    for q in questions:
        if q.id not in lls:
            continue
        ll = np.array(lls[q.id])
        preds[q.id] = {
            "label": q.label,
            "pred": LABELS[int(np.argmax(ll))],  # lm-eval: pred = np.argmax(lls)
            "pred_bytes": LABELS[int(np.argmax(ll / np.array(CHOICE_BYTES)))],  # lls / byte_length
            "loglikelihood": dict(zip(LABELS, ll.tolist())),
        }
    truth = [p["label"] for p in preds.values()]
    out = metrics(truth, [p["pred"] for p in preds.values()], bootstrap, seed)
    per_byte = metrics(truth, [p["pred_bytes"] for p in preds.values()], bootstrap, seed)
    for k, name in (
        ("acc", "acc_bytes"),
        ("acc_ci95", "acc_bytes_ci95"),
        ("macro_f1", "macro_f1_bytes"),
        ("macro_f1_ci95", "macro_f1_bytes_ci95"),
        ("prediction_counts", "prediction_counts_bytes"),
    ):
        if k in per_byte:
            out[name] = per_byte[k]
    out.update(
        skipped=len(skipped),
        skipped_ids=skipped[:20],
        shots=len(shots),
        truncated_questions=len(truncated),
        context=context,
        scoring={
            "acc": "lm-evaluation-harness pubmedqa: argmax of the summed log-likelihood of ' yes'/' no'/"
            "' maybe' after 'Abstract: ...\\nQuestion: ...\\nAnswer:'",
            "acc_bytes": "the same log-likelihoods divided by the answer's UTF-8 bytes (lm-eval's acc_bytes)",
        },
        predictions=preds,
    )
    return out
