"""Shared fixtures: a tiny random Qwen2 chat model with a locally trained BPE tokenizer (no network)."""

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
WORDS = (
    "I feel happy sad curious calm worried glad today because you asked me about my day and I want to help "
    "the answer is yes no maybe score rating reply user assistant question one two three four five "
    "1 2 3 4 5 Score: . , ! ? the cat sat on a mat we think they know it seems true false"
).split()


def _corpus(n=600, seed=0):
    g = torch.Generator().manual_seed(seed)
    lines = []
    for _ in range(n):
        idx = torch.randint(len(WORDS), (12,), generator=g).tolist()
        lines.append(" ".join(WORDS[i] for i in idx))
    lines += [f"Score: {d}" for d in range(1, 6)] * 20
    return lines


def build_tiny_model(out_dir, seed=0):
    """Build and save a 2-layer random Qwen2 + ByteLevel BPE tokenizer with a ChatML template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tk.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=SPECIAL, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tk.train_from_iterator(_corpus(), trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    tok.chat_template = CHAT_TEMPLATE
    cfg = Qwen2Config(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
        tie_word_embeddings=True, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
        bos_token_id=None,
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(cfg)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    return str(out_dir)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """Path of a saved tiny random chat model (built once per test session)."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny_model"))


@pytest.fixture(scope="session")
def tiny_model(tiny_model_dir):
    """(model, tokenizer) loaded from tiny_model_dir, fp32, eval mode (the prefix-reuse engine is the scorers'
    `reuse=True`; without it they take the plain path)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    return model, tok


@pytest.fixture(scope="session")
def data_dir():
    """The offline benchmark mirror (HMXNB_DATA_DIR, default ../shared/data); tests that need it skip without it."""
    from pathlib import Path

    d = Path(os.environ.get("HMXNB_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))
    if not d.is_dir():
        pytest.skip(f"offline data directory not found: {d}")
    return d
