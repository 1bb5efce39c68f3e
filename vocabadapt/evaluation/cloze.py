"""A multiple-choice entity cloze from PubTator annotations (BC5CDR): build, load and score it.

Each question masks one annotated chemical or disease mention of an abstract. The context is the
abstract's text (title, space, abstract: PubTator's offset frame) before the mention; the choices are
the gold mention and `distractors` mentions of the same type from other abstracts, drawn with a seed.
A causal LM scores each choice as a continuation of the context, which is how lm-evaluation-harness
scores `output_type: multiple_choice`; the task ships as an lm-eval YAML over the same JSONL
(examples/bc5cdr_cloze/), so any lm-eval user can run it.

Scored as lm-eval 0.4 scores multiple_choice (lm_eval/api/task.py process_results):
    context  the record's "context" (doc_to_text), choices its "choices" (doc_to_choice), each
             continuation " " + choice (the default target_delimiter)
    acc      argmax of the summed log-likelihood of each continuation's tokens (first on ties)
    acc_norm argmax of that log-likelihood divided by the continuation's length in UTF-8 bytes,
             delimiter included (lm-eval divides by len(choice) of the delimited string: characters,
             equal to bytes for ASCII; bytes here keep it tokenizer-free)
The log-likelihoods come from pubmedqa.score_choices, the one implementation of lm-eval's request
layout (tests/evaluation/test_lm_eval_parity.py runs lm-eval itself on the YAML and compares).
"""

from __future__ import annotations

import json
import logging
import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from ..errors import InputError

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

    def candidates(d: Document) -> list[Mention]:
        full = d.text
        out = []
        for m in d.mentions:
            ctx = full[: m.start]
            if m.type not in pool or m.start < min_context_chars or not ctx.endswith(" "):
                continue  # mid-word mentions ("-induced") would need a delimiter other than " "
            earlier = {x.concept for x in d.mentions if x.end <= m.start}
            if m.text.lower() in ctx.lower() or (m.concept != "-1" and m.concept in earlier):
                continue
            out.append(m)
        return out

    order = list(docs)
    rng.shuffle(order)
    per_doc = {d.pmid: candidates(d) for d in order}
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
