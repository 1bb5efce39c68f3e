"""The evaluate stage and the `vocabadapt eval` command.

For every model (the source model with the run's source tokenizer, then model/init, model/stage1,
model/stage2 with their own tokenizers, and evaluation.baseline_model when set) this measures:
bits per byte on the held-out text and any extra text files (vocabadapt.evaluation.bpb), PubMedQA
zero-shot and few-shot (vocabadapt.evaluation.pubmedqa) with a paired bootstrap against the
baseline; once per run: tokenizer efficiency and the vocabulary's cost (evaluation.efficiency),
alignment quality, and the six-check verification checklist (evaluation.checklist).

Writes eval/<model>.json (everything, with per-question predictions), eval/summary.json (all models
side by side, no per-question data) and eval/checklist.json, all in one atomic directory swap.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from .config import EvaluationConfig, ModelsConfig
from .errors import InputError
from .evaluation import bpb as bpb_mod
from .evaluation import checklist as checklist_mod
from .evaluation import efficiency as eff
from .evaluation import pubmedqa as qa_mod
from .io import atomic_dir, write_json

log = logging.getLogger(__name__)

STAGE_MODELS = ("init", "stage1", "stage2")  # model/<name> directories, in pipeline order
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model")


# --------------------------------------------------------------------------------------------------
# inputs


def read_texts(path: str | Path, max_docs: int | None = None) -> list[str]:
    """Documents of a text file, read by the corpus stage's reader (vocabadapt.corpus.read_documents):
    .jsonl/.parquet ("text", else title + abstract), .txt (blank-line separated blocks), optionally .gz.
    Malformed lines are skipped and logged, as in the corpus stage.

    Raises:
        InputError: the file is missing, unreadable or holds no text.
    """
    from .corpus import FileStats, read_documents

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


def load_model_for_eval(path: str, models_cfg: ModelsConfig, cache_dir: str | None = None) -> Any:
    """load_model (safe), on the GPU when there is one, in eval mode."""
    import torch

    from .hf import load_model

    model = load_model(path, models_cfg, cache_dir)
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


@dataclass
class QASetup:
    """PubMedQA questions and few-shot examples, fixed once for all models of a run."""

    questions: list[qa_mod.Question]
    shots: list[qa_mod.Question] = field(default_factory=list)
    bootstrap: int = 1000
    source: str = ""


def qa_setup(file: str, split_ids: str | None, fewshot_file: str | None, fewshot_k: int, bootstrap: int,
             max_samples: int | None) -> QASetup:
    ids = qa_mod.load_split_ids(split_ids) if split_ids else None
    questions = qa_mod.load_questions(file, ids=ids, max_samples=max_samples)
    shots: list[qa_mod.Question] = []
    if fewshot_k:
        # Few-shot examples never come from the evaluated questions (nor, with a split, from the split).
        exclude = set(ids or []) | {q.id for q in questions}
        pool = qa_mod.load_questions(fewshot_file or file, exclude=sorted(exclude))
        shots = qa_mod.choose_shots(pool, fewshot_k)
    return QASetup(questions, shots, bootstrap, str(file))


# --------------------------------------------------------------------------------------------------
# one model


def evaluate_model(name: str, model: Any, tokenizer: Any, texts: dict[str, list[str]], qa: QASetup | None,
                   cfg: EvaluationConfig, context_cap: int | None = None) -> dict[str, Any]:
    """Bits per byte on each text set, PubMedQA (zero-shot, and few-shot when configured), model facts."""
    t0 = time.perf_counter()
    check_vocab(model, tokenizer, name)
    context = bpb_mod.model_context(model, tokenizer, cap=context_cap)
    result: dict[str, Any] = {"name": name, "context": context, "facts": eff.model_facts(model),
                              "tokenizer_vocab": len(tokenizer), "bpb": {}}
    for ds, docs in texts.items():
        r = bpb_mod.bits_per_byte(model, tokenizer, docs, context=context, stride=cfg.stride,
                                  batch_size=cfg.batch_size)
        log.info("%s: %s %.4f bits/byte over %d bytes (%d tokens)", name, ds, r["bits_per_byte"], r["bytes"], r["tokens"])
        result["bpb"][ds] = r
    if qa is not None:
        r = qa_mod.score_questions(model, tokenizer, qa.questions, context=context, batch_size=cfg.batch_size,
                                   bootstrap=qa.bootstrap)
        log.info("%s: PubMedQA accuracy %.3f macro-F1 %.3f (n=%d, skipped %d)", name, r["accuracy"] or 0,
                 r["macro_f1"] or 0, r["n"], r["skipped"])
        result["pubmedqa"] = r
        if qa.shots:
            r = qa_mod.score_questions(model, tokenizer, qa.questions, shots=qa.shots, context=context,
                                       batch_size=cfg.batch_size, bootstrap=qa.bootstrap)
            log.info("%s: PubMedQA %d-shot accuracy %.3f", name, len(qa.shots), r["accuracy"] or 0)
            result["pubmedqa_fewshot"] = r
    result["wall_s"] = round(time.perf_counter() - t0, 3)
    return result


def slim(result: dict[str, Any]) -> dict[str, Any]:
    """A model's result without per-question predictions (for summaries and printing)."""
    out = dict(result)
    for k in ("pubmedqa", "pubmedqa_fewshot"):
        if isinstance(out.get(k), dict):
            out[k] = {kk: v for kk, v in out[k].items() if kk != "predictions"}
    return out


def compare_to_baseline(results: dict[str, dict], baseline: str, bootstrap: int) -> dict[str, dict]:
    """Paired bootstrap of every model's PubMedQA against the baseline's, on the same questions."""
    out: dict[str, dict] = {}
    base = results.get(baseline, {})
    for name, r in results.items():
        if name == baseline:
            continue
        for key, label in (("pubmedqa", name), ("pubmedqa_fewshot", f"{name}/fewshot")):
            if key in r and key in base:
                out[label] = qa_mod.paired_difference(r[key]["predictions"], base[key]["predictions"], bootstrap)
    return out


# --------------------------------------------------------------------------------------------------
# the stage


def _model_tokenizer(run_dir: Path, directory: Path, models_cfg: ModelsConfig) -> tuple[Any, str]:
    from .hf import load_tokenizer
    from .tokenizer_prep import load_run_tokenizer

    if has_tokenizer(directory):
        return load_tokenizer(str(directory), models_cfg), str(directory)
    log.warning("%s has no tokenizer files; using the run's target tokenizer", directory)
    return load_run_tokenizer(run_dir, "target"), str(run_dir / "tokenizers" / "target")


def run_stage(ctx: Any) -> dict[str, Any]:
    """Evaluate the source model and every stage's model; write eval/*.json (see module docstring).

    Raises:
        InputError: held-out text, a model, a tokenizer or the QA file is missing or malformed.
    """
    from .tokenizer_prep import load_run_tokenizer

    cfg = ctx.config
    ev = cfg.evaluation
    run_dir = Path(ctx.run_dir)
    if not ev.enabled:
        with atomic_dir(ctx.path("eval")) as tmp:
            write_json(tmp / "summary.json", {"skipped": True, "reason": "evaluation.enabled is false"})
        return {"skipped": True}

    # --- validate and gather inputs before loading any model ------------------------------------
    texts: dict[str, list[str]] = {}
    skips: dict[str, str] = {}
    for ds in ev.datasets:
        if ds == "heldout":
            held = run_dir / "corpus" / "heldout.jsonl"
            if not held.is_file():
                raise InputError(f"{held} is missing; run the corpus stage first (or drop 'heldout' from "
                                 f"evaluation.datasets)")
            texts["heldout"] = read_texts(held, ev.max_samples)
        elif ds == "pubmedqa":
            continue
        else:
            name = Path(ds).name.split(".")[0] or ds
            texts[name] = read_texts(ds, ev.max_samples)
    qa: QASetup | None = None
    if "pubmedqa" in ev.datasets:
        if not ev.qa.enabled:
            skips["pubmedqa"] = "evaluation.qa.enabled is false"
        elif not ev.qa.file:
            skips["pubmedqa"] = "evaluation.qa.file is not set"
        else:
            qa = qa_setup(ev.qa.file, ev.qa.split_ids, ev.qa.fewshot_file, ev.qa.fewshot_k, ev.qa.bootstrap,
                          ev.max_samples)
    for what, why in skips.items():
        log.warning("evaluate: %s skipped: %s", what, why)

    if not cfg.models.source_model:
        raise InputError("models.source_model must be set to evaluate the baseline")
    src_tok = load_run_tokenizer(run_dir, "source")
    candidates: list[tuple[str, str, Any, str]] = [
        ("source", cfg.models.source_model, src_tok, str(run_dir / "tokenizers" / "source"))]
    if ev.baseline_model:
        bdir = Path(ev.baseline_model)
        if bdir.is_dir() and not has_tokenizer(bdir):
            raise InputError(f"baseline model {bdir} has no tokenizer files; save its tokenizer into it")
        from .hf import load_tokenizer

        candidates.append(("baseline", ev.baseline_model, load_tokenizer(ev.baseline_model, cfg.models,
                                                                       cfg.tokenization.cache_dir), ev.baseline_model))
    for name in STAGE_MODELS:
        d = run_dir / "model" / name
        if (d / "config.json").is_file():
            tok, tok_src = _model_tokenizer(run_dir, d, cfg.models)
            candidates.append((name, str(d), tok, tok_src))
    baseline = "baseline" if ev.baseline_model else "source"
    cap = ev.context_length

    # --- evaluate one model at a time (only one in memory) ---------------------------------------
    results: dict[str, dict] = {}
    with ctx.progress(total=len(candidates), unit="model") as bar:
        for name, path, tok, tok_src in candidates:
            model = load_model_for_eval(path, cfg.models, cfg.tokenization.cache_dir)
            r = evaluate_model(name, model, tok, texts, qa, ev, cap)
            r.update(path=path, tokenizer=tok_src)
            results[name] = r
            del model
            bar.update(1)

    summary = build_summary(run_dir, results, baseline, texts, qa, skips, src_tok)
    checks = checklist_mod.build_checklist(
        run_dir, summary, start_idx_stage2=cfg.vocab_adaptation.train_start_idx_stage2,
        zero_rows_allowed=cfg.alignment.fallback == "zero")
    with atomic_dir(ctx.path("eval")) as tmp:
        for name, r in results.items():
            write_json(tmp / f"{name}.json", r)
        write_json(tmp / "summary.json", summary)
        write_json(tmp / "checklist.json", checks)
    counts = {s: sum(c["status"] == s for c in checks) for s in ("pass", "fail", "not-run")}
    final = summary["final"]
    return {"models": list(results), "final": final, "baseline": baseline, "checklist": counts,
            "final_bits_per_byte": _get(summary, "models", final, "bpb", "heldout", "bits_per_byte"),
            "baseline_bits_per_byte": _get(summary, "models", baseline, "bpb", "heldout", "bits_per_byte")}


def _get(d: Any, *keys: str) -> Any:
    for k in keys:
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d


def build_summary(run_dir: Path, results: dict[str, dict], baseline: str, texts: dict[str, list[str]],
                  qa: QASetup | None, skips: dict[str, str], src_tok: Any) -> dict[str, Any]:
    """eval/summary.json: models side by side, tokenizer efficiency, vocabulary cost, alignment."""
    from .tokenizer_prep import load_run_tokenizer

    final = next((n for n in reversed(STAGE_MODELS) if n in results), None)
    summary: dict[str, Any] = {
        "baseline": baseline,
        "final": final,
        "models": {n: slim(r) for n, r in results.items()},
        "datasets": {ds: {"documents": len(d), "bytes": sum(len(t.encode("utf-8")) for t in d)}
                     for ds, d in texts.items()},
        "skipped": skips,
    }
    if qa is not None:
        summary["pubmedqa_file"] = qa.source
        summary["pubmedqa_vs_baseline"] = compare_to_baseline(results, baseline, qa.bootstrap)

    # Tokenizer efficiency on the held-out text (else the first text set) with the run's tokenizers.
    eval_texts = texts.get("heldout") or next(iter(texts.values()), None)
    if eval_texts:
        terms = run_dir / "terms" / "terms.txt"
        words = eff.read_terms(terms) if terms.is_file() else eff.frequent_words(eval_texts)
        toks = {"source": src_tok}
        try:
            toks["target"] = load_run_tokenizer(run_dir, "target")
        except InputError as e:
            log.warning("tokenizer efficiency: %s", e)
        summary["tokenizers"] = {side: eff.efficiency(t, eval_texts, words) for side, t in toks.items()}
        summary["tokenizers"]["domain_words_from"] = "terms/terms.txt" if terms.is_file() else "held-out text"
        adapted = final or next((n for n in STAGE_MODELS if n in results), None)
        if adapted and "target" in summary["tokenizers"] and "source" in results:
            summary["vocab_cost"] = eff.vocab_cost(
                results["source"]["facts"], results[adapted]["facts"],
                summary["tokenizers"]["source"]["bytes_per_token"], summary["tokenizers"]["target"]["bytes_per_token"])
            summary["vocab_cost"]["compared"] = ["source", adapted]

    align = checklist_mod.read_json_or_none(run_dir / "align" / "summary.json")
    if isinstance(align, dict):
        # Scalars and small tables only; the similarity histogram is for the report's plot.
        summary["alignment"] = {k: v for k, v in align.items()
                                if k != "similarity_histogram" and len(json.dumps(v)) < 4000}
        cov = checklist_mod.coverage_of(align)
        if cov is not None:
            summary["alignment"]["coverage_fraction"] = cov
    return summary


# --------------------------------------------------------------------------------------------------
# the CLI command


def eval_command(model: str, baseline: str | None, texts: Sequence[str], pubmedqa: str | None,
                 max_samples: int | None, out: str | None) -> dict[str, Any]:
    """`vocabadapt eval MODEL [--baseline B] [--text F ...] [--pubmedqa F] [--max-samples N] [--out F]`.

    Each model is evaluated with the tokenizer saved in its directory. For PubMedQA, when the file
    is the official ori_pqal.json with test_ground_truth.json beside it, the 500-question test
    split is used; otherwise every record. Returns the result without per-question predictions;
    --out gets the full result.
    Raises:
        InputError: nothing to evaluate, a missing tokenizer, bad text or QA files.
    """
    from .hf import load_tokenizer

    cfg = EvaluationConfig()
    models_cfg = ModelsConfig()
    if not texts and not pubmedqa:
        raise InputError("nothing to evaluate: pass --text FILE (held-out text) and/or --pubmedqa FILE")
    text_sets = {Path(t).name.split(".")[0] or str(t): read_texts(t, max_samples) for t in texts}
    qa = None
    if pubmedqa:
        split = Path(pubmedqa).with_name("test_ground_truth.json")
        use_split = Path(pubmedqa).name == "ori_pqal.json" and split.is_file()
        if use_split:
            log.info("using the official test split %s", split)
        qa = qa_setup(pubmedqa, str(split) if use_split else None, None, 0, cfg.qa.bootstrap, max_samples)

    results: dict[str, dict] = {}
    for name, path in (("model", model), ("baseline", baseline)):
        if path is None:
            continue
        p = Path(path)
        if p.is_dir() and not has_tokenizer(p):
            raise InputError(f"{p} has no tokenizer files (tokenizer.json / tokenizer_config.json); "
                             f"save the model's tokenizer into it with tokenizer.save_pretrained('{p}')")
        tok = load_tokenizer(str(path), models_cfg)
        m = load_model_for_eval(str(path), models_cfg)
        results[name] = evaluate_model(name, m, tok, text_sets, qa, cfg)
        results[name]["path"] = str(path)
        del m
    full: dict[str, Any] = {"models": results}
    if baseline is not None:
        if qa is not None:
            full["pubmedqa_vs_baseline"] = compare_to_baseline(results, "baseline", cfg.qa.bootstrap)
        full["bits_per_byte_difference"] = {
            ds: results["model"]["bpb"][ds]["bits_per_byte"] - results["baseline"]["bpb"][ds]["bits_per_byte"]
            for ds in text_sets}
    if out:
        write_json(Path(out), full)
    return {**full, "models": {n: slim(r) for n, r in results.items()}}
