"""Build the BC5CDR entity cloze (examples/bc5cdr_cloze/) from the BC5CDR test set's PubTator file.

    python -m benchmarks.build_bc5cdr_cloze [--source ../shared/data/biomed/raw/bc5cdr/CDR_TestSet.PubTator.txt]

Writes, deterministically (seeded; the same bytes on every run):
    examples/bc5cdr_cloze/bc5cdr_cloze.jsonl          the questions (sampled with --seed, never the first N)
    examples/bc5cdr_cloze/test_documents.jsonl.gz     the 500 test abstracts, for corpus.exclude_inputs
The lm-eval task YAML beside them (bc5cdr_cloze.yaml) reads the questions file.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from vocabadapt.evaluation.cloze import build_questions, exclusion_records, read_pubtator, write_jsonl

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "examples" / "bc5cdr_cloze"
DEFAULT_SOURCE = ROOT.parent / "shared" / "data" / "biomed" / "raw" / "bc5cdr" / "CDR_TestSet.PubTator.txt"


def main() -> None:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.build_bc5cdr_cloze",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="BC5CDR PubTator file (the test set)")
    ap.add_argument("--questions", type=int, default=600, help="number of questions to sample")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    docs = read_pubtator(args.source)
    questions = build_questions(docs, args.questions, seed=args.seed)
    write_jsonl(args.out / "bc5cdr_cloze.jsonl", questions)
    write_jsonl(args.out / "test_documents.jsonl.gz", exclusion_records(docs))
    by_type = {t: sum(q["type"] == t for q in questions) for t in ("Chemical", "Disease")}
    print(f"{len(questions)} questions from {len({q['pmid'] for q in questions})} of {len(docs)} abstracts {by_type}")


if __name__ == "__main__":
    main()
