"""Command line: `python -m hmxnb run --profile smoke`, `python -m hmxnb validate --profile paper`,
`python -m hmxnb submit` (sweep members as jobs), `python -m hmxnb check-pages smoke` (a finished run's pages in a
real browser), `python -m hmxnb lab`, `python -m hmxnb colab-links` (Colab badges and clone URL from
hmxnb.runner.colab.REPO_URL)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from hmxnb.params import ParamsError, available_profiles, load_params, params_hash, parse_override
from hmxnb.paths import PathError


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m hmxnb", description="Run the HMX-feel reproduction notebooks.")
    sub = ap.add_subparsers(dest="cmd", required=True)

    def common(p):
        p.add_argument("--profile", default="smoke",
                       help=f"params profile ({', '.join(available_profiles())}) or a yaml path")
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", type=_override,
                       help="override one params key (repeatable), e.g. --set max_steps=20")

    run = sub.add_parser("run", help="execute the numbered notebooks with papermill into outputs/<profile>/")
    common(run)
    run.add_argument("--only", nargs="+", metavar="STEP", help="run only these steps, e.g. --only 01 02")
    run.add_argument("--from", dest="start", metavar="STEP", help="run from this step on, e.g. --from 02")
    run.add_argument("--force", action="store_true",
                     help="a fresh run of the selected steps: their old outputs move to _archive/ first")
    run.add_argument("--member", metavar="NAME", help="run one sweep member alone (steps 01-04), e.g. qwen3-4b-seed1")
    run.add_argument("--keep-going", action="store_true",
                     help="in a sweep, a failed member does not stop the others; step 05 compares those that finished")
    run.add_argument("--outputs", type=_output_root, metavar="DIR",
                     help="output root (default: outputs/ in the repository)")
    _notebooks_flag(run)
    _submit_parser(sub, common)
    val = sub.add_parser("validate", help="check a profile and print the resolved params")
    common(val)
    pages = sub.add_parser("check-pages", help="say whether a run's records show every step finished, then open its "
                           "executed notebooks and report in headless Chromium and say what a reader would notice "
                           "(exit 1 on a problem)")
    pages.add_argument("profile", help="the profile whose outputs to check (its folder under the output root)")
    pages.add_argument("--outputs", type=_output_root, metavar="DIR",
                       help="output root (default: outputs/ in the repository)")
    sub.add_parser("lab", help="start JupyterLab on notebooks/ with this environment")
    sub.add_parser("colab-links", help="write hmxnb/runner/colab.py's REPO_URL into every notebook's Colab badge "
                                                "and clone URL")
    return ap


def _submit_parser(sub, common) -> None:
    sm = sub.add_parser("submit", help="one job per sweep member, then the aggregate step (SLURM or local processes)")
    common(sm)
    sm.add_argument("--executor", choices=("slurm", "local"), default="slurm", help="SLURM jobs or local processes")
    sm.add_argument("--partition", help="SLURM partition (default: params slurm_partition)")
    sm.add_argument("--gpus", type=int, help="GPUs per member job (default: params slurm_gpus_per_node)")
    sm.add_argument("--cpus", type=int, help="CPU cores per job (default: params slurm_cpus_per_task)")
    sm.add_argument("--mem-gb", type=int, help="memory per job in GB (default: params slurm_mem_gb)")
    sm.add_argument("--time-min", type=int,
                    help="time limit per member job in minutes (default: params slurm_time_min)")
    sm.add_argument("--max-parallel", type=int, default=1, help="local executor: members run at once (default 1)")
    sm.add_argument("--wait", action="store_true",
                    help="wait for the jobs and report their outcome (local always waits)")
    sm.add_argument("--dry-run", action="store_true", help="print the job commands without submitting")
    sm.add_argument("--outputs", type=_output_root, metavar="DIR",
                    help="output root (default: outputs/ in the repository)")
    _notebooks_flag(sm)


def _notebooks_flag(p) -> None:
    p.add_argument("--notebooks", type=Path, metavar="DIR",
                   help="folder of the numbered notebooks to run (default: notebooks/ in the repository)")


def _override(text: str):
    try:
        return parse_override(text)
    except ParamsError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _output_root(text: str) -> Path:
    """--outputs DIR as a Path; empty is refused (RunError, one line from `main`): Path('') is '.', the current
    folder, which is not what an empty value (an unset shell variable) meant."""
    from hmxnb.runner.runstate import RunError

    if not text.strip():
        raise RunError("--outputs is empty: give a folder (e.g. --outputs /scratch/hmxnb), or leave the flag out "
                       "for outputs/ in the repository")
    return Path(text)


def main(argv: list[str] | None = None) -> int:
    from hmxnb.runner.runstate import RunError

    try:
        args = _parser().parse_args(argv)  # inside: --outputs '' raises RunError, not argparse's usage error
        _check_args(args)
        if args.cmd == "validate":
            return _validate(args)
        if args.cmd == "lab":
            return _lab()
        if args.cmd == "colab-links":
            return _colab_links()
        if args.cmd == "check-pages":
            return _check_pages(args)
        if args.cmd == "submit":
            from hmxnb.runner.submit import main_submit

            return main_submit(args)
        from hmxnb.runner.run import main_run

        args.argv = argv  # the stop message prints the command that continues this one
        return main_run(args)
    except (ParamsError, RunError, PathError) as err:
        print(f"hmxnb: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # e.g. an outputs/ folder that became unwritable mid-run: one line naming the file
        print(f"hmxnb: error: {err.strerror or err}: {err.filename or ''}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        from hmxnb.runner.run import resume_hint

        print(f"hmxnb: interrupted; {resume_hint(argv)}", file=sys.stderr)
        return 130


def _check_args(args) -> None:
    """Refuse flag combinations that would silently mean something else (one line, RunError): `--only` ignored
    `--from`."""
    from hmxnb.runner.runstate import RunError

    if getattr(args, "only", None) and getattr(args, "start", None):
        raise RunError(f"--only and --from do not combine (--only {' '.join(args.only)} runs just those steps, "
                       f"--from {args.start} runs that step and all after it): give one of them")


def _validate(args) -> int:
    """Print the resolved params, their hash, the sweep members' folder names and the per-model decisions.

    Exit 0 for valid params even when this machine cannot run them (a GPU profile checked on a login node before
    `submit`): that is said on stderr in one `note:` line, the line `run` would stop with."""
    from hmxnb.runner.members import sweep
    from hmxnb.paper import model_decisions
    from hmxnb.runner.run import RunError, _check_profile

    p = load_params(args.profile, dict(args.set))
    members = [name for name, _ in sweep(p) if name]
    print(json.dumps({"params_hash": params_hash(p), **p, "sweep_members": members,
                      "model_decisions": model_decisions(p)}, indent=2))
    try:
        _check_profile(args.profile, p, log=lambda line: print(line, file=sys.stderr))
    except RunError as err:
        print(f"note: {err} (the params are valid; `run` stops here on this machine)", file=sys.stderr)
    return 0


def _lab() -> int:
    """`lab`: JupyterLab on notebooks/, started by this interpreter (`python -m jupyterlab`); the install hint (exit 2)
    when this interpreter cannot import jupyterlab. A `jupyter` command on PATH says nothing about that: jupyter_core,
    which papermill and nbconvert bring, puts one in every venv, so in an activated venv it was always found."""
    import subprocess

    from hmxnb.paths import NOTEBOOKS, ROOT

    if not _has_module("jupyterlab"):
        print(f"hmxnb: error: JupyterLab is not installed for {sys.executable}; run `make lab`, or "
              f"`{sys.executable} -m pip install -e '{ROOT}[notebook]'`", file=sys.stderr)
        return 2
    return subprocess.call([sys.executable, "-m", "jupyterlab", f"--notebook-dir={NOTEBOOKS}"])


def _colab_links() -> int:
    from hmxnb.runner import colab
    from hmxnb.steps import notebook_steps

    changed = colab.write_notebooks(notebook_steps())  # badges, set-up cells, notebook 03 from 02
    print(f"Colab links and set-up cells -> {colab.REPO_URL}, 03 from 02: {len(changed)} notebook(s) rewritten"
          + "".join(f"\n  {p.name}" for p in changed))
    return 0


def _check_pages(args) -> int:
    """`check-pages PROFILE`: the run's records, then every page of outputs/<profile>/ in headless Chromium
    (hmxnb.runner.browser); 0 when every step finished and every page reads well, 1 when the records or a page have a
    problem, 2 (one line) without Chromium or without a run."""
    from hmxnb.runner.browser import check_pages
    from hmxnb.paths import OUTPUTS, inside

    name = load_params(args.profile)["profile"]  # a yaml path names its folder by its stem, as `run` does
    return check_pages(inside(args.outputs or OUTPUTS, name))


def _has_module(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


if __name__ == "__main__":
    sys.exit(main())
