"""Rules about data and alignment: vectors trained or not, threshold and pivots, evaluation leaks, fastText n-grams.

The threshold, pivot and fastText rules speak only when co-occurrence vectors are trained
(Config.vector_plan): with an alignment.init that reads no vector alignment those settings change nothing.
"""

from __future__ import annotations

from pathlib import Path

from ..config import Config, TargetTokenizerSpec
from ..config.schema import VECTOR_ALIGNMENT_KEYS
from ..registry import reads_vectors
from .arithmetic import (
    THRESHOLD_RANGE,
)
from .findings import Facts, Finding, missing, rule

# The settings that shape only the vector alignment (no effect when no vectors are trained).
VECTOR_ONLY_KEYS = ("embedding.fasttext", *VECTOR_ALIGNMENT_KEYS)


@rule("vectors", order=69)
def check_vectors(config: Config, facts: Facts) -> list[Finding]:
    """Whether embed trains co-occurrence vectors: say so when it does not, or trains them for nothing."""
    plan, init = config.vector_plan(), config.alignment.init
    enabled = config.embedding.enabled
    ev = {"alignment.init": init, "embedding.enabled": enabled, "vectors_trained": plan.trained}
    if not plan.trained:
        return [
            Finding(
                "vectors_skipped",
                "info",
                "alignment.init",
                f"the embed and align stages train and use no co-occurrence vectors: {plan.reason}. align maps "
                f"identical tokens and gives every other token alignment.fallback; "
                f"{', '.join(VECTOR_ONLY_KEYS)} have no effect.",
                "nothing to do; for the TokAlign vector alignment set alignment.init: tokalign (or soft), or "
                "embedding.enabled: true to train the vectors for align/summary.json's statistics alone",
                {**ev, "keys_without_effect": list(VECTOR_ONLY_KEYS)},
            )
        ]
    if enabled is True and not reads_vectors(init):
        return [
            Finding(
                "vectors_unused",
                "info",
                "embedding.enabled",
                f"embedding.enabled is true but alignment.init = {init} reads no vector alignment: the embed stage "
                "trains vectors that only align/summary.json's statistics use; the model's rows do not change.",
                "set embedding.enabled: auto to skip the embed stage's training",
                ev,
            )
        ]
    return []


@rule("alignment", order=70)
def check_alignment(config: Config, facts: Facts) -> list[Finding]:
    """Similarity threshold as a cosine; pivot count against the identical-token pairs available."""
    al = config.alignment
    if not config.vector_plan().trained:
        return []  # no vector alignment: the threshold and pivots change nothing (see check_vectors)
    out: list[Finding] = []
    lo, hi = THRESHOLD_RANGE
    t = al.similarity_threshold
    if not lo <= t <= hi:
        what = (
            "accepts anti-correlated pairs, so almost every target token counts as aligned"
            if t < lo
            else "only near-identical representations pass, so most tokens fall back"
        )
        out.append(
            Finding(
                "similarity_threshold",
                "warning",
                "alignment.similarity_threshold",
                f"similarity_threshold {t:g} is a cosine of relative representations outside [{lo}, {hi}]: it {what}.",
                "pick it from align/summary.json's similarity histogram; 0.3–0.7 is typical",
                {"similarity_threshold": t, "range": [lo, hi]},
            )
        )
    if facts.identical_pairs is None:
        out.append(
            missing(
                "pivot_count",
                "alignment.pivot_count",
                f"pivot_count {al.pivot_count:,} against the identical-token pairs: not in the statistics",
                "pass --corpus-stats with identical_pairs (the align stage's summary)",
                {"pivot_count": al.pivot_count},
            )
        )
    elif al.pivot_count > facts.identical_pairs:
        out.append(
            Finding(
                "pivot_count",
                "error",
                "alignment.pivot_count",
                f"pivot_count {al.pivot_count:,} > {facts.identical_pairs:,} identical-token pairs available.",
                f"set pivot_count ≤ {facts.identical_pairs:,} (paper: 300)",
                {"pivot_count": al.pivot_count, "identical_pairs": facts.identical_pairs},
            )
        )
    return out


@rule("eval_leak", order=80)
def check_eval_leak(config: Config, facts: Facts) -> list[Finding]:
    """Evaluation data that is the training data."""
    ev_cfg, corpus = config.evaluation, config.corpus
    if not ev_cfg.enabled:
        return []
    out: list[Finding] = []
    train = {str(Path(p).resolve()) for p in corpus.inputs}

    def trains_on(p: str) -> bool:
        rp = Path(p).resolve()
        return str(rp) in train or any(rp.match(t) for t in train if any(c in t for c in "*?["))

    if "heldout" in ev_cfg.datasets and not corpus.heldout_inputs and corpus.heldout_fraction == 0:
        out.append(
            Finding(
                "eval_leak",
                "error",
                "corpus.heldout_fraction",
                "evaluation uses 'heldout' but heldout_fraction is 0 and no heldout_inputs are given: "
                "bits per byte would be measured on training text.",
                "set corpus.heldout_fraction (e.g. 0.01) or corpus.heldout_inputs",
                {"heldout_fraction": 0.0},
            )
        )
    leaked = [p for p in ev_cfg.datasets if p not in ("heldout", "pubmedqa") and trains_on(p)]
    leaked += [p for p in corpus.heldout_inputs if trains_on(p)]
    if ev_cfg.qa.enabled and ev_cfg.qa.file and trains_on(ev_cfg.qa.file):
        leaked.append(ev_cfg.qa.file)
    if leaked:
        out.append(
            Finding(
                "eval_leak",
                "error",
                "evaluation.datasets",
                f"evaluation files are also training inputs (corpus.inputs): {leaked}.",
                "remove them from corpus.inputs or evaluate on other files",
                {"files": leaked},
            )
        )
    return out


@rule("fasttext_ngrams", order=100)
def check_fasttext_ngrams(config: Config, facts: Facts) -> list[Finding]:
    """Character n-grams over token-id corpora share subwords between unrelated ids ('123' in '4123')."""
    ft = config.embedding.fasttext
    if (ft.minn == 0 and ft.maxn == 0) or not config.vector_plan().trained:
        return []
    return [
        Finding(
            "fasttext_ngrams",
            "warning",
            "embedding.fasttext.minn",
            f"fastText character n-grams are on (minn {ft.minn}, maxn {ft.maxn}) over a corpus of numeric "
            "token ids: ids that share digits (e.g. 123 and 4123) share vectors, which is noise.",
            "set embedding.fasttext.minn: 0 and maxn: 0",
            {"minn": ft.minn, "maxn": ft.maxn},
        )
    ]


@rule("cloze_leak", order=81)
def check_cloze_leak(config: Config, facts: Facts) -> list[Finding]:
    """A cloze evaluation whose documents nothing keeps out of the training text."""
    ev = config.evaluation
    if not ev.enabled or not ev.cloze.file or config.corpus.exclude_inputs:
        return []
    if "cloze" not in ev.datasets:
        return []
    return [
        Finding(
            "cloze_leak",
            "warning",
            "corpus.exclude_inputs",
            f"evaluation.cloze.file ({Path(ev.cloze.file).name}) is scored but corpus.exclude_inputs is empty: "
            "if the training corpus holds the cloze's abstracts, the model is tested on text it trained on.",
            "set corpus.exclude_inputs to the cloze's documents (examples/bc5cdr_cloze/test_documents.jsonl.gz)",
            {"cloze_file": ev.cloze.file},
        )
    ]


@rule("target_tokenizer", order=68)
def check_target_tokenizer(config: Config, facts: Facts) -> list[Finding]:
    """Mined terms added as whole tokens re-split the words around them; extension adds domain tokens without that."""
    spec = config.models.target_tokenizer
    extend = spec.extend if isinstance(spec, TargetTokenizerSpec) else None
    out = []
    if config.term_mining.enabled and config.term_mining.add_to_target:
        out.append(
            Finding(
                "terms_resplit",
                "warning",
                "term_mining.add_to_target",
                "mined terms are added as whole-word tokens, which the tokenizer matches before its BPE: a word that "
                "contains one (a plural, a compound, a hyphenated form) is cut around it into pieces the model "
                "never saw, and text the source tokenizer kept whole is re-split.",
                "add domain tokens with models.target_tokenizer: {extend: {new_tokens: N}} instead (new merges "
                "only join finished source tokens), and set term_mining.add_to_target: false",
                {"add_to_target": True, "target_extended": extend is not None},
            )
        )
    if extend is not None:
        out.append(
            Finding(
                "target_extended",
                "info",
                "models.target_tokenizer",
                f"the target is the source tokenizer plus {extend.new_tokens} tokens learned on corpus/train: "
                "every source token keeps its id and row, text the new merges do not touch is segmented as the "
                "source segments it, and every target token boundary is a source token boundary.",
                "nothing to do",
                {"new_tokens": extend.new_tokens, "min_frequency": extend.min_frequency},
            )
        )
    return out
