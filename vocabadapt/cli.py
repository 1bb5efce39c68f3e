"""The `vocabadapt` command: thin wrappers that parse arguments, call the library and print.

Exit codes: 0 success, 1 a stage or audit error, 2 an invalid config or input, 3 a locked run
directory, 130 interrupted (Ctrl-C; rerun the same command to resume).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from .errors import VocabadaptError

REPO_ROOT = Path(__file__).resolve().parents[1]
DEMO_CONFIG = REPO_ROOT / "configs" / "demo.yaml"


def _add_set(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set vocab_adaptation.lr_stage1=3e-5 (repeatable)",
    )


def _add_run_args(p: argparse.ArgumentParser, with_config: bool = True) -> None:
    if with_config:
        p.add_argument("config", help="YAML config file")
    _add_set(p)
    p.add_argument(
        "--run-dir",
        help="run directory (default: resume this config's newest unfinished run, "
        "else <pipeline.run_root>/<config name>-<UTC time>)",
    )
    p.add_argument("--from", dest="from_stage", metavar="STAGE", help="first stage to consider")
    p.add_argument("--until", metavar="STAGE", help="last stage to run")
    p.add_argument("--force", action="store_true", help="redo stages from --from even if up to date")


def build_parser() -> argparse.ArgumentParser:
    from .run.layout import MODELS
    from .stages import STAGES

    parser = argparse.ArgumentParser(prog="vocabadapt", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    stages = ", ".join(s.name for s in STAGES)
    _add_run_args(sub.add_parser("run", help=f"run the pipeline ({stages}); resumable"))
    _add_run_args(
        sub.add_parser("demo", help="run the bundled demo (configs/demo.yaml) on this CPU"), with_config=False
    )
    for name in ("tokenize", "embed", "align", "transplant"):
        p = sub.add_parser(name, help=f"shorthand for: run CONFIG --until {name}")
        _add_run_args(p)

    a = sub.add_parser("audit", help="review a config with real numbers before spending GPU time")
    a.add_argument("config")
    _add_set(a)
    a.add_argument("--corpus-stats", help="corpus/stats.json of a run (documents, bytes, tokens)")
    a.add_argument("--model-config", help="the source model's config.json (or its directory)")
    a.add_argument("--gpu-memory", type=float, metavar="GB", help="memory of one GPU in GB")
    a.add_argument("--format", choices=("text", "json"), default="text")
    a.add_argument("--strict", action="store_true", help="exit 1 on warnings too")

    c = sub.add_parser("config", help="show the merged config, or the config reference")
    csub = c.add_subparsers(dest="config_command", required=True)
    show = csub.add_parser("show", help="print the merged, validated config as YAML")
    show.add_argument("config")
    _add_set(show)
    csub.add_parser("docs", help="print the config reference (docs/config.md)")

    e = sub.add_parser("eval", help="evaluate a model directory: bits per byte, PubMedQA")
    e.add_argument("model")
    e.add_argument("--baseline", help="baseline model directory to compare against")
    e.add_argument("--text", action="append", default=[], help="held-out text file (.txt/.jsonl[.gz]); repeatable")
    e.add_argument("--pubmedqa", help="PubMedQA-format JSON/JSONL file")
    e.add_argument("--max-samples", type=int)
    e.add_argument("--out", help="write the JSON result here")

    r = sub.add_parser("report", help="write report/report.md and report.html for a run directory")
    r.add_argument("run_dir")

    x = sub.add_parser("export", help="write a run's model and tokenizer as one GGUF file (llama.cpp, ollama)")
    x.add_argument("run_dir")
    x.add_argument("--gguf", required=True, metavar="OUT.gguf", help="the GGUF file to write")
    # The types are checked by export_gguf (its EXPORT_TYPES): the parser must not import torch for `audit`.
    types = "f16 (float16 matrices) or q8_0 (8-bit blocks of 32 values with one f16 scale)"
    x.add_argument("--type", dest="gguf_type", default="f16", help=types)
    x.add_argument("--model", choices=tuple(reversed(MODELS)), help="which model (default: the last finished one)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    _quiet_libraries(args.verbose)
    try:
        return _dispatch(args)
    except VocabadaptError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("\ninterrupted; rerun the same command to resume", file=sys.stderr)
        return 130


def _quiet_libraries(verbose: bool) -> None:
    """One progress display for the run: the libraries' own bars and chatter are turned off."""
    import os

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if verbose:
        return
    logging.getLogger("gguf").setLevel(logging.WARNING)  # the GGUF writer logs every file it opens at INFO
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:
        pass
    try:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    except ImportError:
        pass


def _dispatch(args: argparse.Namespace) -> int:
    cmd = args.command
    if cmd in ("run", "demo", "tokenize", "embed", "align", "transplant"):
        return _cmd_run(args)
    if cmd == "audit":
        return _cmd_audit(args)
    if cmd == "config":
        from .config import load_config, schema_reference

        if args.config_command == "docs":
            print(schema_reference(), end="")
        else:
            print(load_config(args.config, args.overrides).to_yaml(), end="")
        return 0
    if cmd == "eval":
        from .evaluation.suite import eval_command

        result = eval_command(
            model=args.model,
            baseline=args.baseline,
            texts=args.text,
            pubmedqa=args.pubmedqa,
            max_samples=args.max_samples,
            out=args.out,
        )
        from .evaluation.tasks import summary_lines

        for line in summary_lines(result, list(result["models"])):  # headlines on stderr; stdout stays JSON
            print(line, file=sys.stderr)
        print(json.dumps(result, indent=2))
        return 0
    if cmd == "export":
        return _cmd_export(args)
    if cmd == "report":
        from .stages.report import build_report

        paths = build_report(Path(args.run_dir))
        print("\n".join(str(p) for p in paths))
        return 0
    raise AssertionError(cmd)


def _cmd_run(args: argparse.Namespace) -> int:
    from .errors import ConfigError
    from .run.runner import run
    from .stages import STAGES

    if args.command == "demo":
        if not DEMO_CONFIG.exists():
            raise ConfigError(str(DEMO_CONFIG), ["the demo config is missing; run `vocabadapt demo` from a clone"])
        config = DEMO_CONFIG
    else:
        config = args.config
    until = args.until
    if args.command in ("tokenize", "embed", "align", "transplant"):
        until = args.command
    total = len(STAGES)
    index = {s.name: i + 1 for i, s in enumerate(STAGES)}

    def show(stage: str, event: str, detail: str) -> None:
        word = {"start": "running", "skip": "skipped", "done": "done"}[event]
        print(f"[{index[stage]}/{total}] {stage:<10} {word} ({detail})", file=sys.stderr, flush=True)

    result = run(
        config,
        args.overrides,
        run_dir=args.run_dir,
        from_stage=args.from_stage,
        until=until,
        force=args.force,
        on_event=show,
    )
    print(f"run directory: {result.run_dir}")
    if result.manifest.get("complete"):
        from .stages.report import closing_summary

        print(closing_summary(result.run_dir))
    return 0


def _cmd_audit(args: argparse.Namespace) -> int:
    from .audit import audit, format_text, gather_facts
    from .config import load_config

    config = load_config(args.config, args.overrides)
    facts = gather_facts(corpus_stats=args.corpus_stats, model_config=args.model_config, gpu_memory_gb=args.gpu_memory)
    findings = audit(config, facts)
    errors = sum(f.severity == "error" for f in findings)
    warnings = sum(f.severity == "warning" for f in findings)
    if args.format == "json":
        print(
            json.dumps(
                {
                    "findings": [f.as_dict() for f in findings],
                    "summary": {
                        "errors": errors,
                        "warnings": warnings,
                        "info": len(findings) - errors - warnings,
                        "config": args.config,
                    },
                },
                indent=2,
            )
        )
    else:
        print(format_text(findings, args.config))
    return 1 if errors or (args.strict and warnings) else 0


def _cmd_export(args: argparse.Namespace) -> int:
    from .model.gguf_export import export_gguf
    from .run.layout import RunLayout

    layout = RunLayout(Path(args.run_dir))
    name, model_dir = layout.final_model(args.model)
    # A model directory carries its tokenizer; one that does not uses the run's target tokenizer.
    tok_dir = model_dir if (model_dir / "tokenizer.json").is_file() else layout.tokenizer_dir("target")
    summary = export_gguf(
        model_dir, args.gguf, args.gguf_type, tokenizer_dir=tok_dir, name=f"{layout.root.name}-{name}"
    )
    print(
        f"{summary['file']}: {name} model, {summary['architecture']}, {args.gguf_type}, "
        f"{summary['bytes'] / 1e6:.1f} MB, {summary['vocab']} tokens (pre-tokenizer {summary['pre_tokenizer']}), "
        f"{'tied' if summary['tied_embeddings'] else 'untied'} embeddings",
        file=sys.stderr,
    )
    print(json.dumps(summary, indent=2))
    return 0
