"""Command line: `python -m hmxnb run --profile smoke`, `python -m hmxnb validate --profile paper`, `python -m hmxnb lab`."""

from __future__ import annotations

import argparse
import json
import sys

from hmxnb.params import ParamsError, available_profiles, load_params, params_hash, parse_override


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m hmxnb", description="Run the HMX-feel reproduction notebooks.")
    sub = ap.add_subparsers(dest="cmd", required=True)

    def common(p):
        p.add_argument("--profile", default="smoke", help=f"params profile ({', '.join(available_profiles())}) or a yaml path")
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", type=_override,
                       help="override one params key (repeatable), e.g. --set max_steps=20")

    run = sub.add_parser("run", help="execute the numbered notebooks with papermill into outputs/<profile>/")
    common(run)
    run.add_argument("--only", nargs="+", metavar="STEP", help="run only these steps, e.g. --only 01 02")
    run.add_argument("--from", dest="start", metavar="STEP", help="run from this step on, e.g. --from 02")
    run.add_argument("--force", action="store_true", help="a fresh run of the selected steps: their old outputs move to _archive/ first")
    val = sub.add_parser("validate", help="check a profile and print the resolved params")
    common(val)
    sub.add_parser("lab", help="start JupyterLab on notebooks/ with this environment")
    return ap


def _override(text: str):
    try:
        return parse_override(text)
    except ParamsError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from hmxnb.run import RunError

    try:
        if args.cmd == "validate":
            p = load_params(args.profile, dict(args.set))
            print(json.dumps({"params_hash": params_hash(p), **p}, indent=2))
            return 0
        if args.cmd == "lab":
            return _lab()
        from hmxnb.run import main_run

        return main_run(args)
    except (ParamsError, RunError) as err:
        print(f"hmxnb: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # e.g. an outputs/ folder that became unwritable mid-run: one line naming the file
        print(f"hmxnb: error: {err.strerror or err}: {err.filename or ''}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("hmxnb: interrupted; finished steps are kept and the step that ran is marked 'interrupted' in run.json; "
              "re-run the same command to continue", file=sys.stderr)
        return 130


def _lab() -> int:
    import shutil
    import subprocess

    from hmxnb.run import NOTEBOOKS

    if shutil.which("jupyter") is None and not _has_module("jupyterlab"):
        print("hmxnb: error: JupyterLab is not installed; run `pip install -e '.[notebook]'`", file=sys.stderr)
        return 2
    return subprocess.call([sys.executable, "-m", "jupyterlab", f"--notebook-dir={NOTEBOOKS}"])


def _has_module(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


if __name__ == "__main__":
    sys.exit(main())
