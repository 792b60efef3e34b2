"""Helpers shared by several test modules (importable because pytest puts this folder,
where the root conftest.py lives, on sys.path)."""

import torch
from torch import nn


def scramble(model: nn.Module, std: float = 0.3, seed: int = 0) -> nn.Module:
    """Every parameter redrawn from N(0, std²), norm gains from N(1, std²): far enough
    from GPT-2's small init that attention patterns, norm scales and greedy tokens differ
    visibly between positions, so an equality check cannot pass by accident."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            gain = name.endswith("weight") and p.dim() == 1
            p.copy_(torch.randn(p.shape, generator=generator) * std + (1.0 if gain else 0.0))
    return model


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (for ranks started by hand)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
