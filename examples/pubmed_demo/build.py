"""
Build every asset of the bundled PubMed demo from the raw data in ../shared/data.

    python examples/pubmed_demo/build.py            # from the repository root, ~15 min on 2 CPU cores

What it writes (under --out, default: this folder):

    corpus/train.jsonl.gz       biomedical training text  {"id", "source", "text"[, "license", "copyright"]}
    corpus/heldout.jsonl.gz     ~10% of the documents, chosen by a hash of the id; never trained on
    tokenizers/source/          general-English byte-level BPE, 4096 tokens (fragments biomedical terms)
    tokenizers/target/          biomedical byte-level BPE, 4096 tokens, trained on corpus/train only
    tokenizers/stats.json       bytes per token of both tokenizers on corpus/heldout
    model/                      small GPT-NeoX (Pythia-style, untied embeddings) pretrained from scratch
                                on general English + 20% of the biomedical train documents, with the
                                source tokenizer; plus training_log.json
    pubmedqa/test.json.gz       the 500 official PQA-L test records, keyed by PMID (ori_pqal.json schema)
    pubmedqa/fewshot.json       8 non-test PQA-L records for few-shot prompts

The demo then adapts model/ from tokenizers/source to tokenizers/target (TokAlign) and measures the
result on corpus/heldout and pubmedqa/. The script is seeded and deterministic: the same inputs,
seed and library versions give the same files (gzip members are written with mtime 0).

The document splits depend only on document ids (not on --seed), so the corpus stays the same when
you retrain the model with another seed.
"""

import argparse
import gzip
import hashlib
import io
import json
import math
import os
import platform
import re
import shutil
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import tokenizers
import transformers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (AutoModelForCausalLM, AutoTokenizer, GPTNeoXConfig, GPTNeoXForCausalLM,
                          PreTrainedTokenizerFast)

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]

# -----------------------------------------------------------------------------
# options

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--data-dir", type=Path, default=REPO_ROOT.parent / "shared" / "data",
                    help="the shared raw data folder (default: ../shared/data from the repository root)")
parser.add_argument("--out", type=Path, default=HERE, help="where to write the assets (default: this folder)")
parser.add_argument("--steps", type=int, default=1000, help="pretraining optimizer steps")
parser.add_argument("--seed", type=int, default=1337, help="seeds model init and data order")
parser.add_argument("--batch-size", type=int, default=16, help="sequences per step")
parser.add_argument("--seq-len", type=int, default=256, help="tokens per packed sequence (= max positions)")
parser.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (cosine decay to 10%%)")
parser.add_argument("--warmup", type=int, default=50, help="linear warmup steps")
parser.add_argument("--eval-every", type=int, default=100, help="steps between held-out loss checks")
parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
args = parser.parse_args()

VOCAB_SIZE = 4096           # both tokenizers; includes the two special tokens below
EOS = "<|endoftext|>"       # GPT-2 style: one token serves as bos, eos and unk (byte-level never needs unk)
PAD = "<|pad|>"             # separate pad token, so padding can never be mistaken for a document boundary
HELDOUT_PER_MILLE = 100     # ~10% of biomedical documents are held out
PRETRAIN_PER_MILLE = 200    # ~20% of biomedical *train* documents are in the source model's pretraining
GENERAL_VAL_PER_MILLE = 20  # ~2% of general-English chunks are kept aside to watch the pretraining loss
CRAFT_LICENSES = {"CC-BY", "CC-public-domain"}  # BMC "verbatim copying" articles are left out: see SOURCES.md

t_start = time.time()
torch.manual_seed(args.seed)
torch.set_num_threads(args.threads)
torch.use_deterministic_algorithms(True)
out = args.out.resolve()
data = args.data_dir.resolve()
if not (data / "biomed" / "abstracts_bc5cdr.jsonl").exists():
    raise SystemExit(f"{data} does not look like the shared data folder (no biomed/abstracts_bc5cdr.jsonl); "
                     f"pass --data-dir")
print(f"data: {data}\nout:  {out}")


def log(msg):
    print(f"[{time.time() - t_start:7.1f}s] {msg}", flush=True)


def bucket(key):
    """A stable number in [0, 1000) from a string: the same on every machine and Python version
    (unlike hash()), so splits never move."""
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") % 1000


def write_atomic(path, data_bytes):
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data_bytes)
    os.replace(tmp, path)


def gzip_bytes(raw):
    # mtime=0 and no file name in the header, so the same content gives the same bytes
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=9) as f:
        f.write(raw)
    return buf.getvalue()


def write_jsonl_gz(path, records):
    raw = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")
    write_atomic(path, gzip_bytes(raw))


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def n_bytes(text):
    return len(text.encode("utf-8"))


# -----------------------------------------------------------------------------
# 1. biomedical corpus: abstracts (title + "\n" + abstract) and open-licence CRAFT full texts

docs = []
for name in ["abstracts_bc5cdr.jsonl", "abstracts_ncbi_disease.jsonl"]:
    for r in read_jsonl(data / "biomed" / name):
        text = r["title"].strip() + ("\n" + r["abstract"].strip() if r["abstract"].strip() else "")
        docs.append({"id": r["pmid"], "source": r["source"], "text": text})
for name in sorted((data / "biomed").glob("craft_fulltext_part*.jsonl")):
    for r in read_jsonl(name):
        if r["license"] not in CRAFT_LICENSES:
            continue
        # the licence label and the verbatim upstream notice (authors, PMC URL, licence) travel with the text
        docs.append({"id": r["pmid"], "source": r["source"], "text": r["text"].strip(),
                     "license": r["license"], "copyright": r["copyright"]})

# ids are PMIDs; they must be unique across sources, and no text may occur twice
ids = [d["id"] for d in docs]
assert len(ids) == len(set(ids)), "duplicate PMIDs across biomedical sources"
seen_text = {}
for d in docs:
    assert d["text"] not in seen_text, f"document {d['id']} repeats the text of {seen_text.get(d['text'])}"
    seen_text[d["text"]] = d["id"]

# the PubMedQA questions are the evaluation: none of their abstracts may be in the corpus
pqal = json.loads((data / "pubmedqa" / "ori_pqal.json").read_text(encoding="utf-8"))
assert not set(ids) & set(pqal), "PubMedQA PMIDs found in the biomedical corpus"

docs.sort(key=lambda d: (d["source"], int(d["id"])))  # a fixed file order, independent of input order
heldout = [d for d in docs if bucket("heldout:" + d["id"]) < HELDOUT_PER_MILLE]
train = [d for d in docs if bucket("heldout:" + d["id"]) >= HELDOUT_PER_MILLE]
# nothing held out is in train: not by id, not by text
assert not {d["id"] for d in heldout} & {d["id"] for d in train}
assert not {d["text"] for d in heldout} & {d["text"] for d in train}
assert len(heldout) + len(train) == len(docs)
write_jsonl_gz(out / "corpus" / "train.jsonl.gz", train)
write_jsonl_gz(out / "corpus" / "heldout.jsonl.gz", heldout)
corpus_stats = {
    split: {"documents": len(ds), "utf8_bytes": sum(n_bytes(d["text"]) for d in ds),
            "by_source": {s: sum(d["source"] == s for d in ds) for s in sorted({d["source"] for d in docs})}}
    for split, ds in [("train", train), ("heldout", heldout)]}
log(f"corpus: {json.dumps(corpus_stats)}")

# the source model's 'prior exposure' to the domain: a minority share of the biomedical train docs
pretrain_bio = [d for d in train if bucket("pretrain:" + d["id"]) < PRETRAIN_PER_MILLE]
log(f"biomedical docs in source pretraining: {len(pretrain_bio)} of {len(train)} train docs, "
    f"{sum(n_bytes(d['text']) for d in pretrain_bio)} bytes")

# -----------------------------------------------------------------------------
# 2. general English: strip Gutenberg boilerplate, undo WikiText's @-@ markup, cut into ~4 kB chunks


def clean_general(path):
    text = path.read_text(encoding="utf-8-sig").replace("\r\n", "\n")
    if path.name.startswith("gutenberg_"):
        start = re.search(r"^\*\*\* ?START OF.*\*\*\*$", text, flags=re.M)
        end = re.search(r"^\*\*\* ?END OF.*\*\*\*$", text, flags=re.M)
        assert start and end, f"{path.name}: Gutenberg START/END markers not found"
        text = text[start.end():end.start()]
        units = text.split("\n\n")       # paragraphs
    elif path.name.startswith("wikitext"):
        # WikiText is word-tokenised (' @-@ ', ' , '); make it read like ordinary text
        text = text.replace(" @-@ ", "-").replace(" @,@ ", ",").replace(" @.@ ", ".")
        text = re.sub(r" ([,.;:!?)'])", r"\1", text).replace("( ", "(")
        units = [line.strip() for line in text.split("\n")]  # one paragraph or heading per line
    else:
        units = text.split("\n\n")       # tinyshakespeare: one speech per paragraph
    units = [u.strip("\n") for u in units if u.strip()]
    sep = "\n" if path.name.startswith("wikitext") else "\n\n"
    chunks, cur = [], []
    for u in units:                      # group paragraphs into chunks of >= 4000 characters
        cur.append(u)
        if sum(len(c) for c in cur) >= 4000:
            chunks.append(sep.join(cur))
            cur = []
    if cur:
        chunks.append(sep.join(cur))
    return chunks


general_train, general_val = [], []
for path in sorted((data / "general").glob("*.txt")):
    for i, chunk in enumerate(clean_general(path)):
        (general_val if bucket(f"general-val:{path.name}:{i}") < GENERAL_VAL_PER_MILLE else general_train).append(chunk)
log(f"general English: {len(general_train)} train chunks ({sum(map(n_bytes, general_train))} bytes), "
    f"{len(general_val)} validation chunks ({sum(map(n_bytes, general_val))} bytes)")

# -----------------------------------------------------------------------------
# 3. tokenizers: GPT-2-style byte-level BPE (no prefix space, ByteLevel decoder), 4096 tokens each


def train_bpe(texts, out_dir):
    """Train a byte-level BPE on texts and save it as a transformers tokenizer directory."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)  # as GPT-2: offsets only, adds no tokens
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE, min_frequency=2, show_progress=False,
        special_tokens=[EOS, PAD],                                # ids 0 and 1
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet())     # all 256 bytes: nothing is ever unknown
    tok.train_from_iterator(texts, trainer=trainer)
    assert tok.get_vocab_size() == VOCAB_SIZE, tok.get_vocab_size()
    assert tok.token_to_id(EOS) == 0 and tok.token_to_id(PAD) == 1
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=EOS, eos_token=EOS, unk_token=EOS,
                                   pad_token=PAD, model_max_length=args.seq_len,
                                   clean_up_tokenization_spaces=False)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    fast.save_pretrained(tmp)
    # name the class that every transformers version knows (v5 would write "TokenizersBackend", which v4
    # cannot load), and write special_tokens_map.json, which v5 no longer writes but v4 reads
    cfg_path = tmp / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg.pop("backend", None)
    cfg.update(tokenizer_class="PreTrainedTokenizerFast", clean_up_tokenization_spaces=False,
               add_bos_token=False, add_eos_token=False)
    cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    special = {"bos_token": EOS, "eos_token": EOS, "unk_token": EOS, "pad_token": PAD}
    (tmp / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n")
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(tmp, out_dir)
    return AutoTokenizer.from_pretrained(out_dir)


# source: what a general-purpose model would ship with. Target: made for the domain, from train only.
src_tok = train_bpe(general_train + [d["text"] for d in pretrain_bio], out / "tokenizers" / "source")
tgt_tok = train_bpe([d["text"] for d in train], out / "tokenizers" / "target")
assert len(src_tok) == len(tgt_tok) == VOCAB_SIZE
for t in (src_tok, tgt_tok):
    assert isinstance(t, PreTrainedTokenizerFast)
    assert (t.bos_token_id, t.eos_token_id, t.pad_token_id) == (0, 0, 1)
    s = "Naloxone reverses the antihypertensive effect of clonidine.\n  x"
    assert t.decode(t(s)["input_ids"]) == s, "byte-level round trip failed"


def bytes_per_token(tok, texts):
    n_tok = sum(len(e.ids) for e in tok.backend_tokenizer.encode_batch(texts, add_special_tokens=False))
    return sum(map(n_bytes, texts)) / n_tok, n_tok


heldout_texts = [d["text"] for d in heldout]
tok_stats = {}
for name, t in [("source", src_tok), ("target", tgt_tok)]:
    bpt, n_tok = bytes_per_token(t, heldout_texts)
    tok_stats[name] = {"heldout_bytes_per_token": round(bpt, 4), "heldout_tokens": n_tok}
tok_stats["heldout_utf8_bytes"] = sum(map(n_bytes, heldout_texts))
tok_stats["example"] = {name: t.tokenize("Hepatotoxicity of acetaminophen in patients with cirrhosis")
                        for name, t in [("source", src_tok), ("target", tgt_tok)]}
write_atomic(out / "tokenizers" / "stats.json", (json.dumps(tok_stats, indent=2, ensure_ascii=False) + "\n").encode())
log(f"bytes/token on held-out: source {tok_stats['source']['heldout_bytes_per_token']}, "
    f"target {tok_stats['target']['heldout_bytes_per_token']}")
assert tok_stats["target"]["heldout_bytes_per_token"] > tok_stats["source"]["heldout_bytes_per_token"]

# -----------------------------------------------------------------------------
# 4. PubMedQA: the official PQA-L test split and a few non-test records for few-shot prompts

truth = json.loads((data / "pubmedqa" / "test_ground_truth.json").read_text(encoding="utf-8"))
assert len(truth) == 500 and all(p in pqal for p in truth)
test = {p: pqal[p] for p in truth}   # ground-truth order, the ori_pqal.json schema unchanged
assert all(test[p]["final_decision"] == truth[p] for p in truth)
write_atomic(out / "pubmedqa" / "test.json.gz", gzip_bytes(json.dumps(test, ensure_ascii=False).encode("utf-8")))
# few-shot: 3 yes, 3 no, 2 maybe, the first of each label in a hash order of the non-test PMIDs
pool = sorted((p for p in pqal if p not in truth), key=lambda p: bucket("fewshot:" + p) * 10**9 + int(p))
fewshot = {}
for label, k in [("yes", 3), ("no", 3), ("maybe", 2)]:
    for p in [p for p in pool if pqal[p]["final_decision"] == label][:k]:
        fewshot[p] = pqal[p]
fewshot = dict(sorted(fewshot.items(), key=lambda kv: bucket("fewshot-order:" + kv[0])))  # labels interleaved
write_atomic(out / "pubmedqa" / "fewshot.json", (json.dumps(fewshot, indent=1, ensure_ascii=False) + "\n").encode())
shutil.copyfile(data / "pubmedqa" / "LICENSE.txt", out / "pubmedqa" / "LICENSE.txt")
log(f"pubmedqa: {len(test)} test records, {len(fewshot)} few-shot records")

# -----------------------------------------------------------------------------
# 5. the source model's pretraining data: one packed token stream, documents separated by <|endoftext|>

rng = np.random.default_rng(args.seed)


def encode(texts):
    # the tokenizers backend directly: fast, and no "longer than model_max_length" warnings for whole docs
    return [e.ids for e in src_tok.backend_tokenizer.encode_batch(texts, add_special_tokens=False)]


def token_stream(texts, shuffle):
    """Concatenate tokenized texts, each followed by eos, into one uint16 array (vocab 4096 < 65536)."""
    order = rng.permutation(len(texts)) if shuffle else np.arange(len(texts))
    enc = encode([texts[i] for i in order])
    return np.fromiter((t for ids in enc for t in ids + [src_tok.eos_token_id]), dtype=np.uint16)


train_ids = token_stream(general_train + [d["text"] for d in pretrain_bio], shuffle=True)  # (N,)
val_general_ids = token_stream(general_val, shuffle=False)
val_bio_ids = token_stream(heldout_texts, shuffle=False)
log(f"pretraining stream: {len(train_ids):,} tokens; validation: general {len(val_general_ids):,}, "
    f"biomedical held-out {len(val_bio_ids):,}")

T, B = args.seq_len, args.batch_size


def get_batch():
    # nanoGPT-style: B random windows of the stream; y is x shifted by one token. x, y: (B, T)
    ix = rng.integers(0, len(train_ids) - T - 1, size=B)
    x = np.stack([train_ids[i:i + T] for i in ix]).astype(np.int64)
    y = np.stack([train_ids[i + 1:i + T + 1] for i in ix]).astype(np.int64)
    return torch.from_numpy(x), torch.from_numpy(y)


def fixed_windows(ids, n):
    # the first n non-overlapping windows: the same sample at every evaluation. x, y: (n, T)
    n = min(n, (len(ids) - 1) // T)
    x = np.stack([ids[i * T:i * T + T] for i in range(n)]).astype(np.int64)
    y = np.stack([ids[i * T + 1:i * T + T + 1] for i in range(n)]).astype(np.int64)
    return torch.from_numpy(x), torch.from_numpy(y)


eval_sets = {"general_val": fixed_windows(val_general_ids, 32), "biomed_heldout": fixed_windows(val_bio_ids, 32)}

# -----------------------------------------------------------------------------
# 6. the model: Pythia-style GPT-NeoX (parallel residual, partial rotary, untied embeddings), ~1.8M params

config = GPTNeoXConfig(
    vocab_size=len(src_tok),             # 4096, already a multiple of 64
    hidden_size=128, num_hidden_layers=4, num_attention_heads=4, intermediate_size=512,
    max_position_embeddings=T, rotary_pct=0.25, rotary_emb_base=10000, use_parallel_residual=True,
    hidden_act="gelu", layer_norm_eps=1e-5, initializer_range=0.02,
    attention_dropout=0.0, hidden_dropout=0.0,  # small data, few steps: dropout only slows learning
    tie_word_embeddings=False,           # as in Pythia: embed_in and embed_out are separate matrices
    bos_token_id=src_tok.bos_token_id, eos_token_id=src_tok.eos_token_id, pad_token_id=src_tok.pad_token_id)
model = GPTNeoXForCausalLM(config)
n_params = sum(p.numel() for p in model.parameters())
log(f"model: {n_params:,} parameters")

# AdamW with weight decay on matrices only (embeddings and linear weights), not on biases and norms
decay = [p for p in model.parameters() if p.dim() >= 2]
no_decay = [p for p in model.parameters() if p.dim() < 2]
optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                              lr=args.lr, betas=(0.9, 0.95), eps=1e-8)


def lr_at(step):
    # linear warmup, then cosine decay from lr to lr/10 at the last step
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    progress = (step - args.warmup) / max(1, args.steps - args.warmup)
    return args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


@torch.no_grad()
def eval_losses():
    model.eval()
    res = {}
    for name, (x, y) in eval_sets.items():
        losses = [F.cross_entropy(model(input_ids=x[i:i + 16]).logits.flatten(0, 1), y[i:i + 16].flatten())
                  for i in range(0, len(x), 16)]
        res[name] = round(float(torch.stack(losses).mean()), 4)  # nats per token
    model.train()
    return res


history = []
train_losses = []
model.train()
t_train = time.time()
for step in range(args.steps):
    if step % args.eval_every == 0:
        history.append({"step": step, "tokens_seen": step * B * T, **eval_losses()})
        log(f"step {step}: eval {history[-1]}")
    for g in optimizer.param_groups:
        g["lr"] = lr_at(step)
    x, y = get_batch()
    logits = model(input_ids=x).logits                       # (B, T, V)
    loss = F.cross_entropy(logits.flatten(0, 1), y.flatten())
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    train_losses.append(loss.item())
    if step % 20 == 0:
        log(f"step {step}: train loss {loss.item():.4f}  lr {lr_at(step):.2e}")
history.append({"step": args.steps, "tokens_seen": args.steps * B * T, **eval_losses()})
log(f"step {args.steps}: eval {history[-1]}")
train_seconds = time.time() - t_train

# -----------------------------------------------------------------------------
# 7. held-out bits per byte: every corpus/heldout document, each token predicted exactly once


@torch.no_grad()
def bits_per_byte(texts):
    """Sum of NLL (nats) over all tokens of every text / ln 2 / UTF-8 bytes.
    Each text is [eos] + tokens, cut into non-overlapping windows of T predictions; the first token is
    predicted from eos (the document boundary the model saw in pretraining)."""
    model.eval()
    xs, ys = [], []
    for ids in encode(texts):
        seq = [src_tok.eos_token_id] + ids
        for i in range(0, len(seq) - 1, T):
            x, y = seq[i:i + T], seq[i + 1:i + T + 1]
            xs.append(x + [src_tok.pad_token_id] * (T - len(x)))
            ys.append(y + [-100] * (T - len(y)))              # padded positions are not scored
    x, y = torch.tensor(xs), torch.tensor(ys)                 # (windows, T)
    nll = sum(float(F.cross_entropy(model(input_ids=x[i:i + 32]).logits.flatten(0, 1), y[i:i + 32].flatten(),
                                    ignore_index=-100, reduction="sum")) for i in range(0, len(x), 32))
    n_pred = int((y != -100).sum())
    model.train()
    return nll / math.log(2) / sum(map(n_bytes, texts)), nll / n_pred


heldout_bpb, heldout_nll_per_token = bits_per_byte(heldout_texts)
general_bpb, _ = bits_per_byte(general_val)
log(f"held-out bits/byte: biomedical {heldout_bpb:.4f}, general {general_bpb:.4f}")

# -----------------------------------------------------------------------------
# 8. save: model (float32 safetensors) + source tokenizer + training log, then check it loads and generates

model_dir = out / "model"
tmp = model_dir.with_name("model.tmp")
shutil.rmtree(tmp, ignore_errors=True)
model.save_pretrained(tmp, safe_serialization=True)
for f in (out / "tokenizers" / "source").iterdir():
    shutil.copyfile(f, tmp / f.name)

reloaded = AutoModelForCausalLM.from_pretrained(tmp)
reloaded.eval()
for a, b in zip(model.state_dict().values(), reloaded.state_dict().values()):
    assert torch.equal(a, b), "saved weights differ from the trained ones"
tok = AutoTokenizer.from_pretrained(tmp)
samples = {}
for prompt in ["The patients were treated with", "It is a truth universally acknowledged", "The ship"]:
    enc = tok(prompt, return_tensors="pt")
    gen = reloaded.generate(**enc, max_new_tokens=40, do_sample=False, pad_token_id=tok.pad_token_id)
    samples[prompt] = tok.decode(gen[0], skip_special_tokens=False)
    log(f"greedy: {samples[prompt]!r}")

training_log = {
    "seed": args.seed, "steps": args.steps, "batch_size": B, "seq_len": T,
    "tokens_seen": args.steps * B * T, "pretraining_stream_tokens": int(len(train_ids)),
    "epochs": round(args.steps * B * T / len(train_ids), 3),
    "optimizer": {"name": "AdamW", "lr": args.lr, "betas": [0.9, 0.95], "weight_decay": 0.1, "grad_clip": 1.0,
                  "schedule": f"linear warmup {args.warmup} steps, cosine to 10% of lr"},
    "parameters": n_params,
    "final_train_loss": round(float(np.mean(train_losses[-50:])), 4) if train_losses else None,
    "final_train_loss_note": "mean over the last 50 steps, nats per token",
    "heldout_bits_per_byte": round(heldout_bpb, 4),
    "heldout_nll_per_token": round(heldout_nll_per_token, 4),
    "heldout_eval": "all corpus/heldout.jsonl.gz documents; sum NLL (nats) / ln 2 / UTF-8 bytes; each text "
                    "is <|endoftext|> + tokens in non-overlapping windows of seq_len",
    "general_val_bits_per_byte": round(general_bpb, 4),
    "history": history,
    "train_loss_every_50": [round(float(np.mean(train_losses[i:i + 50])), 4) for i in range(0, len(train_losses), 50)],
    "pretraining_data": {
        "general_english_files": sorted(p.name for p in (data / "general").glob("*.txt")),
        "general_english_train_bytes": sum(map(n_bytes, general_train)),
        "biomedical_docs": len(pretrain_bio),
        "biomedical_bytes": sum(n_bytes(d["text"]) for d in pretrain_bio),
        "biomedical_ids": [d["id"] for d in pretrain_bio],
    },
    "greedy_samples": samples,
    "train_seconds": round(train_seconds, 1),
    "versions": {"python": platform.python_version(), "torch": torch.__version__,
                 "transformers": transformers.__version__, "tokenizers": tokenizers.__version__,
                 "numpy": np.__version__},
}
(tmp / "training_log.json").write_text(json.dumps(training_log, indent=2, ensure_ascii=False) + "\n")
shutil.rmtree(model_dir, ignore_errors=True)
os.replace(tmp, model_dir)
log(f"done: {n_params:,} params, final train loss {training_log['final_train_loss']}, "
    f"held-out bpb {heldout_bpb:.4f}; total {time.time() - t_start:.0f}s")
