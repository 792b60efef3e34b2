"""Mixture-of-heads attention (attention_kind "moh"), after Jin et al. 2024, "MoH:
Multi-Head Attention as a Mixture of Head Attention"; the idea of routing tokens to heads
is Zhang et al. 2022, "Mixture of Attention Heads".

Multi-head attention adds every head's output with the same weight 1, for every token.
Here a router reads each token and picks which heads it uses, so heads can specialise on
the tokens that pick them, and the picked heads' outputs are summed with the router's
weights instead of equally. Heads 0..S-1 are shared (every token uses them, as the paper's
shared heads keep common knowledge); heads S..H-1 are routed, K of them per token.

Where this departs from the paper: the gates are rescaled (see `MixtureOfHeads.gates`)
so that a zero router weighs every used head by exactly 1. With every head active, a fresh
MoH is then the multi-head attention with the same weights, which is how the paper turns a
trained model into MoH (MoH-LLaMA3) and what the tests hold. And every head is computed,
an unpicked one multiplied by 0: the paper's saving needs a kernel that skips heads, and
here the maths is the point. With S = 1 the shared router's softmax is a constant 1 (the
shared head's weight then comes from the two-stage alpha alone).

Shapes: B batch, T time, C channels, H heads of D dimensions, S = moh_shared_heads,
R = H - S routed heads, K = moh_active_heads routed heads kept per token (0 in the config
means all R), N = B·T tokens.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from glassbox.config import ModelConfig
from glassbox.nn.attention import SelfAttention
from glassbox.nn.aux_losses import AuxLossSource
from glassbox.nn.hooks import HookPoint


def zero_linear(d_in: int, d_out: int) -> nn.Linear:
    """A bias-free Linear starting at zero: a router that prefers nothing yet (the
    model's init_weights keeps it at zero: `zero_init`)."""
    linear = nn.Linear(d_in, d_out, bias=False)
    nn.init.zeros_(linear.weight)
    linear.zero_init = True
    return linear


class MixtureOfHeads(AuxLossSource, SelfAttention):
    """Self-attention whose heads each token weighs by a router: S shared heads always on,
    the top K of R routed heads, the rest off. A drop-in for SelfAttention (same keys,
    values, cache and position schemes); the gates depend only on the query token.

    Hook points, besides SelfAttention's: hook_head_router_logits (B, T, R), the routed
    heads' scores, and hook_head_weights (B, T, H), every head's gate (0 for a head the
    token did not pick). hook_z sees the heads before they are weighed; hook_result and
    the output see them weighed.

    In training it records `balance_loss` (see `balance_loss`), unless moh_balance_coef is 0.

    >>> config = ModelConfig(n_embd=32, n_head=4, attention_kind="moh", moh_active_heads=2)
    >>> MixtureOfHeads(config)(torch.randn(2, 5, 32)).shape
    torch.Size([2, 5, 32])
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        C, S = config.n_embd, config.moh_shared_heads
        self.shared_heads, self.routed_heads = S, config.n_head - S
        self.active_heads = config.moh_active_heads or self.routed_heads
        self.balance_coef = config.moh_balance_coef
        self.router = zero_linear(C, self.routed_heads)  # scores of the routed heads
        # With shared heads, the paper's two-stage weighting: per token, how much of the
        # output comes from the shared heads and how much from the routed ones (softmax
        # of 2), and a softmax over the shared heads of their own scores.
        self.stage_router = zero_linear(C, 2) if S else None
        self.shared_router = zero_linear(C, S) if S else None
        # New hook points sit between hook_z and hook_result in the forward pass; hook_result
        # is registered again after them so that hook_names() keeps forward order.
        hook_result = self.hook_result
        del self.hook_result
        self.hook_head_router_logits = HookPoint()  # (B, T, R)
        self.hook_head_weights = HookPoint()  # (B, T, H)
        self.hook_result = hook_result

    def weigh_heads(self, z: Tensor, x: Tensor) -> Tensor:
        """z (B, T, H, D) times each token's gates, from x (B, T, C)."""
        logits = self.hook_head_router_logits(self.router(x))  # (B, T, R)
        gates, picks = self.gates(logits, x)  # (B, T, H), (B, T, K)
        if self.training and self.balance_coef > 0:
            self.record_aux("balance_loss", self.balance_loss(logits, picks))
        gates = self.hook_head_weights(gates)
        return z * gates.to(z.dtype).unsqueeze(-1)  # (B, T, H, D)

    def gates(self, logits: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
        """Every head's gate (B, T, H) and the routed heads each token picked (B, T, K),
        from the router's logits (B, T, R) and x (B, T, C).

        Routed head r: its probability in the softmax over all R routed heads, kept only
        if it is among the top K, times R (the MoH paper's top-K of a softmax, not
        renormalised, so that a gate still tells the router how much a head helped and the
        router learns from the main loss even with K = 1). Shared head s: softmax over the
        S shared scores, times S. With shared heads, each group is also multiplied by
        2·alpha, alpha = softmax of the two-stage scores.

        Why the factors R, S and 2: a softmax over n equal logits is 1/n, so a zero router
        would shrink every head to 1/R (and the halves to 1/2). Multiplying back makes a
        zero router give every kept head exactly 1: with all heads kept, the heads'
        outputs add up as in multi-head attention.
        """
        K, R = self.active_heads, self.routed_heads
        probs = logits.float().softmax(dim=-1)  # (B, T, R), in float32
        kept, picks = probs.topk(K, dim=-1)  # (B, T, K): the most probable heads first
        routed = probs.new_zeros(probs.shape).scatter(-1, picks, kept * R)  # (B, T, R)
        if self.shared_heads == 0:
            return routed, picks
        S = self.shared_heads
        shared = self.shared_router(x).float().softmax(dim=-1) * S  # (B, T, S), sum S
        alpha = self.stage_router(x).float().softmax(dim=-1) * 2  # (B, T, 2), sum 2
        gates = torch.cat([shared * alpha[..., :1], routed * alpha[..., 1:]], dim=-1)
        return gates, picks  # (B, T, H): shared heads first, as they are numbered

    def balance_loss(self, logits: Tensor, picks: Tensor) -> Tensor:
        """The Switch Transformer's load-balancing loss over the routed heads:
        coef · R · Σ_r f_r · P_r, with f_r the fraction of the N·K picks that chose head r
        and P_r the mean probability (softmax over R) the router gave head r.

        It is smallest when picks and probabilities are spread evenly, so no head is left
        untrained; f counts picks (no gradient), P carries the gradient to the router.
        With uniform probabilities (P_r = 1/R) it equals coef whatever the picks.
        """
        R = self.routed_heads
        probs = logits.float().softmax(dim=-1).reshape(-1, R)  # (N, R)
        picked = F.one_hot(picks.reshape(-1), R).sum(dim=0)  # (R,): picks of each head
        f = picked.float() / picks.numel()  # (R,), sums to 1
        return self.balance_coef * R * (f * probs.mean(dim=0)).sum()
