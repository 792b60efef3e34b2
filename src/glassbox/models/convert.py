"""Renaming weights between glassbox's models and published checkpoint layouts: GPT-2
(to and from) and BERT (into an Encoder).

GPT-2's published weights (and Hugging Face's `GPT2LMHeadModel`) name the same tensors
differently and store each projection as a "Conv1D" whose weight is the transpose of an
`nn.Linear` weight. These functions only rename and transpose; no library is imported,
so a GPT-2 state dict read from a safetensors file loads into our model, and tests and
benchmarks can run Hugging Face's implementation on exactly our weights. `gpt2_config`
and `gpt2_hf_config` translate the configs (glassbox.pretrained reads and writes the
files).
"""

from __future__ import annotations

import json
import re
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


# Hugging Face's activation_function names for the nonlinearities glassbox has, and back.
_HF_ACTIVATIONS = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu": "gelu",
                   "relu": "relu"}  # fmt: skip
_TO_HF_ACTIVATION = {"gelu_tanh": "gelu_new", "gelu": "gelu", "relu": "relu"}
# GPT2Config switches whose other value computes something glassbox's blocks do not:
# (field, the value glassbox computes, what GPT-2 does with the other value).
_GPT2_SWITCHES = [
    ("scale_attn_weights", True,
     "leaves attention scores undivided by sqrt(d_head); glassbox always divides them"),
    ("scale_attn_by_inverse_layer_idx", False,
     "also divides layer i's attention scores by i + 1, which glassbox does not"),
    ("reorder_and_upcast_attn", False,
     "computes attention scores in its own float32 order, which glassbox does not"),
    ("add_cross_attention", False,
     "adds cross-attention to an encoder's output, which a decoder-only GPT has no place for"),
]  # fmt: skip
# The causal-mask buffers that files saved by older transformers versions hold per block.
_MASK_BUFFER = re.compile(r"h\.\d+\.attn\.(bias|masked_bias)")


def check_gpt2_compatible(config: ModelConfig) -> None:
    """GPT-2's layout is a pre-norm decoder with biases, learned positions, LayerNorm, a
    dense MLP (tanh-GELU in GPT-2 itself; exact GELU and ReLU also have GPT2Config
    names), plain multi-head attention without qk_norm, and an output layer tied to the
    token embedding with no soft-capping; anything else is refused with what differs.
    (zero_init changes only how a model starts, so a trained one exports either way.)"""
    needs = [
        (config.arch == "decoder", "arch='decoder'", f"arch={config.arch!r}"),
        (config.bias, "bias=True", "bias=False"),
        (config.pos_encoding == "learned", "pos_encoding='learned'",
         f"pos_encoding={config.pos_encoding!r}"),
        (config.norm == "layernorm", "norm='layernorm'", f"norm={config.norm!r}"),
        (config.norm_placement == "pre", "norm_placement='pre'",
         f"norm_placement={config.norm_placement!r}"),
        (not config.embed_norm, "embed_norm=False", "embed_norm=True"),
        (not config.attn_only, "an MLP in every block", "attn_only=True"),
        (config.activation in _TO_HF_ACTIVATION, "activation gelu_tanh, gelu or relu",
         f"activation={config.activation!r}"),
        (config.mlp == "dense", "mlp='dense'", f"mlp={config.mlp!r}"),
        (config.attention_kind == "mha", "attention_kind='mha'",
         f"attention_kind={config.attention_kind!r}"),
        (config.kv_heads == config.n_head, "one key/value head per query head",
         f"n_kv_head={config.n_kv_head}"),
        (not config.qk_norm, "qk_norm=False", "qk_norm=True"),
        (config.tie_embeddings, "tie_embeddings=True (lm_head is wte)",
         "tie_embeddings=False"),
        (not config.logit_softcap, "logit_softcap=0", f"logit_softcap={config.logit_softcap}"),
    ]  # fmt: skip
    problems = [f"{want} (this model has {have})" for ok, want, have in needs if not ok]
    if problems:
        raise GlassboxError(f"the GPT-2 layout needs {', '.join(problems)}")


def gpt2_config(hf: dict[str, Any]) -> ModelConfig:
    """Our GPT config for a Hugging Face GPT-2 config.json (an absent field takes
    GPT2Config's default). Each setting glassbox cannot compute is an error of its own;
    the one dropout is resid_pdrop (it matters only when training on).

    >>> gpt2_config({"model_type": "gpt2", "n_layer": 2}).n_layer
    2
    """
    if hf.get("model_type") != "gpt2":
        raise GlassboxError(
            f"config.json has model_type {hf.get('model_type')!r}, not 'gpt2': only GPT-2 "
            "checkpoints import"
        )
    for key, ours, other in _GPT2_SWITCHES:
        if hf.get(key, ours) != ours:
            raise GlassboxError(f"config.json sets {key}={json.dumps(hf[key])}: GPT-2 then {other}")
    activation = hf.get("activation_function", "gelu_new")
    if activation not in _HF_ACTIVATIONS:
        raise GlassboxError(
            f"config.json has activation_function {activation!r}; glassbox computes "
            f"{', '.join(_HF_ACTIVATIONS)}"
        )
    n_embd = hf.get("n_embd", 768)
    n_inner = hf.get("n_inner") or 4 * n_embd
    if not isinstance(n_embd, int) or not isinstance(n_inner, int) or n_inner % n_embd:
        raise GlassboxError(
            f"config.json has n_inner {n_inner!r}, not a multiple of n_embd {n_embd!r}: "
            "glassbox's MLP is mlp_ratio * n_embd wide"
        )
    try:
        return ModelConfig(
            arch="decoder", vocab_size=hf.get("vocab_size", 50257),
            block_size=hf.get("n_positions", 1024), n_layer=hf.get("n_layer", 12),
            n_head=hf.get("n_head", 12), n_embd=n_embd, mlp_ratio=n_inner // n_embd,
            dropout=hf.get("resid_pdrop", 0.1), bias=True, pos_encoding="learned",
            activation=_HF_ACTIVATIONS[activation], norm="layernorm",
            norm_eps=hf.get("layer_norm_epsilon", 1e-5), norm_placement="pre",
        )  # fmt: skip
    except GlassboxError as err:
        raise GlassboxError(f"config.json: {err}") from None


def gpt2_hf_config(config: ModelConfig) -> dict[str, Any]:
    """The Hugging Face GPT-2 config.json fields for `config` (the inverse of
    `gpt2_config`); a layout GPT-2 cannot express is refused, saying what differs."""
    check_gpt2_compatible(config)
    C = config.n_embd
    return {
        "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2",
        "vocab_size": config.vocab_size, "n_positions": config.block_size,
        "n_embd": C, "n_layer": config.n_layer, "n_head": config.n_head,
        "n_inner": None if config.mlp_ratio == 4 else config.mlp_ratio * C,
        "activation_function": _TO_HF_ACTIVATION[config.activation],
        "layer_norm_epsilon": config.norm_eps, "resid_pdrop": config.dropout,
        "embd_pdrop": config.dropout, "attn_pdrop": config.dropout,
        "initializer_range": 0.02, "tie_word_embeddings": True, "use_cache": True,
        **{key: ours for key, ours, _ in _GPT2_SWITCHES},
    }  # fmt: skip


def _gpt2_names(config: ModelConfig, prefix: str) -> list[tuple[str, str, bool]]:
    """(ours, GPT-2's, is a Conv1D weight) for every tensor; GPT-2's names carry `prefix`
    ('transformer.' in GPT2LMHeadModel files, '' in GPT2Model files such as OpenAI's)."""
    names = [(mine, prefix + theirs.removeprefix("transformer."), False) for mine, theirs in _TOP]
    for i in range(config.n_layer):
        for mine, theirs, conv in _BLOCK:
            names.append((f"blocks.{i}.{mine}", f"{prefix}h.{i}.{theirs}", conv))
    return names


def to_gpt2_state_dict(model: GPT) -> dict[str, Tensor]:
    """Our weights under GPT-2's names (Conv1D weights transposed; lm_head tied)."""
    check_gpt2_compatible(model.config)
    ours = model.state_dict()
    names = _gpt2_names(model.config, "transformer.")
    left = sorted(set(ours) - {mine for mine, _, _ in names})
    if left:
        raise GlassboxError(f"GPT-2's layout has no place for {left[0]}")
    out = {
        theirs: ours[mine].t().contiguous() if conv else ours[mine] for mine, theirs, conv in names
    }
    out["lm_head.weight"] = out["transformer.wte.weight"]
    return out


def from_gpt2_state_dict(state: dict[str, Tensor], config: ModelConfig) -> GPT:
    """A GPT with `config` holding the weights of a GPT-2-layout state dict: names of
    GPT2LMHeadModel (`transformer.h.0...`) or of GPT2Model (`h.0...`, as OpenAI's files);
    older files' causal-mask buffers are skipped. A missing or unexpected tensor, a shape
    that does not fit `config`, or an lm_head.weight other than the token embedding (our
    output layer is tied to it) is an error naming the tensor; nothing is loaded then."""
    check_gpt2_compatible(config)
    prefix = "transformer." if "transformer.wte.weight" in state else ""
    names = _gpt2_names(config, prefix)
    missing = [theirs for _, theirs, _ in names if theirs not in state]
    known = {theirs for _, theirs, _ in names} | {"lm_head.weight"}
    extra = sorted(
        name for name in state
        if name not in known and not _MASK_BUFFER.fullmatch(name.removeprefix(prefix))
    )  # fmt: skip
    for found, what in ((missing, "is missing"), (extra, "is not part of GPT-2's layout")):
        if found:
            more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
            raise GlassboxError(f"not a GPT-2 state dict: {found[0]} {what}{more}")
    model = GPT(config)
    wanted = model.state_dict()
    ours = {}
    for mine, theirs, conv in names:
        tensor, shape = state[theirs], tuple(wanted[mine].shape)
        shape = shape[::-1] if conv else shape
        if tuple(tensor.shape) != shape:
            raise GlassboxError(
                f"{theirs} has shape {tuple(tensor.shape)}, but the config calls for {shape}"
            )
        ours[mine] = tensor.t() if conv else tensor
    head = state.get("lm_head.weight")
    if head is not None and not torch.equal(head, state[prefix + "wte.weight"]):
        raise GlassboxError(
            "lm_head.weight differs from the token embedding (wte.weight): glassbox ties the "
            "output layer to the embedding, so an untied lm_head cannot load"
        )
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
