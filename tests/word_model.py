"""A 3-layer random Llama with a word-level tokenizer, shared by the view tests (viz, widgets) and the lens tests."""

from __future__ import annotations

import torch

from locedit.arch import spec_for
from locedit.models import Model

WORDS = ["The", "Eiffel", "Tower", "is", "in", "Paris", "Rome", "city", "of", "the", "a", "to"]
PROMPT = "The Eiffel Tower is in the city of"


def tiny_word_llama() -> Model:
    """No download; builds in well under a second. Vocabulary: 64 ids, the words above among them."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    vocab = {"<s>": 0, "</s>": 1, "<unk>": 2, **{w: i + 3 for i, w in enumerate(WORDS)}}
    vocab.update({f"w{i}": i for i in range(len(vocab), 64)})
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="<unk>", pad_token="</s>", bos_token="<s>", eos_token="</s>"
    )
    config = LlamaConfig(
        vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=3, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=32, bos_token_id=0, eos_token_id=1, pad_token_id=1,
    )  # fmt: skip
    torch.manual_seed(0)
    hf = LlamaForCausalLM(config).eval()
    return Model(hf=hf, tokenizer=tokenizer, spec=spec_for(hf), name="tiny-llama")
