"""GPU check without the Hub: the project's own training, scoring and notebook-04 paths on random-initialised models
of the paper models' shapes, one part per process, each with its own time limit, results written as they come.

    python3 benchmarks/gpu_check.py --out DIR        # CUDA GPU: every part within --budget (540 s)
    python3 benchmarks/gpu_check.py --rehearse       # CPU: tiny shapes, plain transformers, about a minute
    python3 benchmarks/gpu_check.py --pack .gpu_pack # where PyPI is reachable: what a GPU machine without it needs

Parts, in run order (benchmarks/gpu_models.py: what each loads; benchmarks/gpu_parts.py: what it measures):
  build            Qwen3-0.6B and Qwen3-4B shapes (paper-models.md), random weights, the embedded SmolLM2 tokenizer
                   padded with `<x{i}>` to 151,936 ids; two random LoRA adapters for nb04_path. Reused when present.
  t4_fp16_0p6b     Unsloth 4-bit, 0.6B shape, precision fp16 (a T4 stand-in)
  engine_vs_plain  hmxnb.loglik's engine (prefix reuse forced on) vs its plain path, 24 TruthfulQA items
                   (judge-validation replies without data), 0.6B shape, under Unsloth (also after
                   FastLanguageModel.for_inference) and under transformers 4-bit, each in its own process
  nb04_path        hmxnb.evaluate's load_with_adapters + run_all: base + two adapters, 0.6B shape, Unsloth
  unsloth_4b       Unsloth 4-bit, 4B shape, precision auto (bf16 on Ampere and later)
  trl_4b           plain TRL + PEFT + bitsandbytes 4-bit, 4B shape, HMXNB_IMPORT_UNSLOTH=0; records whether
                   `unsloth` got into sys.modules anyway
The training parts run hmxnb's load_model / make_trainer / log_frame on `colab-t4` with 4 steps, 4 generations x 128
tokens, the contrast judge and adamw_8bit, and record s/step (steady: steps 2-4), the first step, generation (timed
around the policy's `generate`) and judge seconds per step, peak VRAM, import and load seconds, the trainer's
effective GRPO fields and the `grpo_args.json` make_trainer writes (null where it writes none).

--rehearse runs every part on CPU with tiny shapes (2 layers, hidden 64, 49,408 ids) through plain transformers
(fp32, adamw_torch, no 4-bit, no Unsloth, 16-token completions), each result marked "rehearsal": true with the
backend actually used, so the orchestration, building, padding, JSON, time limits and the engine and nb04 parts are
exercised for real.

Output (--out, default outputs/gpu_check/): <part>.json (engine runs: engine_vs_plain-<backend>.json), written by
the part's process as it goes (a part cut by its limit still reports), <part>.log, and results.json, rewritten after
every part. Models go to --models (default: the temp dir), never to --out. A summary table is printed at the end.
Keep-going semantics: every part runs even when an earlier one failed (each is isolated in its process), except
that nothing runs after a failed build; a part that would start with less than MIN_LIMIT_S of --budget left is
"skipped". Exit status 0 only when every selected part has status "ok"; "problems" (the engine raising, Unsloth in
the plain arm, non-finite numbers) are listed in results.json and printed, but do not change the exit status.
Without --rehearse and without CUDA it stops with one line. On a GPU, `.gpu_pack/` at the repository root (made by
--pack: site/ on PYTHONPATH, tokenizer/, data/) is used when present.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PACK = ROOT / ".gpu_pack"
EMBEDDED = "embedded:smollm2-135m-instruct"
# (part, runs, time limit in s on a GPU, in rehearsal); a run is one process. Order: what the 2026-11-29 H200 run
# did not measure comes first, so a run cut by --budget still answers it (the 4B arms were measured then: issue 20)
PLAN = [("build", [None], 150, 120), ("t4_fp16_0p6b", [None], 150, 120),
        ("engine_vs_plain", ["unsloth", "transformers-4bit"], 120, 90), ("nb04_path", [None], 150, 120),
        ("unsloth_4b", [None], 210, 120), ("trl_4b", [None], 180, 120)]
MIN_LIMIT_S = 20


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rehearse", action="store_true", help="CPU rehearsal: tiny shapes, plain transformers")
    ap.add_argument("--out", default=str(ROOT / "outputs" / "gpu_check"), help="folder for the JSON and logs")
    ap.add_argument("--models", help="folder for the built models (default: a folder in the temp dir, reused)")
    ap.add_argument("--parts", help="comma-separated subset of: " + ", ".join(p for p, *_ in PLAN))
    ap.add_argument("--budget", type=float, default=540, help="seconds for all parts together (default 540)")
    ap.add_argument("--data-dir", help="benchmark mirror (default: $HMXNB_DATA_DIR, else .gpu_pack/data)")
    ap.add_argument("--tokenizer", help=f"tokenizer to pad (default: .gpu_pack/tokenizer, else {EMBEDDED})")
    ap.add_argument("--site", help="unzipped wheels put on PYTHONPATH (default on a GPU: .gpu_pack/site if there)")
    ap.add_argument("--pack", metavar="DIR", help="download and trim the wheels for a GPU machine into DIR, then stop")
    ap.add_argument("--part", help=argparse.SUPPRESS)  # internal: run one part in this process
    ap.add_argument("--backend", help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    mode = "cpu" if args.rehearse else "gpu"
    args.models = args.models or str(Path(tempfile.gettempdir()) / f"hmxnb-gpu-check-{mode}")
    args.data_dir = args.data_dir or os.environ.get("HMXNB_DATA_DIR") or _existing(PACK / "data")
    args.tokenizer = args.tokenizer or _existing(PACK / "tokenizer") or EMBEDDED
    args.site = args.site or (None if args.rehearse else _existing(PACK / "site"))  # CPU: the venv's own packages
    return args


def _existing(path: Path) -> str | None:
    return str(path) if path.is_dir() else None


def child_env(part: str, run: str | None, args) -> dict:
    """The part's environment: repo + wheels on PYTHONPATH, offline, Unsloth only where the part is about it."""
    from gpu_models import uses_unsloth

    env = dict(os.environ, PYTHONUNBUFFERED="1", TOKENIZERS_PARALLELISM="false")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), str(HERE), args.site, env.get("PYTHONPATH")) if p)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("UNSLOTH_DISABLE_STATISTICS", "1")
    env["HMXNB_IMPORT_UNSLOTH"] = "1" if uses_unsloth(part, run, args.rehearse) else "0"
    if args.rehearse:
        env["CUDA_VISIBLE_DEVICES"] = ""
        # one thread: tiny shapes gain nothing from more, and on a busy 2-core machine two threads waiting for each
        # other at every small op made the whole rehearsal 286 s instead of 50 s
        env["OMP_NUM_THREADS"] = "1"
    env.pop("HMXNB_DATA_DIR", None)
    if args.data_dir:
        env["HMXNB_DATA_DIR"] = str(Path(args.data_dir).resolve())
    return env


def run_child(part: str, run: str | None, limit: float, args) -> dict:
    """One part (or one run of it) in its own process group, killed at `limit` s; its record plus status and log."""
    out = Path(args.out)
    stem = part if run is None else f"{part}-{run}"
    result, log = out / f"{stem}.json", out / f"{stem}.log"
    result.unlink(missing_ok=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--part", part, "--result", str(result),
           "--models", args.models, "--tokenizer", args.tokenizer] + (["--rehearse"] if args.rehearse else [])
    cmd += ["--backend", run] if run else []
    t0 = time.time()
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=child_env(part, run, args),
                                cwd=ROOT, start_new_session=True)
        try:
            rc, status = proc.wait(timeout=limit), None
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the part's own group: it and what it started
            rc, status = proc.wait(), "timeout"
    rec = json.loads(result.read_text()) if result.is_file() else {}
    rec.update(status=status or ("ok" if rc == 0 and rec.get("finished") else "failed"), returncode=rc,
               wall_s=time.time() - t0, time_limit_s=limit, log=log.name)
    if rec["status"] != "ok":
        tail = log.read_text(errors="replace").strip().splitlines()[-25:]
        rec.update(error=next((ln for ln in reversed(tail) if ln.strip() and not ln.startswith(" ")), "no output"),
                   log_tail=tail)
    result.write_text(json.dumps(rec, indent=1))
    return rec


def run_part(part: str, runs: list, limit: float, deadline: float, args) -> dict:
    """A part's record; for a part of several runs, {"runs": {run: record}} with the worst status."""
    records = {}
    for run in runs:
        left = min(limit, deadline - time.time())
        if left < MIN_LIMIT_S:
            records[run] = {"status": "skipped", "error": f"budget: {max(0, left):.0f} s left"}
            continue
        print(f"gpu_check: {part}{'/' + run if run else ''} (limit {left:.0f} s) ...", flush=True)
        records[run] = run_child(part, run, left, args)
        print(f"gpu_check: {part}{'/' + run if run else ''}: {records[run]['status']} in "
              f"{records[run].get('wall_s', 0):.0f} s", flush=True)
    if runs == [None]:
        return records[None]
    statuses = [r["status"] for r in records.values()]
    worst = next((s for s in ("failed", "timeout", "skipped") if s in statuses), "ok")
    combined = {"status": worst, "runs": records, "rehearsal": args.rehearse}
    (Path(args.out) / f"{part}.json").write_text(json.dumps(combined, indent=1))
    return combined


def write_results(results: dict, args) -> None:
    results["problems"] = problems(results["parts"], args.rehearse)
    results["ok"] = all(p["status"] == "ok" for p in results["parts"].values())
    path = Path(args.out) / "results.json"
    path.with_suffix(".tmp").write_text(json.dumps(results, indent=1))
    os.replace(path.with_suffix(".tmp"), path)


def _runs(part: str, rec: dict):
    """(label, record) of each process of a part."""
    if "runs" in rec:
        yield from ((f"{part}/{run}", r) for run, r in rec["runs"].items())
    else:
        yield part, rec


def _numbers(value, where: str = ""):
    """(path, number) of every number in a record, nested dicts and lists included."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _numbers(v, f"{where}.{k}" if where else k)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _numbers(v, f"{where}[{i}]")
    elif isinstance(value, float):
        yield where, value


def problems(parts: dict, rehearse: bool) -> list[str]:
    """What a reader must not miss: parts not ok, non-finite numbers, the engine raising, Unsloth in the plain arm."""
    import math

    out = []
    for part, rec in parts.items():
        for label, r in _runs(part, rec):
            if r["status"] != "ok":
                out.append(f"{label}: {r['status']}: {r.get('error', '')}")
            out += [f"{label}: {where} is {v}" for where, v in _numbers(r) if not math.isfinite(v)]
            out += [f"{label}: engine ({m}) raised {r[m]['engine_error']}" for m in ("default", "for_inference")
                    if (r.get(m) or {}).get("engine_error")]
            if part == "trl_4b" and r.get("unsloth_in_sys_modules"):
                out.append("trl_4b: unsloth was imported: this arm is not plain TRL")
            if r.get("adapters_change_outputs") is False:
                out.append(f"{label}: base and adapters gave the same outputs")
    return out


def _fmt(x, spec: str = ".2f") -> str:
    return "-" if x is None else format(x, spec)


def _notes(part: str, r: dict) -> str:
    if part == "build":
        return "reused" if r.get("reused") else f"vocab {r.get('vocab')}, {_fmt(r.get('build_s'), '.0f')} s"
    if part == "engine_vs_plain":
        modes = [(m, r[m]) for m in ("default", "for_inference") if r.get(m)]
        return "; ".join(f"{m}: " + (f"ERROR {e['engine_error'][:40]}" if e.get("engine_error") else
                         f"max|d| {e['max_abs_diff']:.3f} mean {e['mean_abs_diff']:.3f} nats, engine "
                         f"{e['engine_s']:.2f} s vs plain {e['plain_s']:.2f} s") for m, e in modes)
    if part == "nb04_path":
        return f"{r.get('records')} records, run_all {_fmt(r.get('run_all_s'), '.0f')} s"
    grpo = "grpo_args.json " + ("yes" if r.get("grpo_args") else "null")
    return f"import {_fmt(r.get('import_s'), '.0f')} s, load {_fmt(r.get('load_s'), '.0f')} s, {grpo}"


def print_summary(results: dict) -> None:
    """One line per process: status, backend, s/step, first step, generation / judge s, peak VRAM, key numbers."""
    mode = "REHEARSAL on CPU (tiny shapes)" if results["rehearsal"] else "GPU"
    print(f"\ngpu_check summary ({mode}, {results.get('wall_s', 0):.0f} s):")
    print(f"{'part':34s} {'status':8s} {'backend':18s} {'s/step':>7s} {'1st s':>6s} {'gen s':>6s} {'judge s':>7s} "
          f"{'VRAM GiB':>11s}  notes")
    for part, rec in results["parts"].items():
        for label, r in _runs(part, rec):
            vram = (f"{_fmt(r.get('peak_vram_allocated_gib'))}/{_fmt(r.get('peak_vram_reserved_gib'))}"
                    if r.get("peak_vram_allocated_gib") is not None else "-")
            notes = _notes(part, r) if r["status"] == "ok" else r.get("error", "")[:70]
            print(f"{label:34s} {r['status']:8s} {str(r.get('backend', '-')):18s} {_fmt(r.get('s_per_step')):>7s} "
                  f"{_fmt(r.get('first_step_s'), '.1f'):>6s} {_fmt(r.get('generation_s_per_step')):>6s} "
                  f"{_fmt(r.get('judge_s_per_step')):>7s} {vram:>11s}  {notes}")
    for line in results["problems"]:
        print("PROBLEM:", line)
    print(f"results: {Path(results.get('out', '.')) / 'results.json'}")


def orchestrate(args) -> int:
    """Every selected part in order, within --budget; results.json after each. Returns the exit status."""
    wanted = args.parts.split(",") if args.parts else [p for p, *_ in PLAN]
    unknown = set(wanted) - {p for p, *_ in PLAN}
    if unknown:
        sys.exit(f"gpu_check: unknown part(s) {sorted(unknown)}; known: {', '.join(p for p, *_ in PLAN)}")
    if "build" not in wanted and not (Path(args.models) / "build.json").is_file():
        wanted.insert(0, "build")  # the other parts need the models
    Path(args.out).mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    results = {"rehearsal": args.rehearse, "started": time.strftime("%Y-%m-%d %H:%M:%S"), "budget_s": args.budget,
               "out": str(Path(args.out).resolve()), "models_dir": args.models, "data_dir": args.data_dir,
               "tokenizer": args.tokenizer, "site": args.site,
               "parts": {}}
    for part, runs, gpu_limit, cpu_limit in PLAN:
        if part not in wanted:
            continue
        if results["parts"].get("build", {}).get("status", "ok") != "ok":
            results["parts"][part] = {"status": "skipped", "error": "build failed"}
        else:
            limit = cpu_limit if args.rehearse else gpu_limit
            results["parts"][part] = run_part(part, runs, limit, t0 + args.budget, args)
        results["wall_s"] = time.time() - t0
        write_results(results, args)
    print_summary(results)
    return 0 if results["ok"] else 1


def main(argv=None) -> int:
    args = parse_args(argv)
    sys.path[:0] = [str(ROOT), str(HERE)] + ([args.site] if args.site else [])
    if args.part:
        from gpu_parts import main_part

        main_part(args)
        return 0
    if args.pack:
        from gpu_pack import pack

        return pack(Path(args.pack), args.data_dir)
    if not args.rehearse:
        import torch

        if not torch.cuda.is_available():
            sys.exit("gpu_check: no CUDA GPU here; `--rehearse` runs the same parts on CPU with tiny shapes")
    return orchestrate(args)


if __name__ == "__main__":
    sys.exit(main())
