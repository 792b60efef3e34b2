"""How big a model is and what it costs to run, from its config.

Parameters are counted on a model built on PyTorch's "meta" device (shapes without
memory), grouped by component, so the table always sums to what the model of
`config.arch` holds, even for GPT-2 XL. FLOPs and cache sizes follow from the shapes;
docs/inference.md derives each formula and checks them against measured timings.
"""

from __future__ import annotations

from typing import Any

import torch

from glassbox.config import ModelConfig
from glassbox.errors import GlassboxError
from glassbox.models import build_model

DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2, "int8": 1}
COMPONENTS = ("token embedding", "position embedding", "attention", "mlp", "norms", "head")


def _component(name: str) -> str:
    """The component of a parameter name of any architecture (an encoder-decoder's
    names start with encoder. or decoder.)."""
    if name.startswith(("tok_emb.", "src_emb.")):
        return "token embedding"
    if name.startswith("pos_emb.") or ".pos_emb." in name:
        return "position embedding"
    if ".attn." in name or ".cross_attn." in name:
        return "attention"
    if ".mlp." in name:
        return "mlp"
    if ".ln_" in name or "ln_f." in name:
        return "norms"
    return "head"


def _meta_model(config: ModelConfig) -> torch.nn.Module:
    """The model `config` describes, built on the meta device (shapes, no memory)."""
    with torch.device("meta"):
        return build_model(config)


def param_table(config: ModelConfig) -> dict[str, int]:
    """Parameters by component; the unembedding is tied to the token embedding, so the
    head adds none. The values sum to the model's parameter count.

    >>> param_table(ModelConfig(vocab_size=65))["attention"]
    262144
    """
    return _param_table(_meta_model(config))


def _param_table(model: torch.nn.Module) -> dict[str, int]:
    table = dict.fromkeys(COMPONENTS, 0)
    for name, param in model.named_parameters():  # each shared parameter appears once
        table[_component(name)] += param.numel()
    table["total"] = sum(table[c] for c in COMPONENTS)
    return table


def active_params(config: ModelConfig) -> int:
    """Parameters one token uses: all of them, except the routed experts of a
    mixture-of-experts MLP that the router does not pick (n_experts - moe_top_k of them
    per layer). Mixture-of-heads attention computes every head here, so all its
    parameters count as active.

    >>> dense = ModelConfig(vocab_size=65)
    >>> active_params(dense) == param_table(dense)["total"]
    True
    """
    return _active_params(config, _meta_model(config))


def _active_params(config: ModelConfig, model: torch.nn.Module) -> int:
    total = sum(p.numel() for p in model.parameters())
    if config.mlp != "moe":
        return total
    idle = config.n_experts - config.moe_top_k
    for module in model.modules():
        experts = getattr(module, "experts", None)
        if isinstance(experts, torch.nn.ModuleList) and len(experts):
            total -= idle * sum(p.numel() for p in experts[0].parameters())
    return total


def flops_per_token(config: ModelConfig, context: float) -> dict[str, float]:
    """Forward FLOPs for one token that attends to `context` keys, by part.

    Every weight of a matmul costs 2 FLOPs (a multiply and an add) per token; the
    unembedding is a matmul even though its weights are tied. Attention adds, per layer,
    2·context·C for the scores q·kᵀ and 2·context·C for the weighted sum of values: the
    only term that grows with the context. Biases, norms and softmax are left out (under
    1% for any model worth counting). For an encoder-decoder, "a token" is one source
    token through the encoder plus one target token through the decoder, whose
    cross-attention reads `context` source positions. A mixture-of-experts MLP costs its
    router and the experts a token goes to (moe_top_k routed ones and the shared ones); a
    mixture-of-heads attention costs its routers on top of every head, since every head
    is computed here and the unpicked ones are weighted by zero.
    """
    C, L, V = config.n_embd, config.n_layer, config.vocab_size
    kv = config.kv_heads * config.d_head
    attn_weights = C * (C + 2 * kv) + C * C  # qkv and output projections
    if config.attention_kind == "moh":  # the head router, the shared heads' scores, alphas
        shared = config.moh_shared_heads
        attn_weights += C * (config.n_head - shared) + (C * (shared + 2) if shared else 0)
    mlp_weights = 0 if config.attn_only else 2 * config.mlp_ratio * C * C
    if config.mlp == "moe" and not config.attn_only:  # the experts a token uses, its router
        mlp_weights = (config.moe_top_k + config.n_shared_experts) * mlp_weights
        mlp_weights += C * config.n_experts
    # encoder-decoder: encoder blocks, then decoder blocks with a cross-attention each
    stacks, attentions = (2, 3) if config.arch == "encoder-decoder" else (1, 1)
    dense = 2 * L * (stacks * (attn_weights + mlp_weights) + (attentions - stacks) * attn_weights)
    unembed = 2 * V * C
    attention = 4 * L * attentions * context * C
    return {
        "dense": dense,
        "unembedding": unembed,
        "attention": attention,
        "total": dense + unembed + attention,
    }


def kv_cache_bytes(config: ModelConfig, dtype: str = "float32") -> int:
    """Bytes the KV cache holds per token: keys and values of every layer's KV heads."""
    return 2 * config.n_layer * config.kv_heads * config.d_head * DTYPE_BYTES[dtype]


def count_report(
    config: ModelConfig, context: int | None = None, batch_size: int = 1, dtype: str = "float32"
) -> dict[str, Any]:
    """Everything `glassbox count` prints, as one dict.

    context (default block_size) is the sequence length for the full-context figures.
    Training FLOPs per token are 3x the forward (the backward pass costs about twice the
    forward), at the average context of a causal window, (context + 1) / 2.
    """
    if context is not None and context < 1:
        raise GlassboxError(f"context must be a positive number of tokens; got {context}")
    if batch_size < 1:
        raise GlassboxError(f"batch_size must be a positive integer; got {batch_size}")
    T = context or config.block_size
    model = _meta_model(config)  # built once for both counts
    params = _param_table(model)
    active = _active_params(config, model)
    embedding = params["token embedding"] + params["position embedding"]
    non_embedding = params["total"] - embedding
    active_non_embedding = active - embedding  # the 2N and 6N rules count what a token uses
    decode = flops_per_token(config, T)  # the last token of a full window
    train = flops_per_token(config, (T + 1) / 2)
    per_token = kv_cache_bytes(config, dtype)
    return {
        "config": vars(config),
        "params": params,
        "non_embedding_params": non_embedding,
        "active_params": active,  # per token: the experts a router picks, not all of them
        "flops_per_token": {
            "forward_at_context": decode["total"],
            "forward_2n_rule": 2 * active_non_embedding,
            "training_6n_rule": 6 * active_non_embedding,
            "training": 3 * train["total"],
            "forward_parts": decode,
        },
        "kv_cache": {
            "dtype": dtype,
            "kv_heads": config.kv_heads,  # resolved: n_head when n_kv_head is 0
            "bytes_per_token": per_token,
            "context": T,
            "batch_size": batch_size,
            "bytes_full_context": per_token * T * batch_size,
        },
    }


def describe_count(report: dict[str, Any]) -> str:
    """count_report's numbers as the table `glassbox count` prints."""
    params, flops, kv = report["params"], report["flops_per_token"], report["kv_cache"]
    lines = [f"{'component':<20}{'parameters':>16}{'share':>8}"]
    for name, n in params.items():
        share = f"{n / params['total']:.1%}" if name != "total" else ""
        lines.append(f"{name:<20}{n:>16,}{share:>8}")
    lines += [
        "(the head is the token embedding, transposed: tied weights count once)",
        f"non-embedding parameters N = {report['non_embedding_params']:,}",
    ]
    if report["active_params"] != params["total"]:
        lines.append(
            f"active parameters per token: {report['active_params']:,} of {params['total']:,} "
            "(the experts a router picks)"
        )
    lines += [
        "",
        f"forward FLOPs per token at context {kv['context']}: {flops['forward_at_context']:,.0f}"
        f"  (2N rule: {flops['forward_2n_rule']:,})",
    ]
    for part, value in flops["forward_parts"].items():
        if part != "total":
            lines.append(f"  {part:<18}{value:>16,.0f}")
    lines += [
        f"training FLOPs per token (3x forward, mean causal context): "
        f"{flops['training']:,.0f}  (6N rule: {flops['training_6n_rule']:,})",
        "",
        f"KV cache ({kv['dtype']}, {kv['kv_heads']} KV heads): {kv['bytes_per_token']:,} bytes "
        f"per token; {kv['bytes_full_context'] / 2**20:,.1f} MiB for {kv['context']} tokens "
        f"x batch {kv['batch_size']}",
    ]
    return "\n".join(lines)
