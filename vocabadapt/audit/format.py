"""The audit's text layout: a table of findings (severity, key, message, recommendation) and a summary."""

from __future__ import annotations

import textwrap

from .findings import SEVERITIES, VA, Finding


def summarize(findings: list[Finding]) -> dict[str, int]:
    return {s: sum(f.severity == s for f in findings) for s in SEVERITIES}


def format_text(findings: list[Finding], config_path: str, width: int = 110) -> str:
    """A table: severity, config key, finding (wrapped), recommendation after an arrow; then a summary."""
    counts = summarize(findings)
    verdict = "FAIL" if counts["error"] else ("OK with warnings" if counts["warning"] else "OK")
    summary = (
        f"{config_path}: {counts['error']} error(s), {counts['warning']} warning(s), {counts['info']} info — {verdict}"
    )
    if not findings:
        return f"audit {summary}"
    keys = [f.key.replace(f"{VA}.", "va.") for f in findings]
    kw = min(max(len(k) for k in keys), 34)
    sw = 8
    text_w = max(40, width - sw - kw - 4)
    lines = [
        f"audit of {config_path}  (va. = vocab_adaptation.)",
        "",
        f"{'SEVERITY':<{sw}}  {'KEY':<{kw}}  FINDING",
        f"{'-' * sw}  {'-' * kw}  {'-' * text_w}",
    ]
    pad = " " * (sw + kw + 4)
    for f, k in zip(findings, keys):
        body = textwrap.wrap(f.message, text_w) or [""]
        if f.recommendation:
            body += textwrap.wrap("→ " + f.recommendation, text_w, subsequent_indent="  ")
        first = f"{f.severity.upper():<{sw}}  {k:<{kw}}  "
        if len(k) > kw:
            lines.append(f"{f.severity.upper():<{sw}}  {k}")
            first = pad
        lines.append(first + body[0])
        lines.extend(pad + b for b in body[1:])
    lines += ["", summary]
    return "\n".join(lines)
