"""Align speed and memory: the stage's blockwise top-k against a dense float64 reference and a floor.

    python -m benchmarks.align_speed --run-dir runs/neox_biogpt_a            # real pair + synthetic sizes
    python -m benchmarks.align_speed --run-dir runs/neox_biogpt_a --skip-synthetic

Three implementations of the same search, each in its own process so its peak memory (VmHWM) is its own:
  dense     the paper's reference algorithm as commonly written: relative representations in float64,
            the full |V_target| x |V_source| similarity matrix, then a Python loop over target tokens
            (argpartition + sort of each row for the top-k);
  blockwise vocabadapt.align (RelativeRepresentation + blockwise_topk), float32, bounded tiles;
  floor     a bare float32 blockwise matrix product of the same shape (no centring, no top-k): the
            least any exact method has to do.
The real pair uses the embeddings and identical-token pivots of an align run directory; the synthetic
cases use random vectors to show that time grows with |V_target| x |V_source| x pivots while memory
stays flat. Writes benchmarks/results/align_speed.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.harness import (
    ROOT,
    Block,
    cpu_model,
    git_commit,
    json_child,
    load_average,
    log,
    module_command,
    peak_rss_mb,
    ram_gib,
    rss_mb,
    utc_now,
    write_markdown,
)

RESULTS = ROOT / "benchmarks" / "results" / "align_speed.md"
K = 5
DIM = 100


# --------------------------------------------------------------------------------------------------
# inputs


def real_inputs(run_dir: Path, pivots: int, seed: int):
    """Target/source vectors and pivot rows exactly as the align stage chooses them."""
    from vocabadapt.align.relrep import choose_pivots
    from vocabadapt.run.layout import RunLayout
    from vocabadapt.text import vocab as V

    layout = RunLayout(run_dir)
    tv, ti, _ = layout.embeddings("target")
    sv, si, _ = layout.embeddings("source")
    _, tf = V.canonical_vocab(layout.tokenizer("target"))
    _, sf = V.canonical_vocab(layout.tokenizer("source"))
    identical = V.identical_from_forms(tf, sf)
    tr = {int(t): r for r, t in enumerate(ti)}
    sr = {int(s): r for r, s in enumerate(si)}
    pairs = choose_pivots([(t, s) for t, s in identical.items() if t in tr and s in sr], pivots, "random", seed)
    return tv, sv, np.array([tr[t] for t, _ in pairs]), np.array([sr[s] for _, s in pairs])


def synthetic_inputs(n_t: int, n_s: int, pivots: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    tv = rng.standard_normal((n_t, DIM), dtype=np.float32)
    sv = rng.standard_normal((n_s, DIM), dtype=np.float32)
    return tv, sv, rng.choice(n_t, pivots, replace=False), rng.choice(n_s, pivots, replace=False)


# --------------------------------------------------------------------------------------------------
# the three implementations


def dense_reference(tv, sv, tp, sp, k=K):
    """float64, full similarity matrix, per-token loop (the reference the issue describes)."""

    def rel(v, p):
        v = v.astype(np.float64)
        v = v - v.mean(0)
        v /= np.linalg.norm(v, axis=1, keepdims=True) + 1e-12
        r = v @ v[p].T
        r -= r.mean(0)
        return r / (np.linalg.norm(r, axis=1, keepdims=True) + 1e-12)

    rt, rs = rel(tv, tp), rel(sv, sp)
    sim = rt @ rs.T  # (V_target, V_source) float64: the memory the blockwise search avoids
    top_i = np.empty((sim.shape[0], k), dtype=np.int64)
    top_v = np.empty((sim.shape[0], k))
    for i in range(sim.shape[0]):  # one target token at a time, as the reference code does
        row = sim[i]
        cand = np.argpartition(-row, k)[:k]
        order = cand[np.argsort(-row[cand], kind="stable")]
        top_i[i], top_v[i] = order, row[order]
    return top_v, top_i


def blockwise(tv, sv, tp, sp, k=K, block_rows=4096):
    from vocabadapt.align.relrep import RelativeRepresentation, blockwise_topk

    rt = RelativeRepresentation(tv, tp)
    rs = RelativeRepresentation(sv, sp).full()
    return blockwise_topk(rt, rs, k, block_rows=block_rows)


def floor(tv, sv, tp, sp, k=K, block_rows=4096):
    """Bare float32 blockwise product of the same shape: (V_t, P) x (P, V_s), no top-k."""
    import torch

    from vocabadapt.align.relrep import MAX_BLOCK_ELEMENTS

    rt = torch.as_tensor(tv) @ torch.as_tensor(tv[tp]).T  # (V_t, P)
    rs = torch.as_tensor(sv) @ torch.as_tensor(sv[sp]).T  # (V_s, P)
    chunk = MAX_BLOCK_ELEMENTS // block_rows
    acc = 0.0
    with torch.no_grad():
        for r0 in range(0, rt.shape[0], block_rows):
            for c0 in range(0, rs.shape[0], chunk):
                acc += float((rt[r0 : r0 + block_rows] @ rs[c0 : c0 + chunk].T)[0, 0])
    return acc


IMPLS = {"dense": dense_reference, "blockwise": blockwise, "floor": floor}


def run_case(spec: dict) -> dict:
    """Child process: build inputs, time one implementation, report time and memory."""
    import torch

    torch.set_num_threads(spec["threads"])
    if spec["kind"] == "real":
        tv, sv, tp, sp = real_inputs(Path(spec["run_dir"]), spec["pivots"], spec["seed"])
    else:
        tv, sv, tp, sp = synthetic_inputs(spec["n_t"], spec["n_s"], spec["pivots"])
    base = rss_mb()
    t0 = time.perf_counter()
    out = IMPLS[spec["impl"]](tv, sv, tp, sp)
    wall = time.perf_counter() - t0
    res = {
        "wall_s": round(wall, 2),
        "peak_mb": round(peak_rss_mb(), 1),
        "inputs_rss_mb": round(base, 1),
        "n_t": int(tv.shape[0]),
        "n_s": int(sv.shape[0]),
        "pivots": int(len(tp)),
    }
    if spec["impl"] != "floor":
        np.save(spec["out"], out[1][:, :K])
    return res


def spawn(spec: dict) -> dict:
    """Run one case in a child process of this script (its own peak memory); return its result."""
    return json_child(module_command("align_speed", "--child", json.dumps(spec)), spec["impl"])


def machine() -> str:
    """The machine line of align_speed.md (and of speed.md, which reuses it)."""
    return (
        f"{platform.node()}: {cpu_model('unknown CPU')}, {os.cpu_count()} cores visible, {ram_gib():.0f} GiB RAM, "
        f"Python {platform.python_version()}, load average at start {load_average()} (other jobs share these cores)"
    )


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.align_speed", description=__doc__.splitlines()[0])
    ap.add_argument("--child")
    ap.add_argument("--run-dir", help="an align run directory (embeddings + tokenizers) for the real pair")
    ap.add_argument("--pivots", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--skip-dense", action="store_true")
    ap.add_argument("--skip-synthetic", action="store_true")
    # Sized so the whole benchmark takes about 10 minutes on 2 shared cores: V_t x V_s x P grows 32x
    # from the first case to the last, which is a 256k-token target vocabulary (with 50 pivots).
    ap.add_argument(
        "--sizes",
        default="16384x25000x300,32768x25000x300,65536x25000x300,65536x50000x150,262144x50000x50",
        help="synthetic cases V_target x V_source x pivots, comma separated",
    )
    ap.add_argument(
        "--floor-sizes",
        default="262144x50000x50",
        help="synthetic cases that also time the floor (each doubles that case's time)",
    )
    ap.add_argument("--out", default=str(RESULTS))
    return ap


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.child:
        print(json.dumps(run_case(json.loads(args.child))))  # the parent reads this one JSON line
        return
    import tempfile

    tmp = Path(tempfile.mkdtemp(prefix="align_speed."))
    argv_text = " ".join(sys.argv[1:] if argv is None else argv)
    items = [
        f"command: `{('python -m benchmarks.align_speed ' + argv_text).strip()}`",
        f"commit: {git_commit()}",
        f"machine: {machine()}; torch threads {args.threads}",
        f"date: {utc_now()}",
        f"top-k {K}; each implementation in its own process; peak = VmHWM of that process (inputs included)",
    ]
    blocks: list[Block] = [("h", 1, "Align speed and memory"), ("p", "\n".join(f"- {x}" for x in items))]
    if args.run_dir:
        blocks += real_pair_blocks(args, tmp)
    if not args.skip_synthetic:
        blocks += synthetic_blocks(args, tmp)
    blocks.append(("p", f"Load average at the end: {load_average()}."))
    write_markdown(Path(args.out), blocks)
    log(f"wrote {args.out}")


def real_pair_blocks(args: argparse.Namespace, tmp: Path) -> list[Block]:
    """Dense reference, blockwise and floor on the real pair of --run-dir, each in its own process."""
    rows = {}
    for impl in ("dense", "blockwise", "floor"):
        if impl == "dense" and args.skip_dense:
            continue
        spec = {
            "kind": "real",
            "run_dir": str(Path(args.run_dir).resolve()),
            "pivots": args.pivots,
            "seed": args.seed,
            "impl": impl,
            "threads": args.threads,
            "out": str(tmp / f"{impl}.npy"),
        }
        rows[impl] = spawn(spec)
        log(f"{impl} {rows[impl]}")
    r = rows["blockwise"]
    table = [[impl, row["wall_s"], row["peak_mb"], row["inputs_rss_mb"]] for impl, row in rows.items()]
    blocks: list[Block] = [
        ("h", 2, f"Real pair: GPT-NeoX -> BioGPT ({r['n_t']} x {r['n_s']} tokens with vectors, {r['pivots']} pivots)"),
        ("table", ["implementation", "wall s", "peak MB", "inputs RSS MB"], table),
    ]
    if "dense" in rows:
        d, b = np.load(tmp / "dense.npy"), np.load(tmp / "blockwise.npy")  # (V_t, K) source ids each
        same1 = float((d[:, 0] == b[:, 0]).mean())
        same5 = float(np.mean([len(set(x) & set(y)) / K for x, y in zip(d.tolist(), b.tolist())]))
        items = [
            f"speed-up of blockwise over dense: {rows['dense']['wall_s'] / r['wall_s']:.1f}x",
            f"blockwise / floor: {r['wall_s'] / rows['floor']['wall_s']:.2f}x",
            f"agreement with the float64 reference: top-1 identical for {100 * same1:.2f}% of target tokens, "
            f"top-5 overlap {100 * same5:.2f}% (differences are float32 vs float64 near-ties)",
        ]
        blocks.append(("p", "\n".join(f"- {x}" for x in items)))
    return blocks


def synthetic_blocks(args: argparse.Namespace, tmp: Path) -> list[Block]:
    """Blockwise top-k on random vectors of growing V_t x V_s x P, the floor at --floor-sizes."""
    table = []
    for size in args.sizes.split(","):
        n_t, n_s, p = (int(x) for x in size.lower().split("x"))
        spec = {
            "kind": "synthetic",
            "n_t": n_t,
            "n_s": n_s,
            "pivots": p,
            "impl": "blockwise",
            "threads": args.threads,
            "out": str(tmp / "syn.npy"),
        }
        row = spawn(spec)
        fl = spawn({**spec, "impl": "floor"})["wall_s"] if size in args.floor_sizes.split(",") else "-"
        per = row["wall_s"] / (n_t * n_s * p) * 1e12
        log(f"{size} {row} {fl}")
        table.append([n_t, n_s, p, row["wall_s"], f"{per:.2f}", row["peak_mb"], fl])
    headers = ["V_target", "V_source", "pivots", "wall s", "ps per V_t x V_s x P element", "peak MB", "floor s"]
    return [
        ("h", 2, "Synthetic scaling (blockwise, random vectors of dim 100)"),
        ("table", headers, table),
        (
            "p",
            "Constant time per (V_t x V_s x P) element means linear growth in that product; "
            "peak memory is inputs plus fixed 64 MiB score tiles.",
        ),
    ]


if __name__ == "__main__":
    main()
