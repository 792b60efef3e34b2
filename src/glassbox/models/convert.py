"""Renaming weights between glassbox's models and published checkpoint layouts: GPT-2
(to and from) and BERT (into an Encoder).

GPT-2's published weights (and Hugging Face's `GPT2LMHeadModel`) name the same tensors
differently and store each projection as a "Conv1D" whose weight is the transpose of an
`nn.Linear` weight. These functions only rename and transpose; no library is imported,
so a GPT-2 state dict read from a safetensors file loads into our model, and tests and
benchmarks can run Hugging Face's implementation on exactly our weights.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from glassbox.config import ModelConfig
from glassbox.errors import GlassboxError
from glassbox.models.encoder import Encoder
from glassbox.models.gpt import GPT

# (ours, GPT-2's) names inside block i; `True` marks a Conv1D weight (transposed).
_BLOCK = [
    ("ln_1.weight", "ln_1.weight", False),
    ("ln_1.bias", "ln_1.bias", False),
    ("attn.qkv.weight", "attn.c_attn.weight", True),
    ("attn.qkv.bias", "attn.c_attn.bias", False),
    ("attn.proj.weight", "attn.c_proj.weight", True),
    ("attn.proj.bias", "attn.c_proj.bias", False),
    ("ln_2.weight", "ln_2.weight", False),
    ("ln_2.bias", "ln_2.bias", False),
    ("mlp.fc.weight", "mlp.c_fc.weight", True),
    ("mlp.fc.bias", "mlp.c_fc.bias", False),
    ("mlp.proj.weight", "mlp.c_proj.weight", True),
    ("mlp.proj.bias", "mlp.c_proj.bias", False),
]
_TOP = [
    ("tok_emb.weight", "transformer.wte.weight"),
    ("pos_emb.table.weight", "transformer.wpe.weight"),
    ("ln_f.weight", "transformer.ln_f.weight"),
    ("ln_f.bias", "transformer.ln_f.bias"),
]


def check_gpt2_compatible(config: ModelConfig) -> None:
    """GPT-2's layout has biases, learned positions, tanh-GELU and plain multi-head."""
    problems = []
    if not config.bias:
        problems.append("bias=True")
    if config.pos_encoding != "learned":
        problems.append("pos_encoding='learned'")
    if config.activation != "gelu_tanh":
        problems.append("activation='gelu_tanh'")
    if config.kv_heads != config.n_head:
        problems.append("n_kv_head = n_head")
    if config.norm != "layernorm":
        problems.append("norm='layernorm'")
    if config.mlp_ratio != 4:
        problems.append("mlp_ratio=4")
    if problems:
        raise GlassboxError(f"the GPT-2 layout needs {', '.join(problems)}")


def to_gpt2_state_dict(model: GPT) -> dict[str, Tensor]:
    """Our weights under GPT-2's names (Conv1D weights transposed; lm_head tied)."""
    check_gpt2_compatible(model.config)
    ours = model.state_dict()
    out = {theirs: ours[mine] for mine, theirs in _TOP}
    for i in range(model.config.n_layer):
        for mine, theirs, conv in _BLOCK:
            tensor = ours[f"blocks.{i}.{mine}"]
            out[f"transformer.h.{i}.{theirs}"] = tensor.t().contiguous() if conv else tensor
    out["lm_head.weight"] = out["transformer.wte.weight"]
    return out


def from_gpt2_state_dict(state: dict[str, Tensor], config: ModelConfig) -> GPT:
    """A GPT with `config` holding the weights of a GPT-2-layout state dict."""
    check_gpt2_compatible(config)
    ours = {}
    try:
        for mine, theirs in _TOP:
            ours[mine] = state[theirs]
        for i in range(config.n_layer):
            for mine, theirs, conv in _BLOCK:
                tensor = state[f"transformer.h.{i}.{theirs}"]
                ours[f"blocks.{i}.{mine}"] = tensor.t() if conv else tensor
    except KeyError as err:
        raise GlassboxError(f"not a GPT-2 state dict: {err.args[0]} is missing") from None
    model = GPT(config)
    with torch.no_grad():
        model.load_state_dict(ours)
    return model


# BERT (Hugging Face BertModel layout): post-norm blocks with separate q, k, v.
_BERT_BLOCK = [
    ("attn.proj", "attention.output.dense"),
    ("ln_1", "attention.output.LayerNorm"),
    ("mlp.fc", "intermediate.dense"),
    ("mlp.proj", "output.dense"),
    ("ln_2", "output.LayerNorm"),
]


def bert_config(hf: dict[str, Any]) -> ModelConfig:
    """Our Encoder config for a Hugging Face BERT config.json: post-norm, learned
    positions, biases, exact GELU, a norm on the embeddings, BERT's eps."""
    if hf.get("model_type") != "bert" or hf.get("hidden_act") != "gelu":
        raise GlassboxError("only BERT checkpoints with hidden_act 'gelu' load as an Encoder")
    if hf["intermediate_size"] % hf["hidden_size"]:
        raise GlassboxError("BERT's intermediate_size must be a multiple of hidden_size")
    return ModelConfig(
        arch="encoder", vocab_size=hf["vocab_size"], block_size=hf["max_position_embeddings"],
        n_layer=hf["num_hidden_layers"], n_head=hf["num_attention_heads"],
        n_embd=hf["hidden_size"], mlp_ratio=hf["intermediate_size"] // hf["hidden_size"],
        bias=True, norm_placement="post", norm_eps=hf["layer_norm_eps"], embed_norm=True,
    )  # fmt: skip


def from_bert_state_dict(state: dict[str, Tensor], config: ModelConfig) -> Encoder:
    """An Encoder holding a BERT checkpoint's weights. Token type 0's vector is added to
    every position vector (a single-segment input always adds it); the pooler and the
    masked-LM head, which BertModel checkpoints may lack, are not loaded."""
    prefix = "bert." if "bert.embeddings.word_embeddings.weight" in state else ""
    try:
        emb = f"{prefix}embeddings."
        ours = {
            "tok_emb.weight": state[emb + "word_embeddings.weight"],
            "pos_emb.table.weight": state[emb + "position_embeddings.weight"]
            + state[emb + "token_type_embeddings.weight"][0],
            "ln_embed.weight": state[emb + "LayerNorm.weight"],
            "ln_embed.bias": state[emb + "LayerNorm.bias"],
        }
        for i in range(config.n_layer):
            theirs = f"{prefix}encoder.layer.{i}."
            for part in ("weight", "bias"):
                ours[f"blocks.{i}.attn.qkv.{part}"] = torch.cat(
                    [
                        state[f"{theirs}attention.self.{name}.{part}"]
                        for name in ("query", "key", "value")
                    ]
                )
                for mine, their_name in _BERT_BLOCK:
                    ours[f"blocks.{i}.{mine}.{part}"] = state[f"{theirs}{their_name}.{part}"]
    except KeyError as err:
        raise GlassboxError(f"not a BERT state dict: {err.args[0]} is missing") from None
    model = Encoder(config)
    with torch.no_grad():
        model.load_state_dict(ours)
    return model.eval()


def load_bert(model_dir: Path | str) -> Encoder:
    """A BERT checkpoint folder (config.json + model.safetensors) as an Encoder, e.g.
    all-MiniLM-L6-v2. Read with safetensors: nothing is unpickled."""
    from safetensors.torch import load_file

    model_dir = Path(model_dir)
    config = bert_config(json.loads((model_dir / "config.json").read_text()))
    return from_bert_state_dict(load_file(model_dir / "model.safetensors"), config)
