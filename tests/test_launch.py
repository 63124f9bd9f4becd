"""hmxnb.runner.launch: a training run on several processes (`accelerate launch`, gloo on CPU) before the notebook,
which then loads the finished run instead of training it again."""

import json

import pandas as pd
import pytest

from hmxnb.runner.launch import launch_command
from hmxnb.params import ParamsError, load_params


def test_launch_command_starts_n_workers(tmp_path):
    cmd = launch_command(2, tmp_path / "p.json", tmp_path, port=29999, threads=1)
    assert cmd[1:3] == ["-m", "accelerate.commands.launch"]
    assert "--multi_gpu" in cmd  # torchrun starts the processes; without CUDA, use_cpu makes them gloo
    assert cmd[cmd.index("--num_processes") + 1] == "2" and cmd[cmd.index("--main_process_port") + 1] == "29999"
    assert cmd[cmd.index("--num_cpu_threads_per_process") + 1] == "1"
    assert cmd[-4:] == ["-m", "hmxnb.runner.launch", str(tmp_path / "p.json"), str(tmp_path)]
    assert "--num_cpu_threads_per_process" not in launch_command(2, tmp_path / "p.json", tmp_path, 1, None)


def test_num_processes_must_be_positive():
    assert load_params("smoke")["num_processes"] == 1  # one process stays the default
    try:
        load_params("smoke", {"num_processes": 0})
    except ParamsError as err:
        assert "num_processes" in str(err)
    else:
        raise AssertionError("num_processes 0 was accepted")


def _two_process_params(tiny_model_dir):
    return load_params("smoke", {"model_name_or_path": tiny_model_dir, "num_processes": 2, "max_steps": 2,
                                 "save_steps": 1, "sample_every": 1, "max_completion_length": 6, "n_train_prompts": 8,
                                 "per_device_train_batch_size": 4, "num_generations": 4})


def test_two_processes_train_one_adapter_and_the_notebook_loads_it(tiny_model_dir, tmp_path):
    import torch
    from safetensors.torch import load_file

    from hmxnb.runner.launch import train_in_processes
    from hmxnb.train import make_trainer, run_trainer

    p = _two_process_params(tiny_model_dir)
    lines = []
    m = train_in_processes(p, tmp_path, log=lines.append)
    text = "\n".join(lines)
    # the batch geometry TRL computed inside the workers: 2 processes x 4 completions = 8 per step (2 prompts x 4)
    assert "hmxnb: 2 process(es) x per_device_train_batch_size 4" in text, text[-2000:]
    assert "global batch 8 completions per step, generation_batch_size 8 (2 prompts x 4 generations)" in text
    assert m["steps"] == 2 and json.loads((tmp_path / "metrics.json").read_text())["steps"] == 2
    assert sorted(x.name for x in tmp_path.glob("**/adapter_model.safetensors") if "checkpoint-" not in str(x)) == [
        "adapter_model.safetensors"]  # one adapter, written by rank 0
    assert list(pd.read_csv(tmp_path / "train_log.csv")["step"]) == [1, 2]
    assert {json.loads(line)["step"] for line in (tmp_path / "samples.jsonl").read_text().splitlines()} == {0, 1}
    record = (tmp_path / "grpo_args.json").read_text()
    assert json.loads(record)["objective"]["world_size"] == 2

    # what notebook 02 does next, in its one-process kernel: build the trainer, run_trainer -> the finished run
    trainer, state = make_trainer(p, tmp_path)
    again = run_trainer(p, tmp_path, trainer, state)
    assert again == m  # the metrics of the run that trained, not of a second training
    assert (tmp_path / "grpo_args.json").read_text() == record  # the record still names the 2-process trainer
    assert trainer.state.global_step == 2 and state.seconds == 0  # nothing trained or judged in the kernel
    saved = load_file(str(tmp_path / "adapter" / "adapter_model.safetensors"))
    live = {k: v for k, v in trainer.model.state_dict().items() if "lora_" in k}
    assert len(saved) == len(live) > 0
    for key, value in saved.items():  # the kernel's policy holds the trained weights (what 02's later cells sample)
        assert torch.equal(live[key.replace(".weight", ".default.weight")], value), key


def test_a_kernel_with_num_processes_2_and_no_finished_run_stops_with_one_line(tiny_model_dir, tmp_path):
    from hmxnb.train import make_trainer, run_trainer

    p = _two_process_params(tiny_model_dir)
    trainer, state = make_trainer(p, tmp_path)
    one_line = r"params key 'num_processes' is 2, but this trainer runs on 1 process"
    with pytest.raises(ParamsError, match=one_line) as err:
        run_trainer(p, tmp_path, trainer, state)
    assert "\n" not in str(err.value) and "python -m hmxnb run" in str(err.value)
    assert not (tmp_path / "metrics.json").exists() and not list(tmp_path.glob("checkpoints/checkpoint-*"))
