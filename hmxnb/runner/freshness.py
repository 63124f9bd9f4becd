"""Are a step's finished outputs still what they were built from? What a step reads, checked before it runs and
after every runner invocation, so that no record or report claims more than is true.

- A step reads other steps' outputs (`Step.inputs` in hmxnb.steps). While one of them is not finished (failed,
  missing, interrupted, running or stale) the step is not up to date, and the runner refuses to run it, naming the
  input, rather than run it on outputs that are absent or from another run.
- A finished step goes stale when a file it wrote is missing or changed since it finished (size and sha256 recorded
  in its `step.json`), or when an input is no longer the run it read (not finished any more, or re-run since:
  each step records its inputs' run ids), and a step that writes reports (05) also when its key moved while the
  params did not (its notebook, data or the sweep members it compares changed). Its `step.json` then says 'stale'
  with the reason, and the next run re-runs it afresh (archiving the old outputs).
- The reports such a step wrote at outputs/<profile>/ (`Step.reports`) and in its folder get a "Stale report" line
  at the top while they are not the current step's finished work: stale, failed, interrupted, or being rebuilt.
"""

from __future__ import annotations

import html
import re
import time
from pathlib import Path

from hmxnb.artifacts import save_json, save_text
from hmxnb.runner.runstate import artefact_problem, read_step, step_status
from hmxnb.steps import declared

STALE_MD = "> **Stale report**"
STALE_HTML = re.compile(r'<div class="hmxnb-stale".*?</div>\n?', re.S)
BANNER_STYLE = "background:#fff3cd;border:2px solid #d39e00;padding:.6em 1em;margin:1em 0;font-weight:bold"


def run_id(rec: dict | None) -> str | None:
    """What tells one run of a step from another: its run id (older records: when it was last written)."""
    return (rec or {}).get("run_id") or (rec or {}).get("updated")


def input_problem(out_root: Path, step: str, present) -> tuple[str, str] | None:
    """(input step, its status) for the first step `step` reads that is not finished, or finished with a file it
    wrote missing or changed since ('damaged (…)'); None when all are.
    Inputs not in `present` (this pipeline's steps) are not checked."""
    for name in declared(step).inputs:
        if name in present:
            rec = read_step(out_root / name)
            status = step_status(rec)
            damaged = artefact_problem(out_root / name, rec.get("files")) if status == "ok" else ""
            if status != "ok" or damaged:
                return name, f"damaged ({damaged})" if damaged else status
    return None


def input_runs(out_root: Path, step: str, present) -> dict[str, str | None]:
    """Input step -> the run id of its outputs now: recorded with `step`, so a later re-run of an input shows."""
    return {name: run_id(read_step(out_root / name)) for name in declared(step).inputs if name in present}


def stale_reason(out_root: Path, step: str, key: str, phash: str, present) -> str:
    """Why a finished step's outputs are no longer current ('04_benchmarks is failed'); '' when they are, or when
    the step has not finished."""
    rec = read_step(out_root / step)
    if not rec or rec.get("status") != "ok":
        return ""
    problem = input_problem(out_root, step, present)
    if problem:
        return f"{problem[0]} is {problem[1]}"
    damaged = artefact_problem(out_root / step, rec.get("files"))
    if damaged:
        return damaged
    for name, ident in (rec.get("inputs") or {}).items():
        if run_id(read_step(out_root / name)) != ident:
            return f"{name} was re-run after it"
    if declared(step).reports and rec.get("params_hash") == phash and rec.get("key") != key:
        return "its notebook, data or compared sweep members changed"
    return ""


def refresh(out_root: Path, step: str, keys: dict[str, str], phash: str, log) -> None:
    """Mark `step` stale (saying so in one line) if what it read changed since it finished; mark a report step's
    reports when it has not finished (they are then an earlier run's). `keys`: this pipeline's steps and keys."""
    reason = stale_reason(out_root, step, keys[step], phash, keys)
    if reason:
        marked = mark_stale(out_root, step, reason)
        log(f"hmxnb: {step} is stale ({reason}){_listed(marked)}; it re-runs afresh once its inputs are finished")
        return
    status = step_status(read_step(out_root / step))
    if declared(step).reports and status not in ("ok", "missing", "stale"):  # stale: marked with its reason
        marked = mark_reports(out_root, step, f"{step} is {status}: this report is from an earlier run")
        if marked:
            log(f"hmxnb: {step} is {status}{_listed(marked)}")


def _listed(paths: list[Path]) -> str:
    return f"; marked stale: {', '.join(str(p) for p in paths)}" if paths else ""


def warn_upstream(steps: list[Path], all_steps: list[Path], keys: dict[str, str], out_root: Path, log) -> None:
    """Steps not selected but run before a selected one: say so when their outputs are missing or from other params."""
    first = all_steps.index(steps[0])
    for nb in all_steps[:first]:
        prev = read_step(out_root / nb.stem)
        if prev is None or prev.get("status") != "ok":
            log(f"warning: {nb.stem} has no finished outputs in {out_root}; later steps may fail")
        elif prev.get("key") != keys[nb.stem]:
            log(f"warning: {nb.stem} outputs come from other params, data or notebook (key {prev.get('key')}, now "
                f"{keys[nb.stem]}); re-run it with --from {nb.stem.split('_')[0]} for consistent results")


def mark_stale(out_root: Path, step: str, reason: str) -> list[Path]:
    """Record a finished step as stale, with the reason, and mark its reports; returns the reports marked."""
    rec = read_step(out_root / step)
    if rec is not None and rec.get("status") == "ok":
        save_json({**rec, "status": "stale", "stale": reason}, out_root / step / "step.json")
    return mark_reports(out_root, step, f"built from inputs that are no longer current ({reason})")


def mark_reports(out_root: Path, step: str, why: str) -> list[Path]:
    """Put a 'Stale report' line saying `why` at the top of the reports `step` wrote (at outputs/<profile>/ and in
    its folder); returns those marked now (a report already saying `why` is left as it is)."""
    names = declared(step).reports
    paths = [p for n in names for p in (out_root / n, out_root / step / n) if p.is_file()]
    marked, failed = [], []
    for path in paths:  # where a banner cannot be written (a full disk), the report is renamed <name>.stale<suffix>
        try:  # (a rename needs no space), so no report without its banner stays where readers look
            if _mark(path, why, step):
                marked.append(path)
        except OSError as err:
            path.rename(path.with_name(f"{path.stem}.stale{path.suffix}"))
            failed.append(err)
    if failed:
        raise failed[0]
    return marked


def _mark(path: Path, why: str, step: str) -> bool:
    text = path.read_text(encoding="utf-8")
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    line = f"Stale report ({stamp}): {why}. Re-run {step} to rebuild it."
    if path.suffix == ".html":
        old = STALE_HTML.search(text)
        if old and html.escape(why) in old.group(0):
            return False
        banner = f'<div class="hmxnb-stale" style="{BANNER_STYLE}">{html.escape(line)}</div>\n'
        text = STALE_HTML.sub("", text, count=1)
        text, found = re.subn(r"<body[^>]*>\n?", lambda m: m.group(0) + banner, text, count=1)
        text = text if found else banner + text
    else:
        first, _, rest = text.partition("\n")
        if first.startswith(STALE_MD):
            if why in first:
                return False
            text = rest.lstrip("\n")
        text = f"{STALE_MD} ({stamp}): {why}. Re-run {step} to rebuild it.\n\n{text}"
    save_text(text, path)
    return True
