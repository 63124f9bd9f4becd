"""benchmarks/gpu_check.py without a GPU: the tokenizer padding, the paper shapes, a part's time limit, the one-line
stop without CUDA, and the whole `--rehearse` run (tiny shapes, plain transformers on CPU) with its JSON."""

import argparse
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"
sys.path.insert(0, str(ROOT / "benchmarks"))

import gpu_check  # noqa: E402
import gpu_models  # noqa: E402


def _numbers(value, where=""):
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _numbers(v, f"{where}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _numbers(v, f"{where}[{i}]")
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        yield where, value


def test_padded_tokenizer_decodes_every_id(tiny_model_dir):
    """Placeholders fill the vocabulary up to the model's size; each id decodes and its text re-encodes to it."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    n_real = len(tok)
    gpu_models.pad_tokenizer(tok, n_real + 300)
    assert len(tok) == n_real + 300
    assert all(t is not None for t in tok.convert_ids_to_tokens(list(range(len(tok)))))
    assert all(tok.decode([i]) for i in range(3, len(tok)))  # 0-2 are the specials
    for i in (n_real, n_real + 150, len(tok) - 1):
        assert tok.decode([i]) == f"<x{i}>"
        assert tok.encode(f"hi <x{i}>", add_special_tokens=False)[-1] == i
    with pytest.raises(ValueError, match="more than the model"):
        gpu_models.pad_tokenizer(tok, 10)


def test_shapes_are_the_paper_models():
    """The two configs give Qwen3-0.6B's and Qwen3-4B's parameter counts (0.596 B and 4.02 B, tied embeddings)."""
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    counts = {}
    for name, fields in gpu_models.SHAPES.items():
        with torch.device("meta"):
            model = Qwen3ForCausalLM(Qwen3Config(vocab_size=gpu_models.PAPER_VOCAB, **fields))
        counts[name] = sum(p.numel() for p in model.parameters())
    assert counts == {"qwen3-0.6b": 596_049_920, "qwen3-4b": 4_022_468_096}


def test_a_part_past_its_limit_is_killed_and_reported(tmp_path):
    """A part over its time limit is killed (its process group) and recorded as timeout with its log."""
    args = argparse.Namespace(out=str(tmp_path), models=str(tmp_path / "models"), tokenizer="x", rehearse=True,
                              site=None, data_dir=None)
    rec = gpu_check.run_child("build", None, 0.5, args)
    assert rec["status"] == "timeout" and rec["time_limit_s"] == 0.5 and rec["wall_s"] < 30
    assert json.loads((tmp_path / "build.json").read_text())["status"] == "timeout"
    assert (tmp_path / "build.log").is_file()


def test_rehearsal_parts_run_on_one_thread_without_cuda(tmp_path):
    """Rehearsal children get one thread (two threads waiting on each other at every tiny op made a rehearsal on a
    busy 2-core machine 286 s instead of 50 s); a GPU run keeps the machine's own setting."""
    args = gpu_check.parse_args(["--rehearse", "--out", str(tmp_path)])
    env = gpu_check.child_env("trl_4b", None, args)
    assert env["OMP_NUM_THREADS"] == "1" and env["CUDA_VISIBLE_DEVICES"] == ""
    assert env["HMXNB_IMPORT_UNSLOTH"] == "0"
    gpu_env = gpu_check.child_env("trl_4b", None, gpu_check.parse_args(["--out", str(tmp_path)]))
    for name in ("OMP_NUM_THREADS", "CUDA_VISIBLE_DEVICES"):
        assert gpu_env.get(name) == os.environ.get(name)


def test_without_cuda_it_stops_with_one_line(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is here")
    out = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path)], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 1
    assert out.stderr.strip().splitlines() == ["gpu_check: no CUDA GPU here; `--rehearse` runs the same parts on CPU "
                                               "with tiny shapes"]


@pytest.mark.slow
def test_rehearsal_runs_every_part(tmp_path):
    """`--rehearse` on CPU: every part ok, marked rehearsal, numbers finite, the plain arm without Unsloth."""
    out = tmp_path / "out"
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    proc = subprocess.run([sys.executable, str(SCRIPT), "--rehearse", "--out", str(out), "--models",
                           str(tmp_path / "models")], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    res = json.loads((out / "results.json").read_text())
    parts = res["parts"]
    assert list(parts) == [p for p, *_ in gpu_check.PLAN] and res["ok"] and res["problems"] == []
    bad = [(w, v) for w, v in _numbers(res) if not math.isfinite(v)]
    assert not bad
    runs = [r for p in parts.values() for r in (p["runs"].values() if "runs" in p else [p])]
    assert all(r["status"] == "ok" and r["rehearsal"] for r in runs)
    assert all(r["backend"] == "transformers-cpu" for r in runs if "backend" in r)
    assert parts["build"]["vocab"] == gpu_models.REHEARSE_VOCAB and parts["build"]["undecodable_ids"] == 0
    for name in ("t4_fp16_0p6b", "unsloth_4b", "trl_4b"):
        r = parts[name]
        assert r["steps"] == 4 and r["s_per_step"] > 0 and len(r["judge_s"]) == 4
        assert r["effective_args"]["max_completion_length"] == gpu_models.REHEARSE_COMPLETION  # params reach TRL
    trl = parts["trl_4b"]
    assert trl["unsloth_in_sys_modules"] is False and trl["hmxnb_import_unsloth"] == "0"
    for run in parts["engine_vs_plain"]["runs"].values():
        assert run["requests"] > 0 and run["default"]["engine_error"] is None
        assert run["default"]["max_abs_diff"] < 1e-3
    assert parts["nb04_path"]["labels"] == ["base", "human", "reverse"]
    assert parts["nb04_path"]["adapters_change_outputs"] is True
    assert all((out / f"{p}.json").is_file() for p in parts)
