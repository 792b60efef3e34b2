"""Auxiliary losses: terms a sublayer adds to the training loss, such as a mixture of
experts' load-balancing loss or a router's z-loss.

They travel with the forward pass rather than through its return value, so that every
model keeps returning logits and a sublayer deep in a block needs no new plumbing: the
sublayer records its losses on itself while it runs, each Stack clears its sublayers'
records when a forward pass through it starts, and the model sums what the latest pass
recorded (`model.aux_loss()`, glassbox.models.base). A model without such sublayers
records nothing and pays nothing.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn


class AuxLossSource(nn.Module):
    """Base (or mixin, listed first) for a sublayer whose forward pass adds to the loss.

    In forward, call `self.record_aux(name, value)` with a scalar tensor, already scaled
    by its coefficient and attached to the graph; the model reports it as
    "{module path}.{name}" and adds it into `aux_loss()`.

    >>> class Router(AuxLossSource):
    ...     def forward(self, x):
    ...         self.record_aux("z_loss", x.logsumexp(-1).pow(2).mean())
    ...         return x
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.aux_losses: dict[str, Tensor] = {}

    def record_aux(self, name: str, value: Tensor) -> None:
        self.aux_losses[name] = value


def aux_sources(module: nn.Module) -> list[tuple[str, AuxLossSource]]:
    """(path, module) of every AuxLossSource inside `module`, in module order."""
    return [(name, m) for name, m in module.named_modules() if isinstance(m, AuxLossSource)]
