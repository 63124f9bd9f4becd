"""What a person sees: render the executed notebooks and report.html in headless Chromium and check the page.

`python -m hmxnb check-pages <profile>` runs it on a finished run (a workshop host, before showing the outputs):
first what the run's records say (`record_problems`: a step not finished, a stale report, a notebook with an error
output), then one line per page; exit status 1 when the records or a page have a problem.

After layout, a small script injected into each page measures what a reader would notice and writes it into
the DOM, which `chromium --headless --dump-dom` prints: whether every image loaded, whether a table or the page
runs off the right edge (a wide table may scroll inside the page), numbers shown as "nan", and the headings in
order. A full-page PNG screenshot of each page goes into its step's `figures/`. Needs Debian's `chromium` (no
Python browser packages). External hosts are blocked, so pages render offline; images from other hosts (the
Colab badge) are therefore not checked.
"""

from __future__ import annotations

import fcntl
import html
import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from hmxnb.runner.freshness import STALE_HTML, STALE_MD
from hmxnb.runner.runstate import LOCK_FILE, RunError, read_record, read_step
from hmxnb.steps import AGGREGATE_STEPS, STEPS, declared

NO_CHROMIUM = ("Chromium is not installed, so the real-browser check of the notebooks and report.html did NOT run: "
               "install Debian's chromium (apt-get install -y chromium; .ci/run does it)")
WIDTH = 1280  # a laptop screen
MAX_HEIGHT = 16000  # screenshot height cap (Chromium's surface limit is 16384)
REPORT_H2 = ("The paper's claims beside ours", "What the models say", "The training target", "Every metric",
             "Training curves", "All comparisons")
# Runs after layout; writes {images, tables, page, nan, headings, height} into <body data-hmxnb-measure>.
MEASURE_JS = r"""
window.addEventListener("load", () => {
  const vw = document.documentElement.clientWidth;
  const scrolls = (el) => { for (let p = el.parentElement; p; p = p.parentElement) {
      const o = getComputedStyle(p).overflowX;
      if ((o === "auto" || o === "scroll") && p.getBoundingClientRect().right <= vw + 1) return true; } return false; };
  const images = [...document.images].map((i) => ({src: i.src.slice(0, 60), loaded: i.complete && i.naturalWidth > 0}));
  const tables = [...document.querySelectorAll("table")].map((t) => ({
      head: t.innerText.slice(0, 60), right: Math.round(t.getBoundingClientRect().right), scrolls: scrolls(t)}));
  const shown = [...document.querySelectorAll(".jp-OutputArea-output, .jp-RenderedMarkdown")];
  const text = (shown.length ? shown.map((e) => e.innerText).join("\n") : document.body.innerText);
  const nan = [...text.matchAll(/(?<![A-Za-z_.])[+-]?nan%?(?![A-Za-z_(])/gi)].map(
      (m) => text.slice(Math.max(0, m.index - 40), m.index + m[0].length));
  const headings = [...document.querySelectorAll("h1, h2, h3")].map((h) => [h.tagName.toLowerCase(),
      h.innerText.replace(/\u00b6/g, "").trim()]);
  document.body.dataset.hmxnbMeasure = JSON.stringify({images, tables, nan, headings, width: vw,
      page: document.documentElement.scrollWidth, height: document.documentElement.scrollHeight});
});
"""


def find_chromium() -> str | None:
    """Path of a Chromium / Chrome executable, or None."""
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def _chromium(args: list[str], timeout: float = 120) -> str:
    """Run headless Chromium offline (external hosts unresolvable) in a throwaway profile; returns stdout."""
    exe = find_chromium()
    if exe is None:
        raise FileNotFoundError("chromium not found: install it (Debian: apt-get install chromium)")
    with tempfile.TemporaryDirectory() as profile:
        cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
               "--no-first-run", "--host-resolver-rules=MAP * ~NOTFOUND", f"--user-data-dir={profile}", *args]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"chromium {args[-1]}: exit {done.returncode}: {done.stderr.strip()[-300:]}")
    return done.stdout


def measure(page: Path, width: int = WIDTH) -> dict:
    """Layout measurements of an HTML file (see MEASURE_JS), from a copy with the script injected."""
    text = Path(page).read_text(encoding="utf-8")
    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / "page.html"
        probe.write_text(text.replace("</body>", f"<script>{MEASURE_JS}</script></body>", 1), encoding="utf-8")
        dom = _chromium([f"--window-size={width},1000", "--virtual-time-budget=10000", "--dump-dom", probe.as_uri()])
    found = re.search(r'data-hmxnb-measure="([^"]*)"', dom)
    if not found:
        raise RuntimeError(f"{page}: the page never finished loading (no measurements in the DOM)")
    return json.loads(html.unescape(found.group(1)))


def screenshot(page: Path, png: Path, height: int, width: int = WIDTH) -> Path:
    """Full-page PNG of an HTML file (window as tall as the page, up to MAX_HEIGHT)."""
    png = Path(png)
    png.parent.mkdir(parents=True, exist_ok=True)
    size = f"--window-size={width},{max(600, min(height, MAX_HEIGHT))}"
    _chromium([size, "--virtual-time-budget=10000", f"--screenshot={png.resolve()}", Path(page).resolve().as_uri()])
    return png


def problems(m: dict, h2_order=()) -> list[str]:
    """What a reader would notice in one page's measurements; [] when it reads well.

    Args:
        m: the dict of `measure`.
        h2_order: the h2 headings (prefixes) expected in this order; headings not listed may sit between.
    """
    out = [f"image not loaded: {i['src']}" for i in m["images"] if not i["loaded"] and not _external(i["src"])]
    out += [f"table runs off the page ({t['right']} > {m['width']} px): {t['head']!r}"
            for t in m["tables"] if t["right"] > m["width"] + 1 and not t["scrolls"]]
    if m["page"] > m["width"] + 1:
        out.append(f"page is {m['page']} px wide, wider than the window ({m['width']} px)")
    out += [f"'nan' shown: {n!r}" for n in m["nan"]]
    return out + _heading_problems(m["headings"], h2_order)


def _external(src: str) -> bool:
    """An image from another host (the Colab badge): offline it cannot load, so it is not checked here."""
    return src.startswith(("http://", "https://"))


def _heading_problems(headings: list, h2_order) -> list[str]:
    """One h1 and first; no skipped level (h1 -> h3); the expected h2s in order."""
    out = []
    if not headings or headings[0][0] != "h1" or sum(h[0] == "h1" for h in headings) != 1:
        out.append(f"expected one h1 and first, got {[h[1][:40] for h in headings if h[0] == 'h1']}")
    levels = [int(h[0][1]) for h in headings]
    out += [f"heading level skipped before {headings[i][1]!r}" for i in range(1, len(levels))
            if levels[i] > levels[i - 1] + 1]
    h2 = [h[1] for h in headings if h[0] == "h2"]
    found = [next((i for i, t in enumerate(h2) if t.startswith(want)), None) for want in h2_order]
    if None in found or found != sorted(found):
        out.append(f"h2 headings not in the intended order {list(h2_order)}: {h2}")
    return out


def notebook_html(notebook: Path, out: Path) -> Path:
    """An executed notebook as HTML (nbconvert's lab template, images embedded), as a reader of the outputs sees it."""
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter(template_name="lab", embed_images=True).from_filename(str(notebook))
    Path(out).write_text(body, encoding="utf-8")
    return Path(out)


def check_page(page: Path, png: Path, h2_order=()) -> list[str]:
    """Measure one page, save its screenshot to `png`, return its problems."""
    m = measure(page)
    screenshot(page, png, m["height"])
    return problems(m, h2_order)


def pages(root: Path) -> list[tuple[str, Path, Path, tuple]]:
    """(name, file, screenshot, expected h2 order) of every page of a run folder outputs/<profile>/: each executed
    notebook `<step>/<step>.ipynb` (a sweep member's named `<member>/<step>.ipynb`) and report.html. Screenshots go
    to the step's `figures/notebook_page.png`, the report's to `05_compare_report/figures/report_page.png`."""
    root = Path(root)
    found = []
    for nb in sorted(root.glob("[0-9][0-9]_*/[0-9][0-9]_*.ipynb")) + sorted(root.glob("*/[0-9][0-9]_*/*.ipynb")):
        member = nb.parent.parent.name if nb.parent.parent != root else ""
        if nb.parent.name == nb.stem and not member.startswith("_"):  # not _archive/
            found.append((f"{member}/{nb.name}" if member else nb.name, nb, nb.parent / "figures" / "notebook_page.png",
                          ()))
    report = root / "report.html"
    if report.is_file():
        found.append(("report.html", report, root / "05_compare_report" / "figures" / "report_page.png", REPORT_H2))
    return found


def checked(root: Path):
    """Yield (name, screenshot, problems) page by page (see `pages`); notebooks are rendered to HTML on the way."""
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, source, png, h2_order) in enumerate(pages(root)):
            page = notebook_html(source, Path(tmp) / f"{i}.html") if source.suffix == ".ipynb" else source
            yield name, png, check_page(page, png, h2_order)


def check_run(root: Path) -> dict[str, list[str]]:
    """Check every executed notebook under outputs/<profile>/ and report.html; screenshots in figures/ (see `pages`).
    Returns {page: problems}."""
    return {name: found for name, _, found in checked(root)}


def check_pages(root: Path, log=print) -> int:
    """The `check-pages` command: what the run's records say (`record_problems`), then every page of the run in
    `root`, one line per page (and per problem). Returns 0 when every step finished and every page reads well, 1
    otherwise; RunError (one line) without Chromium, or without pages and records."""
    if find_chromium() is None:
        raise RunError("check-pages needs Chromium and none is on PATH: install Debian's chromium "
                       "(apt-get install -y chromium) or Google Chrome")
    root, n = Path(root), len(pages(root))
    if not n and not [*root.glob("run.json"), *root.glob("*/run.json"), *root.glob("*/step.json")]:
        raise RunError(f"no executed notebooks or report.html under {root}: run the profile first "
                       "(python -m hmxnb run --profile ...)")
    records = record_problems(root)
    log("the run's records (run.json, step.json, reports, notebooks): " + (f"{len(records)} problem(s)" if records
        else "every step finished") + "".join(f"\nPROBLEM  {line}" for line in records))
    log(f"checking {n} pages of {root} in headless Chromium (screenshots in each step's figures/)")
    bad = 0
    for name, png, found in checked(root):
        log(f"ok       {name}  ({png})" if not found else "\n".join(f"PROBLEM  {name}: {f}" for f in found))
        bad += bool(found)
    log(f"{n} pages checked: {n - bad} read well, {bad} with problems"
        + (f"; {len(records)} problem(s) in the run's records (above)" if records else ""))
    return 1 if bad or records else 0


def record_problems(root: Path) -> list[str]:
    """One line per thing the records of the run in `root` say is not finished: a step whose step.json is not ok
    ('04_benchmarks: failed (<error>) — see 04_benchmarks/step.json'): failed, stale, interrupted, running (in a
    live runner or a dead one), missing; a step finished with a key its run.json says is not this run's; a report
    carrying the 'Stale report' banner; an executed notebook with an error output. The steps of a run are those its
    run.json lists, else the declared ones; a sweep's members (`_runs`) are checked each, and the aggregate step at
    `root`. [] when every step finished."""
    root = Path(root)
    out = [line for folder, steps in _runs(root) for line in _run_problems(root, folder, steps)]
    return out + [f"{name}: {e}" for name, nb, _, _ in pages(root) if nb.suffix == ".ipynb"
                  for e in notebook_errors(nb)]


def _runs(root: Path) -> list[tuple[Path, tuple[str, ...]]]:
    """(run folder, its declared steps): `root` for a single run; for a sweep, each member (a sub-folder holding
    records, or one members.json names) with the per-member steps, then `root` with the aggregate steps."""
    named = read_record(root / "members.json")
    found = {p.parent.name for p in root.glob("*/run.json")} | {p.parent.parent.name
                                                                 for p in root.glob("*/[0-9][0-9]_*/step.json")}
    members = sorted(m for m in found | set(named if isinstance(named, dict) else ())
                     if not m.startswith("_") and not re.match(r"\d\d_", m))
    if not members:
        return [(root, tuple(s.name for s in STEPS))]
    return [(root / m, tuple(s.name for s in STEPS if not s.aggregate)) for m in members] + [(root, AGGREGATE_STEPS)]


def _run_problems(root: Path, folder: Path, declared_steps: tuple[str, ...]) -> list[str]:
    """The problems of one run folder's steps and reports, each line naming its place relative to `root`."""
    at = "" if folder == root else f"{folder.name}/"
    if not folder.is_dir():
        return [f"{folder.name}: missing (members.json names it; no folder {folder})"]
    listed = {s.get("step"): s for s in (read_record(folder / "run.json") or {}).get("steps", [])
              if isinstance(s, dict)}
    names = [s for s in listed if s] or list(declared_steps)
    out = [f"{at}{name}: {why}" + (f" — see {at}{name}/step.json" if (folder / name / "step.json").is_file() else "")
           for name in names if (why := _step_problem(folder, name, listed.get(name) or {}))]
    reports = [p for n in names for r in declared(n).reports for p in (folder / r, folder / n / r) if p.is_file()]
    return out + [f"{p.relative_to(root)}: {b}" for p in reports if (b := stale_banner(p))]


def _step_problem(folder: Path, name: str, listed: dict) -> str:
    """Why step `name` in `folder` is not finished, '' when it is (`listed`: its entry in run.json)."""
    rec = read_step(folder / name) or {}
    status = rec.get("status", "missing")
    if status == "ok":
        if listed.get("current") is False and listed.get("key") == rec.get("key"):
            return (f"finished, but run.json says not as this run's params and notebooks make it (key "
                    f"{rec.get('key')}: an earlier step was re-run since); re-run it")
        return ""
    if status == "running":
        holder = lock_holder(folder)
        return (f"still running ({holder}): check again once it has finished" if holder else f"interrupted "
                f"(step.json says running, pid {rec.get('pid')}, but no process holds {folder / LOCK_FILE})")
    why = {"failed": rec.get("error") or "no error recorded", "stale": rec.get("stale") or "no reason recorded",
           "interrupted": "its runner stopped before it finished", "missing": "no step.json: not run here"}
    return f"{status} ({why[status]})" if status in why else f"status {status!r}"


def lock_holder(folder: Path) -> str:
    """Who holds `folder/.lock` now ('pid 12 on host since ...'), '' when no process does; reads only."""
    try:
        with open(Path(folder) / LOCK_FILE, encoding="utf-8") as f:
            fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)  # released when f closes
    except BlockingIOError:  # held (flock: also by another open file of this process)
        return Path(folder, LOCK_FILE).read_text(encoding="utf-8").strip() or "another process"
    except OSError:  # no lock file: no runner ever held it
        pass
    return ""


def stale_banner(report: Path) -> str:
    """The 'Stale report (...): why' banner hmxnb.runner.freshness put at the top of a report, '' when it has none."""
    text = Path(report).read_text(encoding="utf-8", errors="replace")
    if report.suffix == ".html":
        found = STALE_HTML.search(text)
        return html.unescape(re.sub(r"<[^>]+>", "", found.group(0))).strip() if found else ""
    first = text.partition("\n")[0]
    return "Stale report " + first.removeprefix(STALE_MD).strip() if first.startswith(STALE_MD) else ""


def notebook_errors(notebook: Path) -> list[str]:
    """'error output in cell [5]: ZeroDivisionError: division by zero' for each error output of an executed
    notebook (a cell tagged raises-exception, which is meant to raise, is not counted)."""
    try:
        cells = json.loads(Path(notebook).read_text(encoding="utf-8")).get("cells", [])
    except (OSError, ValueError, AttributeError) as err:
        return [f"cannot be read ({err})"]
    return [f"error output in cell [{c.get('execution_count')}]: {o.get('ename')}: "
            f"{(str(o.get('evalue') or '').strip().splitlines() or [''])[0][:200]}"
            for c in cells if "raises-exception" not in c.get("metadata", {}).get("tags", [])
            for o in c.get("outputs", []) if o.get("output_type") == "error"]
