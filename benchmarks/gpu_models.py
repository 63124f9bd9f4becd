"""What `gpu_check.py` builds and runs: random-initialised models of the paper models' shapes (part `build`), the
params of every part (`colab-t4` with the check's overrides) and which backend each part is about.

Shapes are the paper models' (../shared/reference/paper-models.md): random weights, since speed and memory do not
depend on the weight values and the GPU machine has no Hub. The tokenizer is the embedded SmolLM2 one padded with
placeholder tokens `<x{i}>` to the model's vocabulary, so every id a random model samples decodes to text.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

# name -> Qwen3Config fields (paper-models.md; max_position_embeddings as Qwen3 ships it)
SHAPES = {
    "qwen3-0.6b": dict(num_hidden_layers=28, hidden_size=1024, intermediate_size=3072, num_attention_heads=16,
                       num_key_value_heads=8, head_dim=128, tie_word_embeddings=True, max_position_embeddings=40960),
    "qwen3-4b": dict(num_hidden_layers=36, hidden_size=2560, intermediate_size=9728, num_attention_heads=32,
                     num_key_value_heads=8, head_dim=128, tie_word_embeddings=True, max_position_embeddings=40960),
}
PAPER_VOCAB = 151_936
# --rehearse: the same two folders with tiny shapes, and a vocabulary just past SmolLM2's 49,152 ids, so the
# padding is exercised without a 100k-token tokenizer on CPU
TINY = dict(num_hidden_layers=2, hidden_size=64, intermediate_size=128, num_attention_heads=4, num_key_value_heads=2,
            head_dim=16, tie_word_embeddings=True, max_position_embeddings=2048)
REHEARSE_VOCAB = 49_152 + 256
# --rehearse: completion tokens per generation. Generation is most of a rehearsal training part's time (a random
# model never stops before the limit), and 16 tokens exercise the same code as 128: the value is checked to reach the
# trainer, whatever it is
REHEARSE_COMPLETION = 16


def pad_tokenizer(tok, vocab_size: int):
    """Add placeholder tokens `<x{i}>` (i = the id they get) until the tokenizer has `vocab_size` ids."""
    if len(tok) > vocab_size:
        raise ValueError(f"tokenizer has {len(tok)} ids, more than the model's {vocab_size}")
    tok.add_tokens([f"<x{i}>" for i in range(len(tok), vocab_size)])
    assert len(tok) == vocab_size, (len(tok), vocab_size)
    return tok


def shapes(rehearse: bool) -> tuple[dict, int]:
    return ({name: TINY for name in SHAPES} if rehearse else SHAPES), REHEARSE_VOCAB if rehearse else PAPER_VOCAB


def _save_model(folder: Path, fields: dict, tok, on_gpu: bool):
    """A random-initialised Qwen3 of `fields`, saved with the padded tokenizer (bf16 on GPU, fp32 in rehearsal)."""
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    cfg = Qwen3Config(vocab_size=len(tok), eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                      bos_token_id=tok.bos_token_id, **fields)
    torch.manual_seed(0)
    dtype = torch.bfloat16 if on_gpu else torch.float32
    with torch.device("cuda" if on_gpu else "cpu"):  # random init on the GPU: seconds instead of a minute for 4B
        model = Qwen3ForCausalLM._from_config(cfg, dtype=dtype)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return model


def _save_adapters(model, folder: Path, params: dict) -> dict:
    """Two LoRA adapters ("human", "reverse") with random A and B (so each changes the outputs), for part nb04_path."""
    import torch
    from peft import LoraConfig, get_peft_model

    paths = {}
    for seed, label in enumerate(("human", "reverse"), 1):
        torch.manual_seed(seed)
        cfg = LoraConfig(task_type="CAUSAL_LM", r=params["r"], lora_alpha=params["lora_alpha"],
                         target_modules=params["target_modules"], init_lora_weights=False)
        peft_model = get_peft_model(model, cfg)
        peft_model.save_pretrained(folder / label)
        model = peft_model.unload()
        paths[label] = str(folder / label)
    return paths


def part_build(args, rec) -> None:
    """Build both shapes (and the two nb04 adapters) into --models, unless a build of the same spec is there."""
    from transformers import AutoTokenizer

    models = Path(args.models)
    fields, vocab = shapes(args.rehearse)
    spec = {"shapes": fields, "vocab": vocab, "tokenizer": args.tokenizer}
    marker = models / "build.json"
    if marker.is_file() and json.loads(marker.read_text()).get("spec") == spec:
        rec(reused=True, **json.loads(marker.read_text())["record"])
        return
    t0 = time.time()
    source = args.tokenizer
    if source.startswith("embedded:"):
        from hmxnb.models import resolve_model_path

        source = resolve_model_path(source)
    tok = AutoTokenizer.from_pretrained(source)
    rec(tokenizer_source=source, tokenizer_ids=len(tok))
    t = time.time()
    pad_tokenizer(tok, vocab)
    rec(vocab=len(tok), pad_s=time.time() - t, undecodable_ids=sum(x is None for x in tok.convert_ids_to_tokens(
        list(range(vocab)))))
    on_gpu = not args.rehearse
    shutil.rmtree(models, ignore_errors=True)
    for name, shape in fields.items():
        t = time.time()
        model = _save_model(models / name, shape, tok, on_gpu)
        n_params = sum(p.numel() for p in model.parameters())
        rec(**{f"{name}_params_m": n_params / 1e6, f"{name}_build_s": time.time() - t})
        if name == "qwen3-0.6b":
            rec(adapters=_save_adapters(model, models / "adapters", load_colab_params(models / name, args.rehearse)))
        del model
    rec(reused=False, build_s=time.time() - t0)
    marker.write_text(json.dumps({"spec": spec, "record": {k: v for k, v in rec.data.items() if k != "part"}}))


def load_colab_params(model_dir: str | Path, rehearse: bool, **extra):
    """`colab-t4` with the check's settings: 4 steps, 4 generations x 128 tokens, contrast judge, adamw_8bit.

    Rehearsal (CPU): no Unsloth, no 4-bit, adamw_torch, REHEARSE_COMPLETION tokens; the rest the same, so the same
    code runs.
    """
    from hmxnb.params import load_params

    over = {"model_name_or_path": str(model_dir), "max_steps": 4, "num_generations": 4,
            "per_device_train_batch_size": 4, "max_completion_length": 128, "judge_mode": "contrast",
            "optim": "adamw_8bit", "save_steps": 10_000, "logging_steps": 1, **extra}
    if rehearse:
        over.update(use_unsloth=False, load_in_4bit=False, optim="adamw_torch",
                    max_completion_length=REHEARSE_COMPLETION)
    return load_params("colab-t4", over)


# part -> (model folder, params overrides, the backend the part is about on a GPU)
TRAIN_PARTS = {
    "unsloth_4b": ("qwen3-4b", {"use_unsloth": True, "load_in_4bit": True}, "unsloth"),
    "trl_4b": ("qwen3-4b", {"use_unsloth": False, "load_in_4bit": True}, "transformers-4bit"),
    "t4_fp16_0p6b": ("qwen3-0.6b", {"use_unsloth": True, "load_in_4bit": True, "precision": "fp16"}, "unsloth"),
}
# engine_vs_plain runs once per backend, each in its own process
ENGINE_RUNS = {"unsloth": {"use_unsloth": True, "load_in_4bit": True},
               "transformers-4bit": {"use_unsloth": False, "load_in_4bit": True}}
NB04 = {"use_unsloth": True, "load_in_4bit": True}
def uses_unsloth(part: str, run: str | None, rehearse: bool) -> bool:
    """Whether the part's process may import Unsloth (else it gets HMXNB_IMPORT_UNSLOTH=0)."""
    if rehearse or part == "build":
        return False
    if part in TRAIN_PARTS:
        return TRAIN_PARTS[part][1]["use_unsloth"]
    return ENGINE_RUNS[run]["use_unsloth"] if part == "engine_vs_plain" else NB04["use_unsloth"]
