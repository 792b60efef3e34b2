"""Muon: momentum, orthogonalized (Keller Jordan et al. 2024), for the hidden matrices.

SGD with momentum moves a weight matrix W along the averaged gradient M. For the matrices
of a transformer's blocks, M is nearly low-rank: a few directions dominate it, and the
update barely moves W along the others. Muon replaces M (m x n, SVD U S Vᵀ) by its
nearest semi-orthogonal matrix U Vᵀ, every singular value set to 1, so that each
direction the gradient has moves W by the same amount:

    M ← β·M + (1 - β)·G                   momentum (stored as a running average)
    N = (1 - β)·G + β·M                   Nesterov: the gradient, looked ahead along M
    O ≈ U Vᵀ of N                         orthogonalized by Newton-Schulz (below)
    W ← W - lr·wd·W - lr·√max(1, m/n)·O   decoupled weight decay, then the step

Computing U Vᵀ by an SVD is slow on GPUs; Muon uses an odd polynomial instead. For X
with singular values in (0, 1] (X = N / ‖N‖_F guarantees that), p(X) = aX + b(XXᵀ)X +
c(XXᵀ)²X = U p(S) Vᵀ keeps the singular vectors and maps each singular value s to a s +
b s³ + c s⁵. Five steps of the quintic with (a, b, c) = (3.4445, -4.7750, 2.0315) push
every singular value that is not tiny into about [0.7, 1.2]: not exactly 1, which the
coefficients give up for a steep slope at 0 (small singular values grow fast), and which
trains as well as the exact U Vᵀ. √max(1, m/n) keeps the update's size per entry about
the same for tall matrices as for square ones.

Muon is for the 2-D weights inside the blocks. Embeddings (each row sees the gradient of
its own tokens only), the output layer, biases and norm gains train with AdamW, so one
`Muon` optimizer here holds both kinds of parameter groups (`muon` True or False): its
state_dict is one state per parameter and a list of groups, which the checkpoints save
and restore as they do AdamW's (glassbox.checkpoint).

References: Keller Jordan, "Muon: An optimizer for hidden layers in neural networks"
(2024, kellerjordan.github.io/posts/muon); modded-nanogpt's speedrun records.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor

# The quintic's coefficients: a steep slope at 0 (a), and a curve that stays in about
# [0.7, 1.2] for inputs from about 0.1 to 1 after five steps.
NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)
NS_STEPS = 5


def orthogonalize(g: Tensor, steps: int = NS_STEPS, eps: float = 1e-7) -> Tensor:
    """An approximation of U Vᵀ for g = U S Vᵀ (..., m, n), by `steps` iterations of
    the quintic Newton-Schulz map on g / ‖g‖_F (for each matrix of a batch), in float32.

    A tall matrix is transposed first, so that X Xᵀ is the smaller of the two Gram
    matrices, and back at the end. A zero matrix stays zero.

    >>> s = torch.linalg.svdvals(orthogonalize(torch.randn(32, 96)))
    >>> bool(s.min() > 0.6 and s.max() < 1.25)
    True
    """
    a, b, c = NS_COEFFICIENTS
    x = g.float()
    single = x.dim() == 2
    x = x.reshape(-1, *x.shape[-2:])  # (batch, m, n): baddbmm takes batches of matrices
    tall = x.size(-2) > x.size(-1)
    if tall:
        x = x.mT
    x = x / (x.norm(dim=(-2, -1), keepdim=True) + eps)  # every singular value <= 1
    for _ in range(steps):
        gram = x @ x.mT  # (batch, m, m), m <= n
        # b·gram + c·gram², then a·x + that @ x: the scalings ride in the matrix
        # products (baddbmm's beta and alpha) instead of five passes over memory; 1.45x
        # faster on a CPU for char-speedrun's matrices
        poly = torch.baddbmm(gram, gram, gram, beta=b, alpha=c)
        x = torch.baddbmm(x, poly, x, beta=a)
    x = x.mT if tall else x
    return x[0] if single else x.reshape(g.shape)


class Muon(torch.optim.Optimizer):
    """Muon for the parameter groups marked `muon` (2-D matrices only), AdamW for the
    others, in one optimizer (so one state_dict, one checkpoint format).

    Group settings (defaults from the keyword arguments): lr, weight_decay (decoupled:
    each step multiplies a weight by 1 - lr·weight_decay), and for Muon's groups
    momentum, nesterov and ns_steps; for AdamW's, betas and eps.
    State: Muon's parameters keep `momentum_buffer`; AdamW's keep `step`, `exp_avg` and
    `exp_avg_sq`, as torch.optim.AdamW names them.

    >>> opt = Muon([{"params": matrices, "muon": True, "lr": 0.02},  # doctest: +SKIP
    ...             {"params": others, "lr": 1e-3}])
    """

    def __init__(
        self,
        params: Iterable[dict[str, Any]],
        *,
        lr: float = 0.02,
        weight_decay: float = 0.0,
        momentum: float = 0.95,
        nesterov: bool = True,
        ns_steps: int = NS_STEPS,
        betas: tuple[float, float] = (0.9, 0.99),
        eps: float = 1e-8,
    ) -> None:
        defaults = dict(lr=lr, weight_decay=weight_decay, muon=False, momentum=momentum,
                        nesterov=nesterov, ns_steps=ns_steps, betas=betas, eps=eps)  # fmt: skip
        super().__init__(params, defaults)
        for group in self.param_groups:
            if group["muon"] and any(p.dim() != 2 for p in group["params"]):
                raise ValueError("Muon's groups hold 2-D matrices only; give the rest to AdamW")

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            if group["muon"]:
                self._muon_step(group)
            else:
                self._adamw_step(group)
        return loss

    def _muon_step(self, group: dict[str, Any]) -> None:
        lr, beta, decay = group["lr"], group["momentum"], group["weight_decay"]
        # Matrices of one shape (the same projection in every layer) are orthogonalized
        # together, as one batch: fewer, larger matmuls.
        by_shape: dict[tuple[int, ...], list[Tensor]] = defaultdict(list)
        for p in group["params"]:
            if p.grad is not None:
                by_shape[tuple(p.shape)].append(p)
        for (rows, cols), params in by_shape.items():
            updates = []
            for p in params:
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p)
                buf = state["momentum_buffer"]
                buf.lerp_(p.grad, 1 - beta)
                updates.append(p.grad.lerp(buf, beta) if group["nesterov"] else buf)
            directions = orthogonalize(torch.stack(updates), group["ns_steps"])
            scale = math.sqrt(max(1.0, rows / cols))
            for p, direction in zip(params, directions.unbind(0), strict=True):
                if decay:
                    p.mul_(1 - lr * decay)
                p.add_(direction.to(p.dtype), alpha=-lr * scale)

    def _adamw_step(self, group: dict[str, Any]) -> None:
        """AdamW (Loshchilov and Hutter 2019), as torch.optim.AdamW computes it."""
        lr, decay, eps = group["lr"], group["weight_decay"], group["eps"]
        beta1, beta2 = group["betas"]
        for p in group["params"]:
            if p.grad is None:
                continue
            state = self.state[p]
            if "step" not in state:
                state["step"] = torch.tensor(0.0)
                state["exp_avg"] = torch.zeros_like(p)
                state["exp_avg_sq"] = torch.zeros_like(p)
            state["step"] += 1
            t = float(state["step"])
            exp_avg, exp_avg_sq, grad = state["exp_avg"], state["exp_avg_sq"], p.grad
            exp_avg.lerp_(grad, 1 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            if decay:
                p.mul_(1 - lr * decay)
            denom = (exp_avg_sq.sqrt() / math.sqrt(1 - beta2**t)).add_(eps)
            p.addcdiv_(exp_avg, denom, value=-lr / (1 - beta1**t))
