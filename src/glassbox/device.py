"""Choosing the device and the precision a run computes in."""

from __future__ import annotations

import contextlib
import ctypes
import sys

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


def resolve_dtype(device: str, dtype: str = "auto") -> str:
    """`auto` is bfloat16 on CUDA GPUs that support it, float32 everywhere else."""
    if dtype != "auto":
        return dtype
    cuda = device.split(":")[0] == "cuda" and torch.cuda.is_bf16_supported()
    return "bfloat16" if cuda else "float32"


def autocast(device: str, dtype: str = "auto") -> contextlib.AbstractContextManager:
    """The precision matmuls run in; weights, optimizer state and reductions stay fp32.

    `auto` is bf16 autocast on CUDA GPUs that support it and fp32 elsewhere. `bfloat16`
    may also be asked for on the CPU, where CPUs with AVX-512 BF16 or AMX run matmuls about
    twice as fast (docs/benchmarks.md); `float32` never autocasts.
    """
    kind = device.split(":")[0]
    dtype = resolve_dtype(device, dtype)
    if dtype == "float32":
        return contextlib.nullcontext()
    if kind not in ("cuda", "cpu"):
        raise GlassboxError(f"bfloat16 autocast is supported on cuda and cpu, not {device}")
    return torch.autocast(device_type=kind, dtype=torch.bfloat16)


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters, from glibc's malloc.h


def tune_cpu_allocator() -> bool:
    """Keep freed activation buffers in the heap instead of returning them to the OS.

    glibc serves allocations above its mmap threshold with fresh pages from the kernel and
    unmaps them on free, so a CPU training step that allocates the same few-MB activations
    every iteration pays page faults for all of them, every time. Raising the thresholds
    to 32 MB lets those buffers be reused: 5-8% faster steps for char-small on the CPU
    (docs/benchmarks.md). Returns whether the settings were applied (glibc only).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mmap_ok = libc.mallopt(_M_MMAP_THRESHOLD, 32 << 20)
        trim_ok = libc.mallopt(_M_TRIM_THRESHOLD, 64 << 20)
    except (OSError, AttributeError):  # not glibc (musl, for instance)
        return False
    return bool(mmap_ok and trim_ok)
