"""hmxnb.launch: one training run on one process (in the kernel) or several (`accelerate launch`, gloo on CPU)."""

import json

import pandas as pd

from hmxnb.launch import launch_command
from hmxnb.params import ParamsError, load_params


def test_launch_command_starts_n_workers(tmp_path):
    cmd = launch_command(2, tmp_path / "p.json", tmp_path, port=29999, threads=1)
    assert cmd[1:3] == ["-m", "accelerate.commands.launch"]
    assert "--multi_gpu" in cmd  # torchrun starts the processes; without CUDA, use_cpu makes them gloo
    assert cmd[cmd.index("--num_processes") + 1] == "2" and cmd[cmd.index("--main_process_port") + 1] == "29999"
    assert cmd[cmd.index("--num_cpu_threads_per_process") + 1] == "1"
    assert cmd[-4:] == ["-m", "hmxnb.launch", str(tmp_path / "p.json"), str(tmp_path)]
    assert "--num_cpu_threads_per_process" not in launch_command(2, tmp_path / "p.json", tmp_path, 1, None)


def test_num_processes_must_be_positive():
    assert load_params("smoke")["num_processes"] == 1  # one process stays the default
    try:
        load_params("smoke", {"num_processes": 0})
    except ParamsError as err:
        assert "num_processes" in str(err)
    else:
        raise AssertionError("num_processes 0 was accepted")


def test_two_processes_train_one_adapter(tiny_model_dir, tmp_path):
    from hmxnb.launch import run_training

    p = load_params("smoke", {"model_name_or_path": tiny_model_dir, "num_processes": 2, "max_steps": 2, "save_steps": 1,
                              "sample_every": 1, "max_completion_length": 6, "n_train_prompts": 8,
                              "per_device_train_batch_size": 4, "num_generations": 4})
    lines = []
    m = run_training(p, tmp_path, log=lines.append)
    text = "\n".join(lines)
    # the batch geometry TRL computed inside the workers: 2 processes x 4 completions = 8 per step (2 prompts x 4)
    assert "hmxnb: 2 process(es) x per_device_train_batch_size 4" in text, text[-2000:]
    assert "global batch 8 completions per step, generation_batch_size 8 (2 prompts x 4 generations)" in text
    assert m["steps"] == 2 and json.loads((tmp_path / "metrics.json").read_text())["steps"] == 2
    assert sorted(x.name for x in tmp_path.glob("**/adapter_model.safetensors") if "checkpoint-" not in str(x)) == [
        "adapter_model.safetensors"]  # one adapter, written by rank 0
    assert list(pd.read_csv(tmp_path / "train_log.csv")["step"]) == [1, 2]
    assert {json.loads(line)["step"] for line in (tmp_path / "samples.jsonl").read_text().splitlines()} == {0, 1}
