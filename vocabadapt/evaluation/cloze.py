"""A multiple-choice entity cloze from PubTator annotations (BC5CDR): build, load and score it.

Each question masks one annotated chemical or disease mention of an abstract. The context is the
abstract's text (title, space, abstract: PubTator's offset frame) before the mention; the choices are
the gold mention and `distractors` mentions of the same type from other abstracts, drawn with a seed.
A causal LM scores each choice as a continuation of the context, which is how lm-evaluation-harness
scores `output_type: multiple_choice`; the task ships as an lm-eval YAML over the same JSONL
(examples/bc5cdr_cloze/), so any lm-eval user can run it.

Scored as lm-eval 0.4.13 scores multiple_choice (lm_eval/api/task.py, process_results):
    context   the record's "context" (doc_to_text); choices its "choices" (doc_to_choice), each
              continuation " " + choice (the default target_delimiter); gold the index "gold"
    acc       argmax of the summed log-likelihood of each continuation's tokens (first on ties)
    acc_norm  argmax of that log-likelihood divided by the choice's length in characters
    acc_bytes the same divided by the choice's UTF-8 bytes (equal to acc_norm for ASCII choices)
The log-likelihoods come from choices.choice_loglikelihoods, the one implementation of lm-eval's
request layout (tests/evaluation/test_lm_eval_parity.py runs lm-eval itself on the task YAML).
"""

from __future__ import annotations

import json
import logging
import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from ..errors import InputError
from .bpb import model_context
from .choices import choice_loglikelihoods, mean_interval

log = logging.getLogger(__name__)

ENTITY_TYPES = ("Chemical", "Disease")


@dataclass(frozen=True)
class Mention:
    start: int  # character offsets into title + " " + abstract
    end: int
    text: str
    type: str  # "Chemical" or "Disease"
    concept: str  # MeSH id ("D015738"; "-1" when unnormalised)


@dataclass(frozen=True)
class Document:
    pmid: str
    title: str
    abstract: str
    mentions: tuple[Mention, ...]

    @property
    def text(self) -> str:
        """Title, space, abstract: the text PubTator's offsets index."""
        return self.title + " " + self.abstract


def read_pubtator(path: Path) -> list[Document]:
    """Parse a PubTator file (`PMID|t|title`, `PMID|a|abstract`, then tab-separated mention lines
    `PMID start end text type concept`; relation lines `PMID CID chem disease` are skipped).

    Raises:
        InputError: the file is missing or unreadable, a mention line is malformed or its offsets do not
            give its text (names the line), or the file has no document or no mention annotation.
    """
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: cannot read the PubTator file ({type(e).__name__}: {e})") from None
    titles: dict[str, str] = {}
    abstracts: dict[str, str] = {}
    mentions: dict[str, list[Mention]] = defaultdict(list)
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if "|t|" in line[:20] or "|a|" in line[:20]:
            pmid, kind, text = line.split("|", 2)
            (titles if kind == "t" else abstracts)[pmid] = text
            continue
        cols = line.split("\t")
        if len(cols) == 4 and cols[1] in ("CID",):  # a chemical-induced-disease relation
            continue
        if len(cols) < 6 or not cols[1].isdigit() or not cols[2].isdigit():
            raise InputError(f"{path}:{n}: not a PubTator title, abstract or mention line: {line[:80]!r}")
        pmid, start, end, text, etype, concept = cols[:6]
        mentions[pmid].append(Mention(int(start), int(end), text, etype, concept))
    if not titles:
        raise InputError(f"{path}: no PubTator document (PMID|t|title lines); is it a PubTator file?")
    if not any(mentions.values()):
        raise InputError(
            f"{path}: {len(titles)} document(s) but no mention annotation (PMID<TAB>start<TAB>end<TAB>text<TAB>type "
            "lines); a cloze needs annotated chemical/disease mentions"
        )
    docs = []
    for pmid, title in titles.items():
        doc = Document(pmid, title, abstracts.get(pmid, ""), tuple(mentions.get(pmid, ())))
        full = doc.text
        for m in doc.mentions:
            if full[m.start : m.end] != m.text:
                raise InputError(
                    f"{path}: PMID {pmid}: mention {m.text!r} at {m.start}-{m.end} does not match the text there "
                    f"({full[m.start : m.end]!r})"
                )
        docs.append(doc)
    return docs


def _candidates(d: Document, min_context_chars: int) -> list[Mention]:
    """The mentions of `d` a question may mask: an entity type, enough context, and not given away by it."""
    full = d.text
    out = []
    for m in d.mentions:
        ctx = full[: m.start]
        if m.type not in ENTITY_TYPES or m.start < min_context_chars or not ctx.endswith(" "):
            continue  # mid-word mentions ("-induced") would need a delimiter other than " "
        earlier = {x.concept for x in d.mentions if x.end <= m.start}
        if m.text.lower() in ctx.lower() or (m.concept != "-1" and m.concept in earlier):
            continue
        out.append(m)
    return out


def build_questions(
    docs: Sequence[Document],
    n_questions: int,
    *,
    distractors: int = 3,
    seed: int = 0,
    min_context_chars: int = 200,
) -> list[dict[str, Any]]:
    """Sample cloze questions: one masked mention per sampled abstract while abstracts last, seeded.

    A mention qualifies when it starts at least `min_context_chars` into the text (enough context to
    guess from), and neither its string nor its concept occurs earlier in the context (else the answer
    is a copy, not knowledge). Distractors are distinct mention strings of the same type from other
    abstracts whose concept differs from the gold one and that do not occur in the context.

    Returns:
        records {"id", "pmid", "type", "context", "choices", "gold"} (gold: index into choices), in a
        seeded order; fewer than n_questions when not enough mentions qualify.
    Raises:
        InputError: no mention qualifies.
    """
    rng = random.Random(seed)
    # The pool of distractors per type: (mention string, concept, pmid), one entry per distinct string.
    pool: dict[str, dict[str, tuple[str, str]]] = {t: {} for t in ENTITY_TYPES}
    for d in docs:
        for m in d.mentions:
            if m.type in pool:
                pool[m.type].setdefault(m.text.lower(), (m.text, m.concept))
    pools = {t: sorted(v.values()) for t, v in pool.items()}

    order = list(docs)
    rng.shuffle(order)
    per_doc = {d.pmid: _candidates(d, min_context_chars) for d in order}
    questions: list[dict[str, Any]] = []
    rounds = 0
    # Round-robin over the shuffled abstracts: a second mention of an abstract only after every
    # abstract gave one, so the questions spread over as many abstracts as possible.
    while len(questions) < n_questions and any(per_doc.values()):
        for d in order:
            if len(questions) >= n_questions:
                break
            cands = per_doc[d.pmid]
            if not cands:
                continue
            m = cands.pop(rng.randrange(len(cands)))
            ctx = d.text[: m.start].rstrip(" ")
            doc_strings = {x.text.lower() for x in d.mentions}
            options = [
                text
                for text, concept in pools[m.type]
                if text.lower() not in doc_strings and concept != m.concept and text.lower() not in ctx.lower()
            ]
            if len(options) < distractors:
                continue
            choices = [m.text, *rng.sample(options, distractors)]
            rng.shuffle(choices)
            questions.append(
                {
                    "id": f"{d.pmid}:{m.start}",
                    "pmid": d.pmid,
                    "type": m.type,
                    "context": ctx,
                    "choices": choices,
                    "gold": choices.index(m.text),
                }
            )
        rounds += 1
    if not questions:
        raise InputError("no cloze question could be built: no mention has enough context and distractors")
    log.info(
        "cloze: %d questions from %d abstracts (%d rounds)", len(questions), len({q["pmid"] for q in questions}), rounds
    )
    return questions


@dataclass(frozen=True)
class ClozeQuestion:
    id: str
    context: str
    choices: tuple[str, ...]
    gold: int  # index into choices
    type: str = ""


def load_cloze(path: str | Path, max_samples: int | None = None) -> list[ClozeQuestion]:
    """Read a cloze JSONL file ({"id", "context", "choices", "gold", ...} per line, as build_questions writes).

    Args:
        max_samples: keep a seeded sample of N (in file order), not the first N.
    Raises:
        InputError: a missing file, a line that is not JSON, or a record without a valid context,
            choices (two or more strings) or gold index; the message names the file and line.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"cloze file {path} does not exist; build it with python -m benchmarks.build_bc5cdr_cloze")
    out: list[ClozeQuestion] = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{n}"
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputError(f"{where}: not valid JSON ({e.msg})") from None
        choices, gold, context = rec.get("choices"), rec.get("gold"), rec.get("context")
        if not isinstance(context, str) or not context:
            raise InputError(f"{where}: 'context' must be a non-empty string")
        if not isinstance(choices, list) or len(choices) < 2 or not all(isinstance(c, str) and c for c in choices):
            raise InputError(f"{where}: 'choices' must be a list of two or more non-empty strings")
        if not isinstance(gold, int) or isinstance(gold, bool) or not 0 <= gold < len(choices):
            raise InputError(f"{where}: 'gold' must be an index into choices (0..{len(choices) - 1}), not {gold!r}")
        out.append(ClozeQuestion(str(rec.get("id", n)), context, tuple(choices), gold, str(rec.get("type", ""))))
    if not out:
        raise InputError(f"{path} holds no cloze question")
    if max_samples is not None and max_samples < len(out):
        keep = sorted(random.Random(0).sample(range(len(out)), max_samples))
        out = [out[i] for i in keep]
    return out


def score_cloze(
    model: Any,
    tokenizer: Any,
    questions: Sequence[ClozeQuestion],
    context: int | None = None,
    batch_size: int = 8,
    bootstrap: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Answer every question as lm-eval's multiple_choice does; return acc, acc_norm, acc_bytes with intervals.

    Returns:
        {"n", "chance", "acc", "acc_ci95", "acc_norm", "acc_norm_ci95", "acc_bytes", "acc_bytes_ci95",
         "by_type": {type: {"n", "acc"}}, "skipped", "truncated_questions", "context", "scoring",
         "predictions": {id: {"gold", "pred", "pred_norm", "pred_bytes", "loglikelihood": [...]}}}.
    """
    model.eval()
    context = context or model_context(model)
    items = [(q.id, q.context, [" " + c for c in q.choices]) for q in questions]  # lm-eval's target_delimiter
    scored = choice_loglikelihoods(model, tokenizer, items, context, batch_size=batch_size)
    preds: dict[str, dict[str, Any]] = {}
    for q in questions:
        if q.id not in scored.loglikelihoods:
            continue
        ll = np.array(scored.loglikelihoods[q.id])
        chars = np.array([len(c) for c in q.choices], dtype=float)
        nbytes = np.array([len(c.encode("utf-8")) for c in q.choices], dtype=float)
        preds[q.id] = {
            "gold": q.gold,
            "type": q.type,
            "pred": int(np.argmax(ll)),
            "pred_norm": int(np.argmax(ll / chars)),
            "pred_bytes": int(np.argmax(ll / nbytes)),
            "loglikelihood": ll.tolist(),
        }
    out: dict[str, Any] = {"n": len(preds)}
    out["chance"] = float(np.mean([1 / len(q.choices) for q in questions if q.id in preds])) if preds else None
    for name, key in (("acc", "pred"), ("acc_norm", "pred_norm"), ("acc_bytes", "pred_bytes")):
        correct = np.array([p[key] == p["gold"] for p in preds.values()], dtype=float)
        out[name] = float(correct.mean()) if len(correct) else None
        out[f"{name}_ci95"] = mean_interval(correct, bootstrap, seed)
    types = sorted({p["type"] for p in preds.values() if p["type"]})
    out["by_type"] = {
        t: {
            "n": sum(p["type"] == t for p in preds.values()),
            "acc": float(np.mean([p["pred"] == p["gold"] for p in preds.values() if p["type"] == t])),
        }
        for t in types
    }
    out.update(
        skipped=len(scored.skipped),
        truncated_questions=len(scored.truncated),
        context=context,
        bootstrap=bootstrap,
        scoring={
            "acc": "lm-evaluation-harness multiple_choice: argmax of the summed log-likelihood of ' ' + choice "
            "after the context",
            "acc_norm": "the same log-likelihoods divided by the choice's characters (lm-eval's acc_norm)",
            "acc_bytes": "the same divided by the choice's UTF-8 bytes (lm-eval's acc_bytes)",
        },
        predictions=preds,
    )
    return out


def exclusion_records(docs: Iterable[Document]) -> list[dict[str, str]]:
    """One record per abstract for corpus.exclude_inputs: {"pmid", "title", "text"} (text = title + newline +
    abstract, the way a corpus joins title and abstract fields), so it matches by text and by title."""
    return [{"pmid": d.pmid, "title": d.title, "text": d.title + "\n" + d.abstract} for d in docs]


def write_jsonl(path: Path, records: Iterable[dict[str, Any]]) -> None:
    """Write records as JSONL (UTF-8, one per line; .gz compresses reproducibly: no name, mtime 0)."""
    import gzip
    import io

    from ..io import atomic_write

    data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")
    if str(path).endswith(".gz"):
        buf = io.BytesIO()
        with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0) as g:
            g.write(data)
        data = buf.getvalue()
    with atomic_write(path, "wb", encoding=None) as f:
        f.write(data)
