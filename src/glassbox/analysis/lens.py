"""Reading the residual stream as logits: the logit lens and direct logit attribution.

Both rest on one fact about a pre-norm model: the final residual stream is a sum, the
embeddings plus what every attention head and MLP wrote into it, and the logits are that
sum through the final norm and the unembedding.

- The logit lens (nostalgebraist, 2020) reads the partial sums, the stream before each
  block, through the same final norm and unembedding, to see when the prediction forms.
- Direct logit attribution splits one final logit into one term per summand. The norm is
  not linear, but with its per-token scale frozen at the value the forward pass computed
  it is, so the terms add up to the logit exactly.

Both work on models with one stack of blocks and tied unembedding (GPT and Encoder). An
EncoderDecoder is refused: its logits also depend on a source sequence and cross-attention,
which these functions' one-`tokens` signature cannot express.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from glassbox.analysis.attention_page import visible_token
from glassbox.errors import GlassboxError
from glassbox.models import evaluating
from glassbox.models.base import StackModel
from glassbox.nn.norms import LayerNorm, RMSNorm
from glassbox.tokenizers.base import Tokenizer
from glassbox.tokenizers.display import pieces


def check_single_stack(model: nn.Module, what: str) -> None:
    """Raise unless `model` is one stack of blocks with a tied unembedding (GPT, Encoder)."""
    if not isinstance(model, StackModel):
        name = type(model).__name__
        raise GlassboxError(
            f"{what} works on a GPT or an Encoder (one stack of blocks); got {name}"
        )


def check_head(stack: nn.Module, layer: int, head: int) -> None:
    """A one-line error unless `stack` (a GPT, an Encoder, or one stack of an
    encoder-decoder) has this layer and this head."""
    n = len(stack.blocks)
    if not 0 <= layer < n:
        raise GlassboxError(f"layer {layer} is out of range: the model has {n} layers (0-{n - 1})")
    n = stack.blocks[layer].attn.n_head
    if not 0 <= head < n:
        raise GlassboxError(f"head {head} is out of range: layer {layer} has {n} heads (0-{n - 1})")


def as_batch(tokens: Tensor, model: nn.Module) -> Tensor:
    """tokens (T,) or (B, T) as a (B, T) batch on the model's device."""
    if tokens.dim() == 1:
        tokens = tokens.unsqueeze(0)
    if tokens.dim() != 2:
        raise GlassboxError(f"tokens must be (B, T) or (T,); got shape {tuple(tokens.shape)}")
    return tokens.to(model.tok_emb.weight.device)


def _index(value: int, size: int, what: str) -> int:
    if not -size <= value < size:
        raise GlassboxError(f"{what} {value} is out of range for size {size}")
    return value % size


def logit_lens(
    model: nn.Module, tokens: Tensor, *, top_k: int = 5, return_logits: bool = False
) -> dict[str, Any]:
    """The model's prediction read off the residual stream before each block and at the end.

    Each readout point goes through the final norm and the unembedding, as the last one
    does in the forward pass. Returns:

    - "layers": names of the L + 1 readout points: "embed" (the stream entering block 0:
      token plus position embeddings), "blocks.l" (the stream after block l, which
      enters block l + 1) for l < L - 1, and "final" (after the last block: the model's
      own logits, exactly);
    - "hook_names": the hook point each row reads;
    - "top_ids" (L + 1, B, T, k) and "top_probs" (L + 1, B, T, k): the k likeliest next
      tokens at every position, likeliest first;
    - "logits" (L + 1, B, T, V), only with return_logits.

    With post-norm blocks the final norm is an identity and each block's output is
    already normalized, so rows after "embed" read the stream as it is.

    >>> lens = logit_lens(model, tokenizer.encode("First Citizen"), top_k=3)
    >>> lens["top_ids"][-1, 0, -1]  # what the model itself predicts after the prompt
    """
    check_single_stack(model, "the logit lens")
    if top_k < 1 or top_k > model.config.vocab_size:
        raise GlassboxError(f"top_k must be in 1..{model.config.vocab_size}; got {top_k}")
    tokens = as_batch(tokens, model)
    L = len(model.blocks)
    names = [f"blocks.{l}.hook_resid_pre" for l in range(L)] + [f"blocks.{L - 1}.hook_resid_post"]
    with evaluating(model), torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter=names)
        # One readout at a time, at the forward pass's own shapes, so that the last row is
        # bit-for-bit the model's logits rather than equal up to float rounding.
        logits = torch.stack([model.unembed(model.ln_f(cache[n])) for n in names])
    probs = logits.float().softmax(dim=-1)  # (L + 1, B, T, V)
    top_probs, top_ids = probs.topk(top_k, dim=-1)  # (L + 1, B, T, k) each
    result = {
        "layers": ["embed"] + [f"blocks.{l}" for l in range(L - 1)] + ["final"],
        "hook_names": names,
        "top_ids": top_ids,
        "top_probs": top_probs,
    }
    if return_logits:
        result["logits"] = logits
    return result


def logit_lens_table(
    result: dict[str, Any], tokenizer: Tokenizer, position: int, *, batch_index: int = 0
) -> list[list[str]]:
    """Rows of strings for printing one position of a logit lens: a header, then one row per
    readout point with its top-k tokens (whitespace made visible) and probabilities.

    >>> logit_lens_table(logit_lens(model, ids, top_k=2), tokenizer, position=-1)
    [['layer', 'top 1', 'top 2'], ['embed', 'e 0.31', '␣ 0.12'], ..., ['final', ...]]
    """
    top_ids, top_probs = result["top_ids"], result["top_probs"]  # (L + 1, B, T, k)
    b = _index(batch_index, top_ids.size(1), "batch_index")
    t = _index(position, top_ids.size(2), "position")
    k = top_ids.size(-1)
    rows = [["layer"] + [f"top {i + 1}" for i in range(k)]]
    for layer, ids, probs in zip(
        result["layers"], top_ids[:, b, t], top_probs[:, b, t], strict=True
    ):
        shown = [visible_token(p) for p in pieces(tokenizer, ids.tolist())]
        rows.append([layer] + [f"{s} {p:.2f}" for s, p in zip(shown, probs.tolist(), strict=True)])
    return rows


def direct_logit_attribution(
    model: nn.Module, tokens: Tensor, target: int, *, position: int = -1, batch_index: int = 0
) -> dict[str, float]:
    """The logit of `target` at one position, split into what each component wrote.

    Terms, in forward order: "embed", "pos_embed" (learned or sinusoidal positions only),
    then per layer "blocks.{l}.attn.head{h}" for every head, "blocks.{l}.attn.bias" (the
    output projection's bias, with bias=True) and "blocks.{l}.mlp" (its whole output, bias
    included; absent with attn_only), and last "ln_f.bias" (with bias=True).

    The final norm divides each token's stream by a scale computed from the stream itself,
    which is what makes it nonlinear. Here that scale is frozen at the value the actual
    forward pass computed (ln_f.hook_scale); given the scale, LayerNorm is linear (the
    centring subtracts a mean, which is linear too) and RMSNorm is a plain product, so
    each component's term is its vector through the frozen norm and the unembedding, and
    the terms sum to the model's logit exactly, up to float rounding.

    Needs pre-norm with LayerNorm or RMSNorm: with post-norm every block ends in a norm
    and the final stream is no longer a sum of the components' outputs.

    >>> parts = direct_logit_attribution(model, ids, target=tokenizer.encode("e")[0])
    >>> sorted(parts.items(), key=lambda kv: -abs(kv[1]))[:3]  # the biggest contributors
    """
    check_single_stack(model, "direct logit attribution")
    config = model.config
    if config.norm_placement != "pre":
        raise GlassboxError(
            "direct logit attribution needs a pre-norm model: with norm_placement='post' "
            "every block ends in a norm, so the final stream is not a sum of components"
        )
    ln_f = model.ln_f
    if not isinstance(ln_f, (LayerNorm, RMSNorm)):
        raise GlassboxError(
            f"direct logit attribution needs a per-token final norm (layernorm or "
            f"rmsnorm); this model uses {config.norm}"
        )
    tokens = as_batch(tokens, model)
    b = _index(batch_index, tokens.size(0), "batch_index")
    t = _index(position, tokens.size(1), "position")
    if not 0 <= target < config.vocab_size:
        raise GlassboxError(
            f"target token {target} is out of range: vocab_size is {config.vocab_size}"
        )

    def wanted(name: str) -> bool:
        return name in ("hook_embed", "hook_pos_embed", "ln_f.hook_scale") or name.endswith(
            ("attn.hook_result", "hook_mlp_out")
        )

    with evaluating(model), torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter=wanted)

    # Every term is a vector (C,) in the final stream, read through the frozen norm and the
    # unembedding: (x - mean x) · (scale · g · u), or x · (scale · g · u) for RMSNorm.
    # float64, so that the sum of many terms adds no rounding of its own.
    u = model.W_U[:, target].detach().double()  # (C,) the target's unembedding column
    scale = cache["ln_f.hook_scale"][b, t, 0].double()  # the forward pass's own 1/σ
    direction = scale * ln_f.weight.detach().double() * u  # (C,)
    centre = isinstance(ln_f, LayerNorm)

    def term(x: Tensor) -> Tensor:  # x (..., C) -> (...): one number per leading index
        x = x.double()
        if centre:
            x = x - x.mean(dim=-1, keepdim=True)
        return x @ direction

    parts: dict[str, float] = {"embed": float(term(cache["hook_embed"][b, t]))}
    if "hook_pos_embed" in cache:
        pos = cache["hook_pos_embed"]  # (T, C), or (B, T, C) with padding
        parts["pos_embed"] = float(term(pos[t] if pos.dim() == 2 else pos[b, t]))
    for l, block in enumerate(model.blocks):
        heads = term(cache[f"blocks.{l}.attn.hook_result"][b, t])  # (H,) from (H, C)
        for h, value in enumerate(heads.tolist()):
            parts[f"blocks.{l}.attn.head{h}"] = value
        if block.attn.proj.bias is not None:
            parts[f"blocks.{l}.attn.bias"] = float(term(block.attn.proj.bias.detach()))
        if block.mlp is not None:
            parts[f"blocks.{l}.mlp"] = float(term(cache[f"blocks.{l}.hook_mlp_out"][b, t]))
    if ln_f.bias is not None:  # LayerNorm(bias=True); RMSNorm has none
        parts["ln_f.bias"] = float(ln_f.bias.detach().double() @ u)  # added after the scale
    return parts


def logit_diff(logits: Tensor, correct: int, wrong: int, position: int = -1) -> Tensor:
    """logit[correct] - logit[wrong] at one position of logits (B, T, V), mean over the
    batch: the usual metric for patching, since it ignores what shifts every logit alike.

    >>> logit_diff(model(ids), correct=tok["Mary"], wrong=tok["John"])
    """
    at = logits[:, position]  # (B, V)
    return (at[:, correct] - at[:, wrong]).mean()
