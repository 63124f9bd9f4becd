"""GPU-only checks (marked `gpu`): skipped cleanly on machines without CUDA, such as CI."""

import pytest
import torch

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def test_backend_on_gpu_is_unsloth_when_installed():
    from hmxnb.models import backend_for, unsloth_available

    assert backend_for(True) == ("unsloth" if unsloth_available() else "transformers-4bit")


def test_two_grpo_steps_on_gpu(tmp_path):
    from hmxnb.params import load_params
    from hmxnb.train import train

    p = load_params("smoke", {"max_steps": 2, "save_steps": 1, "load_in_4bit": True, "use_unsloth": True})
    m = train(p, tmp_path)
    assert m["steps"] == 2 and (tmp_path / "adapter" / "adapter_config.json").is_file()
