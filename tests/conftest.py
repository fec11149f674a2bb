"""Shared fixtures: the two real offline models (loaded once per test session) and tiny random-weight models."""

from __future__ import annotations

import pytest
import torch

from locedit.models import Model, load_model


@pytest.fixture(scope="session")
def smollm2() -> Model:
    """SmolLM2-135M-Instruct, float32, CPU (built from its GGUF on first use, then from the cache)."""
    torch.manual_seed(0)
    return load_model("smollm2-135m", device="cpu")


@pytest.fixture(scope="session")
def gemma3() -> Model:
    """Gemma 3 270M base, float32, CPU."""
    return load_model("gemma3-270m", device="cpu")


@pytest.fixture(params=["smollm2", "gemma3"], scope="session")
def real_model(request) -> Model:
    """Each real model in turn."""
    return request.getfixturevalue(request.param)


# --- tiny random-weight models, one per supported family (built from config objects: no download) -------------

TINY_VOCAB = 128


def tiny_config(family: str):
    """A 2-layer, d_model 64, 4-head config of ``family`` ("gpt2", "gptj", "gpt_neox", "llama", "gemma3_text")."""
    from transformers import Gemma3TextConfig, GPT2Config, GPTJConfig, GPTNeoXConfig, LlamaConfig

    common = {"vocab_size": TINY_VOCAB, "bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 1}
    if family == "gpt2":
        return GPT2Config(n_layer=2, n_embd=64, n_head=4, n_positions=64, **common)
    if family == "gptj":
        return GPTJConfig(n_layer=2, n_embd=64, n_head=4, n_positions=64, rotary_dim=8, **common)
    if family == "gpt_neox":
        return GPTNeoXConfig(
            num_hidden_layers=2, hidden_size=64, num_attention_heads=4, intermediate_size=96,
            max_position_embeddings=64, **common,
        )  # fmt: skip
    if family == "llama":
        return LlamaConfig(
            num_hidden_layers=2, hidden_size=64, num_attention_heads=4, num_key_value_heads=2, intermediate_size=96,
            max_position_embeddings=64, **common,
        )  # fmt: skip
    if family == "gemma3_text":
        # head_dim 32 != d_model / n_heads, one KV head, and a sliding window shorter than the test prompts
        return Gemma3TextConfig(
            num_hidden_layers=2, hidden_size=64, num_attention_heads=4, num_key_value_heads=1, head_dim=32,
            intermediate_size=96, max_position_embeddings=64, sliding_window=4, **common,
        )  # fmt: skip
    raise ValueError(family)


TINY_FAMILIES = ("gpt2", "gptj", "gpt_neox", "llama", "gemma3_text")


def tiny_model(family: str, seed: int = 0) -> Model:
    """A random-weight :class:`Model` of ``family`` (no tokenizer: feed it token ids, see :func:`tiny_inputs`)."""
    from transformers import AutoModelForCausalLM

    from locedit.arch import spec_for

    torch.manual_seed(seed)
    hf = AutoModelForCausalLM.from_config(tiny_config(family)).eval()
    return Model(hf=hf, tokenizer=None, spec=spec_for(hf), name=f"tiny-{family}")


def tiny_inputs(batch: int = 2, seq: int = 7, seed: int = 1) -> dict[str, torch.Tensor]:
    """Random token ids [batch, seq] (no padding) for the tiny models."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(2, TINY_VOCAB, (batch, seq), generator=generator)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


@pytest.fixture(params=TINY_FAMILIES, scope="session")
def tiny(request) -> Model:
    """Each tiny family in turn."""
    return tiny_model(request.param)
