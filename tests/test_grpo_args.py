"""hmxnb.train: the trainer optimises what params say on every backend, and grpo_args.json records it."""

import dataclasses
import json

import pytest
import trl

from hmxnb.train import GRPO_ARGS_FILE, GRPOArgsMismatch, changed_by
from hmxnb.params import load_params
from hmxnb.train import make_trainer


def _params(model_dir, **over):
    base = {"model_name_or_path": model_dir, "max_steps": 2, "max_completion_length": 6, "n_train_prompts": 8}
    return load_params("smoke", {**base, **over})


class UnslothLikeGRPOConfig(trl.GRPOConfig):
    """What unsloth 2026.10.9's patched GRPOConfig does to fields left unset (models/rl.py): weight_decay 0.001 and,
    with an explicit loss_type 'dapo', mask_truncated_completions=True and epsilon_high=0.28."""

    def __init__(self, *args, weight_decay=0.001, mask_truncated_completions=None, epsilon_high=None, **kw):
        if kw.get("loss_type") == "dapo":
            mask_truncated_completions = True if mask_truncated_completions is None else mask_truncated_completions
            epsilon_high = 0.28 if epsilon_high is None else epsilon_high
        super().__init__(*args, weight_decay=weight_decay, mask_truncated_completions=bool(mask_truncated_completions),
                         epsilon_high=epsilon_high, **kw)


def test_the_unsloth_like_config_really_changes_unset_fields(tmp_path):
    """The stand-in is only a fair test if it would change a run that left the keys unset (the code before)."""
    cfg = UnslothLikeGRPOConfig(output_dir=str(tmp_path), loss_type="dapo", use_cpu=True, bf16=False)
    assert (cfg.mask_truncated_completions, cfg.epsilon_high, cfg.weight_decay) == (True, 0.28, 0.001)


def test_grpo_args_are_the_same_on_cpu_and_under_an_unsloth_like_config(tiny_model_dir, tmp_path, monkeypatch):
    p = _params(tiny_model_dir)
    make_trainer(p, tmp_path / "cpu")
    monkeypatch.setattr(trl, "GRPOConfig", UnslothLikeGRPOConfig)
    make_trainer(p, tmp_path / "unsloth")
    cpu, unsloth = (json.loads((tmp_path / d / GRPO_ARGS_FILE).read_text()) for d in ("cpu", "unsloth"))
    assert unsloth["config_class"].endswith("UnslothLikeGRPOConfig") and cpu["config_class"].startswith("trl.")
    assert cpu["objective"] == unsloth["objective"] and cpu["objective_hash"] == unsloth["objective_hash"]
    got = cpu["objective"]
    assert (got["mask_truncated_completions"], got["epsilon_high"], got["weight_decay"]) == (
        p["mask_truncated_completions"], p["epsilon_high"], p["weight_decay"])
    assert got["resolved"]["epsilon_high"] == p["epsilon_high"] and got["loss_type"] == p["loss_type"]


def test_a_config_that_changes_a_params_field_stops_the_run_naming_it(tiny_model_dir, tmp_path, monkeypatch):
    class Patched(trl.GRPOConfig):
        def __post_init__(self):
            super().__post_init__()
            self.mask_truncated_completions = True  # what Unsloth does behind an explicit loss_type "dapo"

    monkeypatch.setattr(trl, "GRPOConfig", Patched)
    with pytest.raises(GRPOArgsMismatch, match=r"'mask_truncated_completions' is True .* params say False: changed by "
                                               r"the config class .*Patched"):
        make_trainer(_params(tiny_model_dir), tmp_path)
    record = json.loads((tmp_path / GRPO_ARGS_FILE).read_text())  # written before the check: what it would have run
    assert record["objective"]["mask_truncated_completions"] is True


def test_the_hash_goes_into_the_steps_provenance(tiny_model_dir, tmp_path):
    from hmxnb.artifacts import write_provenance

    p = _params(tiny_model_dir)
    write_provenance(tmp_path, p)
    make_trainer(p, tmp_path)
    prov = json.loads((tmp_path / "provenance.json").read_text())
    record = json.loads((tmp_path / GRPO_ARGS_FILE).read_text())
    assert prov["grpo_args"]["objective_hash"] == record["objective_hash"]
    assert prov["params"] == json.loads(json.dumps(p))
    assert {"unsloth_zoo", "bitsandbytes"} <= set(prov["versions"])


def test_every_field_unsloth_fills_in_is_a_params_key():
    """The GRPOConfig fields unsloth 2026.10.9 sets when left unset and that change the objective are params keys
    passed on every backend (its other replacements are keys already, logging, or act only with vLLM / MoE models)."""
    from hmxnb.params import keys_feeding

    grpo = set(keys_feeding("grpo"))
    assert {"mask_truncated_completions", "epsilon_high", "weight_decay", "loss_type", "beta", "optim", "seed",
            "learning_rate", "num_generations", "per_device_train_batch_size", "gradient_accumulation_steps",
            "warmup_steps", "top_k"} <= grpo
    assert grpo <= {f.name for f in dataclasses.fields(trl.GRPOConfig)}


@pytest.mark.parametrize("module, expected", [("trl.trainer.grpo_config", "TRL's"),
                                              ("unsloth_compiled_cache.UnslothGRPOTrainer", "Unsloth's patched")])
def test_changed_by_names_who_made_the_config(module, expected):
    cls = type("GRPOConfig", (), {"__module__": module})
    assert changed_by(cls()).startswith(expected)


def test_an_unknown_optimizer_is_refused_before_anything_runs(tmp_path, monkeypatch):
    """Issue 32: `--set optim=foo` failed inside training, minutes in; the runner now checks it against
    transformers' OptimizerNames when it validates the profile."""
    from hmxnb.runner import run
    from hmxnb.train import check_optim
    from hmxnb.params import ParamsError
    from hmxnb.runner.run import run_profile

    monkeypatch.setattr(run, "_run_sweep", lambda *a: pytest.fail("the runner started the steps"))  # never trains

    with pytest.raises(ParamsError) as err:
        check_optim("adamw_torc")
    assert str(err.value).startswith("params key 'optim' is 'adamw_torc', not an optimizer of transformers")
    assert "adamw_torch" in str(err.value) and "\n" not in str(err.value)
    check_optim("adamw_8bit")  # the GPU profiles' choice
    with pytest.raises(ParamsError, match="params key 'optim' is 'foo'"):
        run_profile("smoke", {"optim": "foo"}, output_root=tmp_path / "out", progress=False, log=lambda line: None)
    assert not (tmp_path / "out").exists()
