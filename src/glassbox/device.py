"""Choosing the device and the precision a run computes in."""

from __future__ import annotations

import contextlib

import torch

from glassbox.errors import GlassboxError


def resolve_device(spec: str = "auto") -> str:
    """`auto` picks cuda, then mps, then cpu; an explicit device must exist."""
    if spec == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    kind = spec.split(":")[0]
    if kind == "cuda" and not torch.cuda.is_available():
        raise GlassboxError(f"device {spec!r} requested but CUDA is not available here")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise GlassboxError(f"device {spec!r} requested but MPS is not available here")
    if kind not in ("cpu", "cuda", "mps"):
        raise GlassboxError(f"unknown device {spec!r}; use auto, cpu, cuda, cuda:N or mps")
    return spec


def autocast(device: str) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA GPUs that support it; full fp32 elsewhere."""
    if device.startswith("cuda") and torch.cuda.is_bf16_supported():
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
