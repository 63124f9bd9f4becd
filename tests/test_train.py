"""hmxnb.train: GRPOConfig from params, a 2-step GRPO run on a tiny model, resume after a kill."""

import json
import shutil
from dataclasses import replace

import pandas as pd
import pytest
from transformers import TrainerCallback

from hmxnb.params import load_params
from hmxnb.train import (CHECK_REPLIES, build_grpo_config, build_lora_config, grpo_kwargs, last_checkpoint,
                         make_trainer, train)


def _params(model_dir, **over):
    base = {"model_name_or_path": model_dir, "max_steps": 2, "save_steps": 1, "sample_every": 1,
            "max_completion_length": 6, "n_train_prompts": 8, "judge_batch_size": 16}
    return load_params("smoke", {**base, **over})


def test_grpo_config_from_params_on_cpu(tmp_path):
    p = load_params("smoke", {"beta": 0.04, "loss_type": "dr_grpo"})
    cfg = build_grpo_config(p, tmp_path, on_cpu=True)
    assert cfg.use_cpu and not cfg.bf16 and not cfg.fp16  # TRL's bf16 default is ~6x slower on CPU
    assert (cfg.learning_rate, cfg.num_generations, cfg.max_steps, cfg.beta, cfg.loss_type) == (
        p["learning_rate"], p["num_generations"], p["max_steps"], 0.04, "dr_grpo")
    assert cfg.reward_weights == [p["reward_weight_judge"], p["reward_weight_format"]]
    assert grpo_kwargs(p, tmp_path, on_cpu=True)["report_to"] == "none"  # what we pass: no logging integration
    assert cfg.report_to == []  # what transformers makes of "none"


def test_grpo_kwargs_on_gpu_pick_precision(tmp_path):
    p = load_params("smoke")
    t4 = grpo_kwargs(p, tmp_path, on_cpu=False, precision="fp16")  # hmxnb.models.precision_for on a T4
    assert t4["fp16"] and not t4["bf16"] and "use_cpu" not in t4
    rtx = grpo_kwargs(p, tmp_path, on_cpu=False, precision="bf16")
    assert rtx["bf16"] and not rtx["fp16"]


def test_lora_config_from_params():
    cfg = build_lora_config(load_params("smoke", {"r": 4, "target_modules": ["q_proj"]}))
    assert cfg.r == 4 and set(cfg.target_modules) == {"q_proj"} and cfg.task_type == "CAUSAL_LM"


RUBRIC_CRITERIA = {"feelings", "intentions", "self_awareness", "coherence"}


@pytest.mark.parametrize("direction,mode,criteria", [
    ("human", "contrast", {"expression"}), ("reverse", "contrast", {"expression"}),
    ("human", "request", {"expression"}), ("human", "probability", RUBRIC_CRITERIA),
])
def test_two_step_grpo_writes_artefacts(tiny_model_dir, tmp_path, direction, mode, criteria):
    out = tmp_path / direction
    m = train(_params(tiny_model_dir, direction=direction, judge_mode=mode), out)
    assert m["steps"] == 2 and m["direction"] == direction and m["resumed_from"] is None
    log = pd.read_csv(out / "train_log.csv")
    for col in ("reward", "reward_std", "rewards/self_judge/mean", "frac_reward_zero_std", "grad_norm",
                "completions/mean_length", "watch/empty_share", "watch/repetitive_share", "watch/truncated_share",
                # the diagnostics that tell "no signal" from "too small a step"
                "signal/within_group_std", "signal/between_group_std", "signal/zero_std_groups",
                "drift/adapter_norm", "drift/mean_abs_logprob_change", *[f"judge/{c}" for c in criteria]):
        assert col in log, col
    assert log["drift/adapter_norm"].iloc[-1] > 0  # the adapters moved (B starts at zero)
    assert (log["signal/within_group_std"] >= 0).all() and log["signal/zero_std_groups"].between(0, 1).all()
    assert list(log["step"]) == [1, 2]
    assert (out / "adapter" / "adapter_config.json").is_file()
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert {s["step"] for s in samples} == {0, 1} and all(set(s["scores"]) == criteria for s in samples)
    assert all(s["direction"] == direction for s in samples)


def test_saved_adapter_is_the_trained_one(tiny_model_dir, tmp_path):
    """The adapter train() writes, loaded as the benchmarks load it, holds the weights of the last step: its weight
    change is the one logged at that step (an adapter saved before training, B = 0, would have none)."""
    from hmxnb.evaluate import load_with_adapters
    from hmxnb.health import adapter_delta_norm

    p = _params(tiny_model_dir, max_steps=1)
    train(p, tmp_path)
    logged = pd.read_csv(tmp_path / "train_log.csv")["drift/adapter_norm"].iloc[-1]
    model, _ = load_with_adapters(p, {"human": tmp_path / "adapter"})
    assert logged > 0 and adapter_delta_norm(model) == pytest.approx(logged, rel=1e-4)


class Killed(Exception):
    pass


class KillAfterSave(TrainerCallback):
    """Simulates a run killed right after its checkpoint at `step` was written."""

    def __init__(self, step):
        self.step = step

    def on_save(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise Killed()


def test_killed_and_resumed_matches_uninterrupted(tiny_model_dir, tmp_path):
    p = _params(tiny_model_dir, max_steps=4, save_steps=2, beta=0.0)
    full = train(p, tmp_path / "full")
    with pytest.raises(Killed):
        train(p, tmp_path / "resumed", callbacks=[KillAfterSave(2)])
    assert last_checkpoint(tmp_path / "resumed" / "checkpoints").endswith("checkpoint-2")
    killed = [json.loads(line)["step"] for line in (tmp_path / "resumed" / "samples.jsonl").read_text().splitlines()]
    assert sorted(set(killed)) == [0, 1]  # what was judged before the kill is already on disk
    ckpts = tmp_path / "resumed" / "checkpoints"
    shutil.copytree(ckpts / "checkpoint-2", ckpts / "checkpoint-3")  # a later save cut short by a kill:
    (ckpts / "checkpoint-3" / "trainer_state.json").unlink()  # no trainer state, optimizer.pt truncated
    optimizer = (ckpts / "checkpoint-3" / "optimizer.pt").read_bytes()
    (ckpts / "checkpoint-3" / "optimizer.pt").write_bytes(optimizer[: len(optimizer) // 2])
    resumed = train(p, tmp_path / "resumed")  # was: FileNotFoundError .../checkpoint-3/trainer_state.json, forever
    assert resumed["resumed_from"].endswith("checkpoint-2")
    assert [q.name.rsplit("-", 2)[0] for q in ckpts.glob("incomplete-*")] == ["incomplete-checkpoint-3"]  # kept
    a = pd.read_csv(tmp_path / "full" / "train_log.csv")
    b = pd.read_csv(tmp_path / "resumed" / "train_log.csv")
    assert list(b["step"]) == [1, 2, 3, 4]  # the log history before the kill is kept
    for col in ("reward", "rewards/self_judge/mean", "loss"):
        assert a[col].tolist() == pytest.approx(b[col].tolist(), abs=1e-5), col
    assert resumed["final_reward"] == pytest.approx(full["final_reward"], abs=1e-6)
    steps = [json.loads(line)["step"] for line in (tmp_path / "resumed" / "samples.jsonl").read_text().splitlines()]
    assert sorted(set(steps)) == [0, 1, 2, 3] and len(steps) == len(set(steps)) * 4  # no duplicates after resume


def test_a_run_stopped_after_its_last_checkpoint_is_loaded_not_trained_one_step_more(tiny_model_dir, tmp_path):
    # transformers' Trainer resumed from checkpoint-<max_steps> trains one more step (measured: log steps 1, 2, 3):
    # run_trainer loads such a finished run instead, and keeps its metrics when they record the same objective
    p = _params(tiny_model_dir)
    first = train(p, tmp_path)
    metrics_file, log_file = tmp_path / "metrics.json", tmp_path / "train_log.csv"
    log = log_file.read_text()
    assert train(p, tmp_path) == first and log_file.read_text() == log  # finished: nothing trained, nothing rewritten
    metrics_file.unlink()  # stopped between the last checkpoint and metrics.json: written from the checkpoint
    again = train(p, tmp_path)
    assert list(pd.read_csv(log_file)["step"]) == [1, 2] and again["steps"] == 2
    assert again["resumed_from"].endswith("checkpoint-2") and again["train_seconds"] == 0
    assert again["final_reward"] == first["final_reward"] and again["grpo_args_hash"] == first["grpo_args_hash"]
    assert sorted(q.name for q in (tmp_path / "checkpoints").glob("checkpoint-*")) == ["checkpoint-1", "checkpoint-2"]


def test_same_seed_same_run(tiny_model_dir, tmp_path):
    # GRPOTrainer attaches LoRA before Trainer seeds the RNG: the adapters' init differed between two runs of one seed
    # (equal step-1 loss, different grad norm). Same process, same thread count: every logged number must agree.
    p = _params(tiny_model_dir, save_steps=10)
    logs = []
    for name in ("a", "b"):
        train(p, tmp_path / name)
        logs.append(pd.read_csv(tmp_path / name / "train_log.csv"))
    cols = [c for c in logs[0] if c.startswith(("loss", "grad_norm", "reward", "drift/"))]
    assert {"loss", "grad_norm", "reward"} <= set(cols)
    pd.testing.assert_frame_equal(logs[0][cols], logs[1][cols])


def test_under_unsloth_the_judge_uses_the_engine_only_if_it_matched_the_plain_path_at_start(tiny_model_dir, tmp_path):
    """prefix_cache_reuse auto on the Unsloth backend: a check at start decides and grpo_args.json records it."""
    from peft import get_peft_model

    from hmxnb.models import load_model

    p = _params(tiny_model_dir)
    loaded = load_model(p)
    peft = get_peft_model(loaded.model, build_lora_config(p))  # Unsloth's get_peft_model runs at load time
    # what load_model decides under Unsloth before any check: no prefix reuse
    trainer, state = make_trainer(p, tmp_path, replace(loaded, model=peft, backend="unsloth", prefix_reuse=False))
    scoring = json.loads((tmp_path / "grpo_args.json").read_text())["judge_scoring"]
    assert scoring["decided_by"] == "engine vs plain path at start" and scoring["n"] == 3 * len(CHECK_REPLIES)
    assert scoring["engine"] is True and scoring["max_abs_diff"] < 1e-3  # the tiny model's cached path is right
    assert state.reuse is True  # the judge scores on the engine the check allowed


def test_the_format_guard_in_the_trainer_takes_the_truncation_penalty_from_params(tiny_model_dir, tmp_path):
    from hmxnb.models import load_model

    p = {**_params(tiny_model_dir), "format_truncation_penalty": 0.0}
    trainer, state = make_trainer(p, tmp_path, load_model(p))
    guard = next(f for f in trainer.reward_funcs if getattr(f, "__name__", "") == "format_guard")
    cut = [[{"role": "assistant", "content": "one two three"}]]
    assert guard(completions=cut, completion_ids=[[1] * p["max_completion_length"]]) == [0.0]
    assert state.guard == {"truncation": 0.0, "repeat": 0.0, "formula": 0.0, "min_words": 0}
    assert state.config.distinct_sentences is False


def test_the_relevance_reward_joins_the_trainer_only_with_a_weight(tiny_model_dir, tmp_path):
    """reward_weight_relevance > 0: a third reward function, named relevance, with its weight in GRPOConfig; it
    returns the judge's relevance of the text the self-judge reads (empty replies: their group's mean)."""
    from hmxnb.models import load_model

    p = {**_params(tiny_model_dir), "reward_weight_relevance": 0.5, "judge_distinct_sentences": True}
    trainer, state = make_trainer(p, tmp_path / "on", load_model(p))
    assert [f.__name__ for f in trainer.reward_funcs] == ["self_judge", "format_guard", "relevance"]
    assert trainer.reward_weights.tolist() == [1.0, 1.0, 0.5]
    relevance = trainer.reward_funcs[2]
    prompts = [[{"role": "user", "content": "How are you?"}]] * 3
    texts = ["I feel glad. I feel glad.", "I feel glad.", ""]
    logged = {}
    got = relevance(prompts=prompts, completions=[[{"role": "assistant", "content": t}] for t in texts],
                    log_metric=logged.__setitem__)
    assert logged["relevance/seconds"] > 0 and state.seconds == logged["relevance/seconds"]  # in judge_seconds
    assert set(logged) == {"relevance/seconds", "relevance/contrast_nats"}
    direct = state.relevance(["How are you?"] * 2, ["I feel glad.", "I feel glad."]).scores[:, 0]
    assert got[0] == pytest.approx(got[1]) == pytest.approx(direct[0], abs=1e-6)  # distinct sentences read
    assert got[2] == pytest.approx((got[0] + got[1]) / 2)  # the empty reply: its group's mean
    off, _ = make_trainer({**p, "reward_weight_relevance": 0.0}, tmp_path / "off", load_model(p))
    assert [f.__name__ for f in off.reward_funcs] == ["self_judge", "format_guard"]
    assert off.reward_weights.tolist() == [1.0, 1.0]


def test_a_failing_engine_check_keeps_the_judge_on_the_plain_path(tiny_model_dir, monkeypatch):
    from transformers import AutoTokenizer

    from hmxnb import train as train_mod
    from hmxnb.chat import ChatSettings
    from hmxnb.models import LoadedModel

    monkeypatch.setattr(train_mod, "check_prefix_reuse", lambda *a, **k: {"decision": False, "max_abs_diff": 29.7})
    p = _params(tiny_model_dir)
    rows = [{"prompt": "How are you?"}]
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    unsloth = LoadedModel(object(), tok, "unsloth", "bf16", prefix_reuse=True, chat=ChatSettings())
    out = train_mod.judge_scoring_path(p, unsloth, rows)
    assert out["engine"] is False and out["decided_by"] == "engine vs plain path at start"
    cpu = train_mod.judge_scoring_path(p, replace(unsloth, backend="transformers-cpu"), rows)
    assert cpu == {"engine": True, "decided_by": "prefix_cache_reuse: auto"}  # load_model's decision stands
    off = train_mod.judge_scoring_path({**p, "prefix_cache_reuse": "off"}, replace(unsloth, prefix_reuse=False), rows)
    assert off == {"engine": False, "decided_by": "prefix_cache_reuse: off"}


def test_a_lora_module_the_model_lacks_stops_before_the_trainer(tiny_model_dir, tmp_path):
    """Issue 32: make_trainer on a model loaded elsewhere checks target_modules before TRL attaches LoRA (PEFT would
    train q_proj alone, silently, with `nonexistent_proj` beside it)."""
    from hmxnb.models import load_model
    from hmxnb.params import ParamsError

    p = _params(tiny_model_dir, target_modules=["q_proj", "nonexistent_proj"])
    with pytest.raises(ParamsError, match=r"'target_modules' names modules this model does not have: "
                                          r"\['nonexistent_proj'\]"):
        make_trainer(p, tmp_path, load_model(p))
    assert not (tmp_path / "grpo_args.json").exists()


def test_checkpoint_problem_names_what_an_interrupted_save_left_out(tmp_path):
    """A checkpoint is complete when the trainer's state, the weights and the optimizer are there and open."""
    import torch
    from safetensors.torch import save_file

    from hmxnb.train import checkpoint_problem

    ck = tmp_path / "checkpoint-5"
    ck.mkdir()
    assert checkpoint_problem(ck) == "trainer_state.json is missing"
    (ck / "trainer_state.json").write_text('{"global_step": 5')
    assert checkpoint_problem(ck) == "trainer_state.json is cut short"
    (ck / "trainer_state.json").write_text('{"global_step": 5}')
    assert checkpoint_problem(ck).startswith("no model weights")
    save_file({"w": torch.zeros(64)}, ck / "adapter_model.safetensors")
    weights = (ck / "adapter_model.safetensors").read_bytes()
    (ck / "adapter_model.safetensors").write_bytes(weights[:20])
    assert checkpoint_problem(ck) == "adapter_model.safetensors is cut short"
    (ck / "adapter_model.safetensors").write_bytes(weights)
    assert checkpoint_problem(ck) == "optimizer.pt is missing"
    torch.save({"state": {}}, ck / "optimizer.pt")
    torch.save({"rng": 1}, ck / "rng_state.pth")
    assert checkpoint_problem(ck) == ""
    (ck / "rng_state.pth").write_bytes((ck / "rng_state.pth").read_bytes()[:-30])
    assert checkpoint_problem(ck) == "rng_state.pth is cut short"
    logs = []
    assert last_checkpoint(tmp_path, log=logs.append) is None and not ck.exists()
    assert logs and "not resuming from checkpoint-5: rng_state.pth is cut short" in logs[0]
