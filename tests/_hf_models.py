"""Tiny random-initialised Hugging Face models (nothing downloaded): BERT, GPT-2, LLaMA."""

from __future__ import annotations

import torch

VOCAB = 100


def bert():
    import transformers as T

    config = T.BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=4, num_attention_heads=4, intermediate_size=128,
                          max_position_embeddings=32, num_labels=3)
    return T.BertForSequenceClassification(config)


def gpt2():
    import transformers as T

    config = T.GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=4, n_head=4, n_positions=32, bos_token_id=0, eos_token_id=0)
    return T.GPT2LMHeadModel(config)


def llama():
    import transformers as T

    config = T.LlamaConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=4,
                           head_dim=4, intermediate_size=128, max_position_embeddings=32)
    return T.LlamaForCausalLM(config)


def tokens(batch: int = 2, length: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, VOCAB, (batch, length), generator=torch.Generator().manual_seed(seed))
