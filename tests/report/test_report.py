"""The report: every section, every plot embedded, tolerant of missing inputs; the closing summary."""

from __future__ import annotations

import base64
import json
import re

import pytest

from vocabadapt.errors import InputError
from vocabadapt.run.context import StageContext
from vocabadapt.run.layout import RunLayout
from vocabadapt.stages.report import build_report, closing_summary
from vocabadapt.stages.report import run as run_stage


def _w(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj))


def fake_finished_run(run):
    """A run directory with the files a finished run leaves (numbers plausible, no models)."""
    models = {}
    for i, (name, bpb_, acc) in enumerate(
        [("source", 1.10, 0.52), ("init", 1.90, 0.40), ("stage1", 1.20, 0.50), ("stage2", 1.05, 0.55)]
    ):
        models[name] = {
            "bpb": {
                "heldout": {
                    "bits_per_byte": bpb_,
                    "tokens": 5000 - 300 * (name != "source"),
                    "bytes_per_token": 4.0 if name == "source" else 4.3,
                    "token_perplexity": 20.0 + i,
                }
            },
            "pubmedqa": {
                "n": 500,
                "acc": acc,
                "acc_ci95": [acc - 0.04, acc + 0.04],
                "acc_bytes": acc - 0.02,
                "macro_f1": acc - 0.1,
                "macro_f1_ci95": [acc - 0.15, acc - 0.05],
            },
        }
    _w(
        run / "eval" / "summary.json",
        {
            "baseline": "source",
            "final": "stage2",
            "models": models,
            "datasets": {"heldout": {"documents": 20, "bytes": 21000}},
            "pubmedqa_file": "ori_pqal.json",
            "pubmedqa_vs_baseline": {"stage2": {"n": 500, "accuracy_diff": 0.03, "accuracy_diff_ci95": [-0.01, 0.07]}},
            "tokenizers": {
                "source": {
                    "vocab_size": 50257,
                    "bytes_per_token": 4.0,
                    "tokens_per_word": 1.6,
                    "domain_words": 1000,
                    "domain_words_one_token": 0.3,
                    "domain_words_two_tokens": 0.4,
                    "domain_word_mean_tokens": 2.2,
                },
                "target": {
                    "vocab_size": 42000,
                    "bytes_per_token": 4.3,
                    "tokens_per_word": 1.4,
                    "domain_words": 1000,
                    "domain_words_one_token": 0.6,
                    "domain_words_two_tokens": 0.3,
                    "domain_word_mean_tokens": 1.5,
                },
                "domain_words_from": "terms/terms.txt",
            },
            "vocab_cost": {
                "embedding_params_change": -100000,
                "flops_per_byte_change_pct": -7.5,
                "compared": ["source", "stage2"],
            },
            "skipped": {},
        },
    )
    checks = [
        {"id": i, "name": f"check {i}", "status": s, "evidence": {"x": 1.5}, "reason": f"because {i}"}
        for i, s in zip(range(1, 7), ["pass", "pass", "pass", "fail", "pass", "not-run"])
    ]
    _w(run / "eval" / "checklist.json", checks)
    for k, stage in enumerate(("stage1", "stage2")):
        lines = [
            {
                "type": "train",
                "step": s,
                "loss": 4.0 - k - 0.1 * s,
                "learning_rate": 1e-4,
                "grad_norm": 1.0,
                "tokens_per_s": 1000.0,
            }
            for s in range(1, 11)
        ]
        lines += [{"type": "eval", "step": s, "heldout_bpb": 1.5 - k * 0.3 - 0.01 * s} for s in (5, 10)]
        _w(run / "train" / stage / "metrics.jsonl", "\n".join(json.dumps(x) for x in lines) + "\n{cut")
    for k, s in enumerate(("stage1", "stage2")):
        _w(run / "train" / s / "summary.json", {"steps": 10, "tokens": 20480, "heldout_bpb_before": 2.0 - k})
    _w(
        run / "align" / "summary.json",
        {
            "coverage": 0.97,
            "counts": {"identical": 20000, "aligned": 18000, "fvt": 4000},
            "threshold": 0.5,
            "similarity_histogram": {
                "edges": [i / 10 - 1 for i in range(21)],
                "counts": list(range(20)),
                "threshold": 0.5,
            },
        },
    )
    _w(
        run / "model" / "init" / "transplant.json",
        {"init": None, "zero_rows": 0, "rows_per_method": {"identical": 20000, "aligned": 18000, "fvt": 4000}},
    )
    _w(
        run / "manifest.json",
        {
            "stages": {
                "corpus": {"status": "done", "wall_s": 1.5, "peak_rss_mb": 300.0},
                "stage1": {"status": "done", "wall_s": 120.0, "peak_rss_mb": 2000.0},
            }
        },
    )
    _w(run / "config.yaml", "models:\n  source_model: tiny-source\nevaluation:\n  stride: 512\n")
    return run


def _png_count(html_text):
    imgs = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", html_text)
    assert all(base64.b64decode(i)[:8] == b"\x89PNG\r\n\x1a\n" for i in imgs)
    return len(imgs)


def test_report_has_every_section_and_embedded_plot(tmp_path):
    run = fake_finished_run(tmp_path / "run")
    paths = build_report(run)
    names = sorted(p.name for p in paths)
    assert names == sorted(
        [
            "report.md",
            "report.html",
            "training.png",
            "alignment_similarity.png",
            "init_methods.png",
            "bytes_per_token.png",
        ]
    )
    assert all(p.is_file() and p.stat().st_size > 0 for p in paths)
    md = (run / "report" / "report.md").read_text()
    html_text = (run / "report" / "report.html").read_text()
    sections = [
        "Verification checklist",
        "Models",
        "Plots",
        "Tokenizers and vocabulary cost",
        "Alignment",
        "Stage timings",
        "Config used",
    ]
    for text, head in ((md, "## {}\n"), (html_text, "<h2>{}</h2>")):
        positions = [text.index(head.format(s)) for s in sections]
        assert positions == sorted(positions)  # the checklist comes first
        assert "5 pass, 1 fail, 1 not run" in text or "4 pass, 1 fail, 1 not run" in text
        assert "1.0500" in text and "1.1000" in text  # stage2 and source bits per byte
        assert "0.550 [0.510, 0.590]" in text  # accuracy with its interval
        assert "0.030 [-0.010, 0.070]" in text  # paired difference
        assert "source_model: tiny-source" in text and "120.0" in text
    assert _png_count(html_text) == 4
    for png in ("training.png", "alignment_similarity.png", "init_methods.png", "bytes_per_token.png"):
        assert f"]({png})" in md
    assert "<img" in html_text and "FAIL" in html_text and "src='report" not in html_text  # self-contained


def test_report_of_a_partial_run_says_what_is_missing(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    paths = build_report(run)
    assert [p.name for p in paths] == ["report.md", "report.html"]
    md = (run / "report" / "report.md").read_text()
    assert "eval/checklist.json is missing" in md and "not available" in md and "config.yaml is missing" in md
    with pytest.raises(InputError):
        build_report(tmp_path / "absent")


def test_report_stage_and_closing_summary(tmp_path):
    run = fake_finished_run(tmp_path / "run")
    out = run_stage(StageContext(layout=RunLayout(run), config=None, stage="report"))  # type: ignore[arg-type]
    assert out["plots"] == 4 and "report/report.html" in out["files"]
    text = closing_summary(run)
    assert f"final model: {run / 'model' / 'stage2'}" in text
    assert "checklist: 4 pass, 1 fail, 1 not run" in text
    assert "held-out bits per byte: source 1.1000, init 1.9000, stage1 1.2000, stage2 1.0500" in text
    assert "bytes per token: source 4.000, target 4.300" in text
    assert "PubMedQA acc (lm-eval's scoring): source 0.520 [0.480, 0.560]" in text
    assert str(run / "report" / "report.html") in text
    assert "no evaluation found" in closing_summary(tmp_path)
    _w(tmp_path / "eval" / "summary.json", {"skipped": True, "reason": "evaluation.enabled is false"})
    assert closing_summary(tmp_path).startswith("evaluation skipped: evaluation.enabled is false")


def test_cli_report(tmp_path, capsys):
    from vocabadapt.cli import main

    run = fake_finished_run(tmp_path / "run")
    assert main(["report", str(run)]) == 0
    printed = capsys.readouterr().out.split()
    assert str(run / "report" / "report.html") in printed and len(printed) == 6
    assert main(["report", str(tmp_path / "absent")]) == 2
