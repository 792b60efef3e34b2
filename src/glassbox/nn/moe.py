"""A mixture-of-experts MLP: a router sends each token to K of E dense MLPs.

Why: the parameters of a layer grow with the number of experts while the compute per
token grows only with K, so a model holds more weights for the same cost per token
(Shazeer et al. 2017, sparsely-gated MoE). K = 1 is the Switch Transformer (Fedus et al.
2021); K = 2 is what Mixtral uses. Two auxiliary losses keep the router healthy: Switch's
load-balancing loss, which is smallest when tokens are spread evenly over the experts, and
ST-MoE's z-loss (Zoph et al. 2022), which keeps the router's logits small and so its
softmax numerically stable.

Glossary beyond config.ModelConfig's: E experts, K = top-k, N = B*T tokens. Each expert is
exactly the dense MLP (glassbox.nn.mlp), so its hooks (`experts.{e}.hook_pre`, ...) exist
too, but they see only the rows routed to that expert: (n_e, hidden), not (B, T, hidden).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from glassbox.config import ModelConfig
from glassbox.nn.aux_losses import AuxLossSource
from glassbox.nn.hooks import HookPoint
from glassbox.nn.mlp import MLP


class MoE(AuxLossSource, nn.Module):
    """Router, E routed experts and optional shared experts; x (B, T, C) -> (B, T, C).

    Each token's output is the sum of its top-K experts' outputs, each weighted by its
    routing weight, plus the output of every shared expert (unweighted). Without
    `dropless`, in training, each expert serves at most ceil(capacity_factor * N * K / E)
    assignments per forward pass: all first choices in token order first, then all second choices,
    and so on; an assignment past its expert's capacity adds nothing (the token still
    flows on through the residual stream). After each forward pass, `last_load` (E,)
    holds the assignments each expert served and `last_dropped` the fraction dropped.

    >>> moe = MoE(ModelConfig(mlp="moe", n_experts=4, moe_top_k=2))  # doctest: +SKIP
    >>> moe(torch.randn(2, 5, 768)).shape  # doctest: +SKIP
    torch.Size([2, 5, 768])
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.n_experts = config.n_experts  # E
        self.top_k = config.moe_top_k  # K
        self.capacity_factor = None if config.dropless else config.capacity_factor
        self.balance_coef = config.moe_balance_coef
        self.z_coef = config.moe_z_coef
        # In the order the forward pass reaches them (hook_names() follows module order).
        self.router = nn.Linear(config.n_embd, config.n_experts, bias=False)
        self.hook_router_logits = HookPoint()  # (B, T, E)
        self.hook_experts = HookPoint()  # (B, T, K) int64: each token's chosen experts
        self.hook_routing_weights = HookPoint()  # (B, T, K): the weights of their outputs
        self.experts = nn.ModuleList(MLP(config) for _ in range(config.n_experts))
        self.shared = nn.ModuleList(MLP(config) for _ in range(config.n_shared_experts))
        self.last_load = torch.zeros(config.n_experts, dtype=torch.long)  # (E,)
        self.last_dropped = 0.0

    def forward(self, x: Tensor) -> Tensor:
        B, T, C = x.shape
        logits = self.hook_router_logits(self.router(x))  # (B, T, E)
        probs = logits.float().softmax(dim=-1)  # (B, T, E), float32 whatever x's dtype
        experts, weights = self.route(probs)  # (B, T, K) each
        experts = self.hook_experts(experts)
        weights = self.hook_routing_weights(weights)
        if self.training:
            self.record_losses(logits, probs, experts)
        out = self.dispatch(x.reshape(B * T, C), experts.reshape(B * T, -1),
                            weights.reshape(B * T, -1)).view(B, T, C)  # fmt: skip
        for mlp in self.shared:  # every token, unweighted
            out = out + mlp(x)
        return out  # (B, T, C)

    def route(self, probs: Tensor) -> tuple[Tensor, Tensor]:
        """Each token's top-K experts (B, T, K) int64 and their weights (B, T, K)."""
        top, experts = probs.topk(self.top_k, dim=-1)  # (B, T, K) each
        if self.top_k == 1:
            # Switch: the weight is the probability itself. Renormalizing one weight would
            # make it exactly 1, and the router would get no gradient from the main loss.
            return experts, top
        return experts, top / top.sum(dim=-1, keepdim=True)  # Mixtral: sum to 1 per token

    def capacity(self, n_assignments: int) -> int | None:
        """Assignments each expert may serve in one pass; None when dropless, and always
        None in eval mode: a cap makes one token's output depend on the other tokens of
        the batch (a later token can push out an earlier one's choice), which would break
        causality and make KV-cache decoding differ from a full pass. Switch applies its
        capacity to balance the work of a training batch; evaluation and sampling here
        serve every token."""
        if self.capacity_factor is None or not self.training:
            return None
        return math.ceil(self.capacity_factor * n_assignments / self.n_experts)

    def dispatch(self, x: Tensor, experts: Tensor, weights: Tensor) -> Tensor:
        """x (N, C), experts and weights (N, K) -> the weighted expert outputs (N, C).

        The N*K assignments are ordered by priority (choice, then token), stably sorted by
        expert and cut at each expert's capacity; the served rows are gathered once, each
        expert runs once on its slice, and one index_add puts the weighted outputs back.
        """
        N, K = experts.shape
        choice_major = experts.t().reshape(-1)  # (K*N,): first choices of all tokens, ...
        tokens = torch.arange(N, device=x.device).repeat(K)  # (K*N,) the token of each
        order = torch.argsort(choice_major, stable=True)  # (K*N,) grouped by expert
        counts = torch.bincount(choice_major, minlength=self.n_experts)  # (E,)
        served = counts
        cap = self.capacity(N * K)
        if cap is not None:
            starts = counts.cumsum(0) - counts  # (E,) where each expert's group begins
            rank = torch.arange(N * K, device=x.device) - starts[choice_major[order]]
            order = order[rank < cap]  # the first `cap` of each group, still grouped
            served = counts.clamp(max=cap)
        sizes = served.tolist()
        self.last_load = served.detach()
        self.last_dropped = 1.0 - sum(sizes) / (N * K) if N else 0.0
        flat_weights = weights.t().reshape(-1)  # (K*N,) in the order of choice_major
        token = tokens[order]  # (M,) the token of each served assignment, by expert
        rows = x.index_select(0, token)  # (M, C): one gather (its backward: one index_add)
        outputs = [self.experts[e](chunk) for e, chunk in enumerate(rows.split(sizes)) if sizes[e]]
        if not outputs:
            return torch.zeros_like(x)
        y = torch.cat(outputs) * flat_weights.index_select(0, order).to(x.dtype)[:, None]
        return torch.zeros_like(x).index_add_(0, token, y)  # (N, C): a token's K outputs add

    def record_losses(self, logits: Tensor, probs: Tensor, experts: Tensor) -> None:
        """Switch's balancing loss E * sum_e f_e * P_e (f_e: the fraction of assignments,
        before drops, sent to e; P_e: e's mean router probability), which equals 1 for
        perfectly even routing, and ST-MoE's z-loss, the mean of logsumexp(logits)^2."""
        E = self.n_experts
        if self.balance_coef:
            f = torch.bincount(experts.reshape(-1), minlength=E).float() / experts.numel()  # (E,)
            P = probs.reshape(-1, E).mean(dim=0)  # (E,)
            self.record_aux("balance_loss", self.balance_coef * E * (f * P).sum())
        if self.z_coef:
            z = logits.float().logsumexp(dim=-1)  # (B, T)
            self.record_aux("z_loss", self.z_coef * z.pow(2).mean())
