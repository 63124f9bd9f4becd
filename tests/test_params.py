"""hmxnb.params: every bad input gives one line naming the culprit; good profiles resolve."""

import re
import subprocess
import sys

import pytest

from hmxnb.params import SCHEMA, ParamsError, available_profiles, load_params, params_hash, parse_override


@pytest.mark.parametrize("profile", ["smoke", "workshop", "demo", "colab-t4", "paper"])
def test_shipped_profiles_validate(profile):
    assert profile in available_profiles()
    p = load_params(profile)
    assert p["profile"] == profile
    assert set(SCHEMA) <= set(p)


@pytest.mark.parametrize(
    "overrides, culprit",
    [
        ({"max_step": 3}, "max_step"),                              # unknown key (typo)
        ({"max_steps": "ten"}, "max_steps"),                         # wrong type
        ({"max_steps": 2.5}, "max_steps"),                           # float for int
        ({"bf16": True}, "bf16"),                                    # a GRPOConfig field we do not expose
        ({"learning_rate": True}, "learning_rate"),                  # bool is not a number
        ({"target_modules": "q_proj"}, "target_modules"),            # str for list[str]
        ({"judge_mode": "vibes"}, "judge_mode"),                     # not one of the choices
        ({"reverse_mode": "flip"}, "reverse_mode"),                  # not one of the choices
        ({"prompts_file": "/no/such/prompts.jsonl"}, "prompts_file"),  # missing file
        ({"data_dir": "/no/such/dir"}, "data_dir"),                  # missing folder
        ({"rubric_weights": {"feelings": 1.0}}, "rubric_weights"),   # weights do not match criteria
        ({"rubric_guards": ["humour"]}, "rubric_guards"),            # guard not a criterion
        ({"rubric_scale_max": 12}, "rubric_scale_max"),              # scores must be single digits
        ({"num_generations": 1}, "num_generations"),                 # GRPO needs a group
        ({"num_generations": 3}, "per_device_train_batch_size"),     # batch not a multiple of the group
        ({"rubric_criteria": {"feelings": 3}}, "rubric_criteria"),   # description must be text
        ({"max_steps": 0}, "in [1, 1000000], got 0"),                # one useless step reported "ok"
        ({"max_steps": -1}, "max_steps"),                            # TRL: -1 means "use num_train_epochs"
        ({"bench_limit": -4}, "bench_limit"),                        # failed late, in step 04
        ({"judge_batch_size": 0}, "judge_batch_size"),               # no judge prompts per pass
        ({"learning_rate": float("nan")}, "learning_rate"),          # NaN passes every comparison
        ({"learning_rate": ".nan"}, "learning_rate"),                # YAML's NaN spelling, from --set
        ({"temperature": 0.0}, "temperature"),                       # open bound: sampling divides by it
        ({"seeds": [0, -1]}, "seeds"),                               # each list item is checked
        ({"rubric_weights": {"feelings": float("inf"), "intentions": 1.0, "self_awareness": 1.0, "coherence": 1.0}},
         "rubric_weights"),                                          # non-finite dict value
    ],
)
def test_bad_params_name_the_culprit(overrides, culprit):
    with pytest.raises(ParamsError) as exc:
        load_params("smoke", overrides)
    msg = str(exc.value)
    assert culprit in msg
    assert "\n" not in msg


@pytest.mark.parametrize("key, value", [
    ("max_steps", 10**12), ("num_generations", 4096), ("max_completion_length", 10**7), ("eval_max_new_tokens", 10**7),
    ("judge_max_new_tokens", 10**7), ("bench_limit", 10**9), ("per_device_train_batch_size", 10**6),
    ("gradient_accumulation_steps", 10**6), ("max_seq_length", 10**8), ("r", 10**5), ("num_processes", 10**4),
    ("save_steps", 10**9), ("bootstrap_resamples", 10**9), ("slurm_time_min", 10**7),
])
def test_absurd_values_stop_at_validation(key, value):
    """A value no machine can use stops before any work starts (max_steps=10^12 used to start training)."""
    with pytest.raises(ParamsError, match=rf"'{key}' in overrides must be in \[\d+, \d+\], got {value}$"):
        load_params("smoke", {key: value})


def test_every_int_count_has_a_finite_upper_bound():
    """Counts of steps, tokens, items and processes all have an upper bound in the schema (no "inf)")."""
    for key, spec in SCHEMA.items():
        if spec.type.split("[")[-1].rstrip("]?") == "int" and spec.bounds:
            assert not spec.bounds.endswith("inf)"), key


def test_bounds_are_intervals_holding_the_defaults():
    from hmxnb.params import _in_bounds

    for key, spec in SCHEMA.items():
        if spec.bounds:
            assert re.fullmatch(r"[\[(]-?[\d.e+-]+, (-?[\d.e+-]+|inf)[\])]", spec.bounds), key
            assert spec.type.split("[")[-1].rstrip("]?") in ("int", "float"), key
            defaults = spec.default if isinstance(spec.default, list) else [spec.default]
            assert all(_in_bounds(v, spec.bounds) for v in defaults), key


def test_unknown_profile_lists_available():
    with pytest.raises(ParamsError, match=r"unknown profile 'nope'.*smoke"):
        load_params("nope")


def test_bad_profile_file(tmp_path):
    f = tmp_path / "broken.yaml"
    f.write_text("max_steps: [1,\n")
    with pytest.raises(ParamsError, match="broken.yaml:2:1 "):  # file, line and column
        load_params(str(f))
    f.write_text("- a\n- b\n")
    with pytest.raises(ParamsError, match="mapping"):
        load_params(str(f))


@pytest.mark.parametrize(
    "content, where, what",
    [
        (b"# Latin-1\nmax_steps: 3\n# caf\xe9\n", "latin.yaml:3:6 ", "not UTF-8 (byte 0xe9)"),   # saved in Latin-1
        (b"max_steps: 3\nr: 8\nmax_steps: 5\n", "latin.yaml:3:1 ",
         "duplicate key 'max_steps' (first given on line 1)"),
        (b"rubric_weights: {feelings: 1, feelings: 2}\n", "latin.yaml:1:31 ", "duplicate key 'feelings'"),  # nested
    ],
)
def test_non_utf8_and_duplicate_keys_name_file_and_line(tmp_path, content, where, what):
    f = tmp_path / "latin.yaml"
    f.write_bytes(content)
    with pytest.raises(ParamsError) as exc:
        load_params(str(f))
    assert where in str(exc.value) and what in str(exc.value) and "\n" not in str(exc.value)


def test_profile_with_byte_order_mark_loads(tmp_path):
    f = tmp_path / "bom.yaml"
    f.write_bytes("\ufeffmax_steps: 3\nseed: 1\n".encode("utf-8"))  # a byte-order mark is not an error
    assert load_params(str(f))["max_steps"] == 3


def test_duplicate_key_in_override_is_named():
    with pytest.raises(ParamsError, match="duplicate key 'feelings'"):
        parse_override("rubric_weights={feelings: 1, feelings: 2}")


def test_unknown_key_in_profile_file_names_file_key(tmp_path):
    f = tmp_path / "mine.yaml"
    f.write_text("max_steps: 3\nnum_generation: 4\n")
    with pytest.raises(ParamsError, match=r"'num_generation' in profile .*mine.*did you mean 'num_generations'"):
        load_params(str(f))


def test_int_is_accepted_for_float_and_converted():
    p = load_params("smoke", {"learning_rate": 1})
    assert p["learning_rate"] == 1.0 and isinstance(p["learning_rate"], float)


def test_overrides_win_and_hash_changes():
    a, b = load_params("smoke"), load_params("smoke", {"max_steps": 99})
    assert b["max_steps"] == 99
    assert params_hash(a) != params_hash(b)
    assert params_hash(a) == params_hash(dict(reversed(list(a.items()))))


@pytest.mark.parametrize(
    "text, expected",
    [
        ("max_steps=3", ("max_steps", 3)),                 # int
        ("learning_rate=1e-5", ("learning_rate", 1e-5)),   # float in YAML 1.2 style
        ("target_modules=[q_proj, v_proj]", ("target_modules", ["q_proj", "v_proj"])),  # list
        ("judge_mode=generate", ("judge_mode", "generate")),  # str
    ],
)
def test_parse_override_then_validate(text, expected):
    key, value = parse_override(text)
    assert key == expected[0]
    assert load_params("smoke", {key: value})[key] == expected[1]


@pytest.mark.parametrize(
    "args, culprit",
    [
        (["validate", "--profile", "nope"], "nope"),
        (["validate", "--set", "max_step=3"], "max_step"),
        (["run", "--profile", "smoke", "--set", "judge_mode=vibes"], "judge_mode"),
        (["run", "--set", "prompts_file=/no/file.jsonl"], "prompts_file"),
    ],
)
def test_cli_error_is_one_line_without_traceback(args, culprit, tmp_path):
    r = subprocess.run([sys.executable, "-m", "hmxnb", *args], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 2
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    assert culprit in lines[0] and "Traceback" not in r.stderr


def test_keys_passed_by_name_are_real_library_fields():
    """GRPOConfig / LoraConfig keys come from the SCHEMA's explicit `feeds` field: each must be a field of that
    class, named as such in its documentation column, and no other key feeds a config."""
    import dataclasses

    from peft import LoraConfig
    from trl import GRPOConfig

    from hmxnb.params import keys_feeding

    from hmxnb.params import FEEDS

    grpo, lora = keys_feeding("grpo"), keys_feeding("lora")
    assert {"learning_rate", "num_generations", "max_steps", "beta", "seed"} <= set(grpo)
    assert not {"reward_weight_judge", "enable_thinking", "chat_date"} & set(grpo)  # fed under another name
    assert set(lora) == {"r", "lora_alpha", "lora_dropout", "target_modules"}
    assert set(grpo) <= {f.name for f in dataclasses.fields(GRPOConfig)}
    assert set(lora) <= {f.name for f in dataclasses.fields(LoraConfig)}
    assert {spec.feeds for spec in SCHEMA.values()} == {"", *FEEDS}
    assert all(SCHEMA[k].used_by.startswith(f"GRPOConfig.{k}") for k in grpo)
    assert all(SCHEMA[k].used_by.startswith(f"LoraConfig.{k}") for k in lora)
    with pytest.raises(ValueError, match="unknown config 'GRPOConfig'"):
        keys_feeding("GRPOConfig")


def test_a_second_evaluation_judge_must_differ_from_the_first():
    with pytest.raises(ParamsError, match="'eval_second_judge_mode' \\('contrast'\\) must differ from judge_mode"):
        load_params("smoke", {"eval_second_judge_mode": "contrast"})
    assert load_params("smoke", {"eval_second_judge_mode": ""})["eval_second_judge_mode"] == ""


@pytest.mark.parametrize("judge_mode, second", [("contrast", "request"), ("request", "contrast"),
                                                ("probability", "contrast")])
def test_the_automatic_second_judge_is_never_the_training_judge(judge_mode, second):
    from hmxnb.params import second_judge_mode

    p = load_params("smoke", {"judge_mode": judge_mode})  # eval_second_judge_mode: auto, the schema's default
    assert p["eval_second_judge_mode"] == "auto" and second_judge_mode(p) == second


@pytest.mark.parametrize("overrides", [{"max_steps": "x" * 5000}, {"judge_mode": "y" * 5000}, {"z" * 5000: 1},
                                       {"prompts_file": "/no/such/" + "p" * 3000}])
def test_errors_cut_a_long_value(overrides):
    """Issue 32: a 5,000-character value makes a one-line error of a few hundred characters, not of 5 kB."""
    with pytest.raises(ParamsError) as err:
        load_params("smoke", overrides)
    assert len(str(err.value)) < 400 and "…" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ParamsError) as err:
        parse_override("q" * 5000)  # no '='
    assert len(str(err.value)) < 400


def test_a_missing_data_dir_from_the_environment_is_named(tmp_path, monkeypatch):
    """Issue 32: the data_dir error says when the folder came from $HMXNB_DATA_DIR, not from the params."""
    monkeypatch.setenv("HMXNB_DATA_DIR", str(tmp_path / "no-mirror"))
    with pytest.raises(ParamsError, match=r"'data_dir' \(from the environment variable HMXNB_DATA_DIR\): file or "
                                          r"folder not found: .*no-mirror"):
        load_params("smoke")
    with pytest.raises(ParamsError) as err:  # set in params: the environment is not blamed
        load_params("smoke", {"data_dir": str(tmp_path / "elsewhere")})
    assert "HMXNB_DATA_DIR" not in str(err.value) and "elsewhere" in str(err.value)


@pytest.mark.parametrize("step, direction, overrides, profile_text, culprit", [
    ("02_train_human", "reverse", {}, "", "the notebook parameter 'direction'"),  # papermill -p direction reverse
    ("02_train_human", "human", {"direction": "reverse"}, "", "params_overrides"),
    ("03_train_reverse", "reverse", {"direction": "human"}, "", "params_overrides"),
    ("02_train_human", "human", {}, "direction: reverse\n", "profile"),
])
def test_a_training_notebook_refuses_another_direction(tmp_path, step, direction, overrides, profile_text, culprit):
    """Issue 32: notebook 02 run with `-p direction reverse` wrote a reverse run into 02_train_human/."""
    from hmxnb.train import training_direction

    profile = tmp_path / "mine.yaml"
    profile.write_text("max_steps: 2\n" + profile_text)
    with pytest.raises(ParamsError, match=f"params key 'direction' .* in {culprit}.* but notebook {step} trains"):
        training_direction(step, direction, str(profile), overrides)
    assert training_direction("02_train_human", "human", "smoke", {"direction": "human"}) == "human"
    assert training_direction("03_train_reverse", "reverse", "smoke", {}) == "reverse"


@pytest.mark.parametrize("stem, direction", [("02_train_human", "reverse"), ("03_train_reverse", "human")])
def test_the_training_notebooks_check_their_direction(stem, direction):
    """The notebook's own lines, run with the other direction as papermill's `-p direction` sets it: refused."""
    from pathlib import Path

    import nbformat

    from hmxnb.params import notebook_profile
    from hmxnb.train import training_direction

    path = Path(__file__).resolve().parents[1] / "notebooks" / f"{stem}.ipynb"
    code = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")
    lines = [x for x in code.splitlines() if x.startswith(("direction = training_direction(", "p = load_params("))]
    scope = {"load_params": load_params, "notebook_profile": notebook_profile, "training_direction": training_direction,
             "IN_COLAB": False, "profile": "smoke", "params_overrides": {}, "direction": direction}
    with pytest.raises(ParamsError, match=f"notebook {stem} trains"):
        exec("\n".join(lines), scope)
    assert "p" not in scope


@pytest.mark.parametrize("overrides, profile_text", [({"direction": "reverse"}, ""), ({"direction": "human"}, ""),
                                                     ({}, "direction: human\n")])
def test_the_runner_refuses_a_direction_before_anything_runs(tmp_path, monkeypatch, overrides, profile_text):
    """Steps 02 and 03 each train their own direction: a profile or --set direction is refused up front."""
    from hmxnb.runner import run
    from hmxnb.runner.run import run_profile

    monkeypatch.setattr(run, "_run_sweep", lambda *a: pytest.fail("the runner started the steps"))  # never trains
    profile = tmp_path / "mine.yaml"
    profile.write_text("max_steps: 2\n" + profile_text)
    with pytest.raises(ParamsError, match="params key 'direction' is set"):
        run_profile(str(profile), overrides, output_root=tmp_path / "out", progress=False, log=lambda line: None)
    assert not (tmp_path / "out").exists()
