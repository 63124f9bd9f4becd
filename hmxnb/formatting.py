"""Numbers as the report, the notebooks and the figures write them: one place, so a change reads the same everywhere.

Changes carry their unit: '%' (relative change, accuracies and scores) right after the number, 'pp' (percentage
points, rates and bias scores) after a space. A value that is missing or undefined is written 'n/a', never 'nan'.
"""

from __future__ import annotations

import numpy as np


def unit_suffix(unit: str) -> str:
    """'%' right after the number, other units after a space: '+1.2%', '-0.5 pp'."""
    return unit if unit in ("", "%") else f" {unit}"


def fmt_change(value: float, unit: str) -> str:
    """'+1.2%' or '-0.5 pp'; 'n/a' when the change is undefined."""
    return f"{value:+.1f}{unit_suffix(unit)}" if np.isfinite(value) else "n/a"


def mean_sd(mean: float, sd: float, digits: int = 1, unit: str = "") -> str:
    """'m ± s unit', or 'm unit' when the sd is undefined (one seed); 'n/a' without a mean."""
    if not np.isfinite(mean):
        return "n/a"
    return f"{mean:+.{digits}f}" + (f" ± {sd:.{digits}f}" if np.isfinite(sd) else "") + unit_suffix(unit)


def num(x: float, sign: str = "") -> str:
    """A value in words: three decimals, one above 100 (bias scores are x100)."""
    return format(x, f"{sign}.{3 if abs(x) < 100 else 1}f")


def minus(x: float, spec: str = ".2f") -> str:
    """`x` formatted by `spec` with a true minus sign (−), as the notebooks' prose writes numbers: '−0.50'."""
    return format(x, spec).replace("-", "−")


def fmt(x, spec: str) -> str:
    """Number as text; 'n/a' for NaN / None."""
    return "n/a" if x is None or (isinstance(x, float) and not np.isfinite(x)) else format(x, spec)


def ci_text(lo, hi) -> str:
    """'[-0.050, +0.020]', or 'n/a' without an interval."""
    return "n/a" if not (np.isfinite(lo) and np.isfinite(hi)) else f"[{lo:+.3f}, {hi:+.3f}]"


def diff_text(d, lo, hi) -> str:
    """'+0.037 [+0.011, +0.069]', or 'n/a' when nothing was measured."""
    return "n/a" if not np.isfinite(d) else f"{d:+.3f} {ci_text(lo, hi)}"
