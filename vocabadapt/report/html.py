"""The report as one self-contained HTML file: template.html.j2 (editable without Python), images inlined."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from .markdown import Block

TEMPLATE = "template.html.j2"


def _view(block: Block, image_dir: Path) -> dict[str, Any]:
    """A block as the template reads it (named fields; an image's PNG as base64)."""
    kind = block[0]
    if kind == "h":
        return {"kind": kind, "level": block[1], "text": block[2]}
    if kind in ("p", "code"):
        return {"kind": kind, "text": block[1]}
    if kind == "table":
        return {"kind": kind, "headers": [str(h) for h in block[1]], "rows": [[str(c) for c in r] for r in block[2]]}
    if kind == "img":
        data = base64.b64encode((image_dir / block[1]).read_bytes()).decode("ascii")
        return {"kind": kind, "caption": block[2], "data": data}
    raise ValueError(f"unknown block kind {kind!r}")


def render_html(blocks: list[Block], image_dir: Path) -> str:
    """The report's HTML; images are read from `image_dir` and inlined, so the file stands alone."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent), autoescape=True, keep_trailing_newline=True
    )
    title = next((b[2] for b in blocks if b[0] == "h" and b[1] == 1), "vocabadapt report")
    return env.get_template(TEMPLATE).render(title=title, blocks=[_view(b, image_dir) for b in blocks])
