"""The paper's claims beside ours: the claims table of notebook 05 and the report, from the per-seed rows.

Which rows a claim covers is declared by the benchmarks, not guessed from names: each compared metric names the
claim it feeds (`Metric.claim`, keys in hmxnb.paper), and a results row belongs to the claim of its metric. A
claim is checked on the measured rows only; rows not measured or undefined are listed, never counted.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from hmxnb import stats
from hmxnb.aggregate import paper_summary
from hmxnb.bench.registry import compare_metrics
from hmxnb.compare import MAIN_CONTRAST, NOT_MEASURED, UNDEFINED, measured
from hmxnb.formatting import fmt_change
from hmxnb.paper import LARGEST_DEGRADATION, PAPER_CLAIMS, PAPER_LARGEST, PAPER_SHARE_PCT


def claims_by_metric(metrics) -> dict[tuple[str, str], str | None]:
    """(benchmark, metric) -> the claim that metric feeds (None: no claim), for every compared metric."""
    return {(m.benchmark, m.name): m.claim for m in metrics}


def _mean_by_unit(rows: pd.DataFrame) -> str:
    """Mean improvement per unit, e.g. '+1.2% (accuracies), -0.4 pp (rates)': % and pp are never averaged together."""
    parts = []
    for unit, g in rows.groupby("change_unit", sort=False):
        v = g["improvement"][np.isfinite(g["improvement"])]
        if len(v):
            parts.append(fmt_change(v.mean(), unit))
    return ", ".join(parts) or "n/a"


def _direction_claim(rows: pd.DataFrame, claim: dict) -> dict:
    """Ours / agrees for a direction claim, over the matching per-seed rows that were measured."""
    base = {"claim": claim["claim"], "paper": claim["paper"]}
    ok = measured(rows)
    left_out = [f"{int((rows['cls'] == c).sum())} {c}" for c in (NOT_MEASURED, UNDEFINED)
                if (rows["cls"] == c).any()]
    note = f"; left out: {', '.join(left_out)}" if left_out else ""
    if ok.empty:
        ours = UNDEFINED if (rows["cls"] == UNDEFINED).any() else NOT_MEASURED
        return {**base, "ours": ours + (f" ({len(rows)} result{'s' * (len(rows) != 1)})" if len(rows) else ""),
                "agrees?": "n/a"}
    counts = ok["cls"].value_counts()
    parts = [f"{c} in {counts.get(c, 0)} of {len(ok)}" for c in stats.CLASSES if counts.get(c, 0)]
    ours = f"{', '.join(parts)} (mean improvement {_mean_by_unit(ok)}){note}"
    hits = counts.get(claim["expect"], 0)
    agrees = "yes" if hits == len(ok) else "no" if hits == 0 else "partly"
    return {**base, "ours": ours, "agrees?": agrees}


def _share_row(summ: dict, tolerance: float) -> dict:
    """The claims row of the share of small changes."""
    share, left = summ["share_pct"], summ["n_not_measured"] + summ["n_undefined"]
    ours = "n/a" if not np.isfinite(share) else f"{share:.1f}% ({summ['n_improved_or_small']}/{summ['n_results']})"
    if left:
        ours += f"; left out: {summ['n_not_measured']} not measured, {summ['n_undefined']} without a defined change"
    agrees = "n/a" if not np.isfinite(share) else "yes" if abs(share - PAPER_SHARE_PCT) <= tolerance else "no"
    return {"claim": f"Share of results improved or degraded by < {summ['threshold']:g}% (< {summ['threshold']:g} pp "
                     "for rates and bias scores; training target excluded)",
            "paper": f"{PAPER_SHARE_PCT}%", "ours": ours, "agrees?": agrees}


def _largest_row(summ: dict, claim_of: dict) -> dict:
    """The claims row of the largest degradation: 'yes' if ours is on the metric that feeds LARGEST_DEGRADATION
    (BBQ ambiguous accuracy, where the paper's was)."""
    worst, p = summ["largest_degradation"], PAPER_LARGEST
    if worst is None:
        ours, agrees = "no degradation", "no"
    else:
        ours = (f"{worst['base_model']}, {worst['benchmark']}/{worst['metric']}, "
                f"{fmt_change(-worst['degradation'], worst['unit'])}")
        same = claim_of.get((worst["benchmark"], worst["metric"])) == LARGEST_DEGRADATION
        agrees = "yes" if same else "no"
    return {"claim": "Largest degradation", "paper": f"{p['base_model']}, BBQ {p['metric']}, -{p['degradation_pct']}%",
            "ours": ours, "agrees?": agrees}


def check_claims(results: pd.DataFrame, claims=None, contrast: str = MAIN_CONTRAST, share_tolerance_pp: float = 10.0,
                 metrics=None) -> pd.DataFrame:
    """Table claim | paper | ours | agrees? for the main contrast.

    Direction claims (`claims`, default hmxnb.paper.PAPER_CLAIMS): "yes" if every measured per-seed row of the
    claim has the predicted class, "partly" if some do, "no" if none (not measured / undefined rows are listed,
    not counted). Share of small changes: "yes" within ±share_tolerance_pp points of 81.4%. Largest degradation:
    "yes" if ours is also on the metric the paper's was on (BBQ ambiguous accuracy). Over-10 count: "yes" if at
    most one. `metrics`: the compared metrics that say which claim a row feeds (default: the registry's).
    """
    claim_of = claims_by_metric(compare_metrics() if metrics is None else metrics)
    sub = results[results["contrast"] == contrast]
    keys = pd.Series([claim_of.get(k) for k in zip(sub["benchmark"], sub["metric"])], index=sub.index, dtype=object)
    claims = PAPER_CLAIMS if claims is None else claims
    rows = [_direction_claim(sub[keys == claim["key"]], claim) for claim in claims]
    summ = paper_summary(results, contrast)
    rows += [_share_row(summ, share_tolerance_pp), _largest_row(summ, claim_of)]
    over_10 = summ["n_degraded_over_10"]
    rows.append({"claim": "Results degraded by more than 10% (10 pp for rates and bias scores)", "paper": "1",
                 "ours": str(over_10), "agrees?": "yes" if over_10 <= 1 else "no"})
    return pd.DataFrame(rows, columns=["claim", "paper", "ours", "agrees?"])
