"""Renaming weights between glassbox's GPT and the GPT-2 checkpoint layout.

GPT-2's published weights (and Hugging Face's `GPT2LMHeadModel`) name the same tensors
differently and store each projection as a "Conv1D" whose weight is the transpose of an
`nn.Linear` weight. These functions only rename and transpose; no library is imported,
so a GPT-2 state dict read from a safetensors file loads into our model, and tests and
benchmarks can run Hugging Face's implementation on exactly our weights.
"""

from __future__ import annotations

import torch
from torch import Tensor

from glassbox.config import ModelConfig
from glassbox.errors import GlassboxError
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
