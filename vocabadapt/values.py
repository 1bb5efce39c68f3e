"""Reading and showing values of the run's JSON artifacts: one nested lookup, one number test, the formatters.

The report, the evaluation tasks' report hooks, the checklist and the stage summaries all read nested
dicts that may lack any level (a partial run), so they share these definitions; nothing here imports
anything of vocabadapt.
"""

from __future__ import annotations

from typing import Any


def get(d: Any, *keys: Any) -> Any:
    """d[k1][k2]... , or None as soon as a level is missing (an int key also indexes a list)."""
    for k in keys:
        if isinstance(d, dict):
            d = d.get(k)
        elif isinstance(d, list) and isinstance(k, int) and -len(d) <= k < len(d):
            d = d[k]
        else:
            return None
    return d


def number(x: Any) -> float | None:
    """x as a float when it is a number (bool is not), else None."""
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else None


def fmt(x: Any, digits: int = 4) -> str:
    """A value for a table cell: '–' for None, thousands separators for ints and large floats."""
    if isinstance(x, bool) or x is None:
        return "–" if x is None else str(x)
    if isinstance(x, int):
        return f"{x:,}"
    if isinstance(x, float):
        return f"{x:,.0f}" if abs(x) >= 10_000 else f"{x:.{digits}f}"
    return str(x)


def ci(v: Any, ci: Any, digits: int = 3) -> str:
    """'v [lo, hi]' (or 'v' without an interval, '–' without a value)."""
    if v is None:
        return "–"
    if isinstance(ci, list) and len(ci) == 2:
        return f"{v:.{digits}f} [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"
    return f"{v:.{digits}f}"
