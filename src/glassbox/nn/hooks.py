"""Hook points: named places in the forward pass where a function can read or replace an
activation, and the model methods that use them (run_with_cache, run_with_hooks).

Every model is built with its hook points in place, so nothing has to be converted to
be inspected. A HookPoint is an identity until a function is attached; it skips
nn.Module's call machinery, so a forward pass with no hooks attached costs one attribute
check per hook point (benchmarks/hooks_overhead.py measures it). The names are the
dotted module paths, listed in execution order by `hook_names()` and documented in
docs/interpretability.md.

A hook function is called as fn(activation, hook) and returns None (to only read) or a
tensor of the same shape that replaces the activation from there on.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from glassbox.errors import GlassboxError

HookFn = Callable[[Tensor, "HookPoint"], Tensor | None]
NamesFilter = Iterable[str] | Callable[[str], bool] | str | None


class HookError(GlassboxError, KeyError):
    """An unknown hook name, or a request that does not fit this model."""

    def __str__(self) -> str:  # KeyError would print the message with quotes
        return str(self.args[0])


class HookPoint(nn.Module):
    """An identity on the forward pass that attached functions can read or replace."""

    def __init__(self) -> None:
        super().__init__()
        self.name = ""  # the dotted path, set by the model once built
        self.fns: list[HookFn] = []

    def __call__(self, x: Tensor) -> Tensor:
        if not self.fns:  # the common case: no hooks, no nn.Module call overhead
            return x
        for fn in list(self.fns):
            out = fn(x, self)
            if out is not None:
                if out.shape != x.shape:
                    raise HookError(
                        f"hook on {self.name} returned shape {tuple(out.shape)}; "
                        f"the activation has shape {tuple(x.shape)}"
                    )
                x = out
        return x

    def extra_repr(self) -> str:
        return f"{len(self.fns)} hooks" if self.fns else ""


class ActivationCache(dict):
    """Activations by hook name, as run_with_cache returns them (detached tensors)."""

    def __getitem__(self, name: str) -> Tensor:
        try:
            return super().__getitem__(name)
        except KeyError:
            raise HookError(_unknown(name, list(self), "in this cache")) from None


def _unknown(name: str, names: list[str], where: str) -> str:
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return f"no hook point named {name!r} {where}{hint}"


class HookedModel:
    """What every glassbox model offers for looking inside (mixed into the model classes,
    which call `_name_hook_points` at the end of __init__)."""

    def _name_hook_points(self) -> None:
        self._hook_points = {
            name: module for name, module in self.named_modules() if isinstance(module, HookPoint)
        }
        for name, point in self.named_modules():
            if isinstance(point, HookPoint):
                point.name = name
        # nn.Module keeps submodules in _modules, so every `self.ln_1` or `self.hook_x`
        # in a forward pass goes through its slow __getattr__: a tenth of a small model's
        # forward time, by profile. A second reference in the owner's __dict__ is found
        # directly. (nn.Module.__setattr__ drops that entry if the submodule is replaced.)
        for module in self.modules():
            module.__dict__.update(module._modules)

    def hook_names(self) -> list[str]:
        """Every hook point of this model, in the order the forward pass reaches them."""
        return list(self._hook_points)

    def hook_point(self, name: str) -> HookPoint:
        if name not in self._hook_points:
            raise HookError(_unknown(name, self.hook_names(), f"in this {self.config.arch}"))
        return self._hook_points[name]

    def select_hooks(self, names_filter: NamesFilter = None) -> list[str]:
        """The hook names a filter picks: None (all), a name, a list of names (each must
        exist), or a predicate on the name."""
        if names_filter is None:
            return self.hook_names()
        if callable(names_filter):
            return [n for n in self.hook_names() if names_filter(n)]
        names = [names_filter] if isinstance(names_filter, str) else list(names_filter)
        for name in names:
            self.hook_point(name)  # raises for a name this architecture does not have
        return names

    def add_hook(self, name: str, fn: HookFn) -> Callable[[], None]:
        """Attach fn to hook point `name` until the returned function is called."""
        point = self.hook_point(name)
        point.fns.append(fn)
        return lambda: point.fns.remove(fn) if fn in point.fns else None

    def reset_hooks(self) -> None:
        """Remove every hook from every hook point."""
        for point in self._hook_points.values():
            point.fns.clear()

    @contextmanager
    def hooks(self, fwd_hooks: Iterable[tuple[str, HookFn]]) -> Iterator[Any]:
        """Attach (name, fn) pairs for the body of a `with` block; they are removed on the
        way out, also when the body or a hook raises."""
        removers = []
        try:
            for name, fn in fwd_hooks:
                removers.append(self.add_hook(name, fn))
            yield self
        finally:
            for remove in removers:
                remove()

    def check_ids(self, *inputs: Any) -> None:
        """Token-id tensors among inputs must lie in the vocabulary (a clear error instead
        of an embedding's index error)."""
        V = self.config.vocab_size
        for t in inputs:
            if isinstance(t, Tensor) and not t.is_floating_point() and t.numel():
                low, high = int(t.min()), int(t.max())
                if low < 0 or high >= V:
                    raise HookError(
                        f"token ids must be in [0, {V}) for this model; got ids from {low} "
                        f"to {high} (encoded with another tokenizer?)"
                    )

    def run_with_hooks(
        self, *args: Any, fwd_hooks: Iterable[tuple[str, HookFn]] = (), **kwargs: Any
    ) -> Tensor:
        """The model's forward pass with temporary hooks, e.g. to ablate or patch."""
        self.check_ids(*args)
        with self.hooks(fwd_hooks):
            return self(*args, **kwargs)

    def run_with_cache(
        self,
        *args: Any,
        names_filter: NamesFilter = None,
        device: str | torch.device | None = None,
        **kwargs: Any,
    ) -> tuple[Tensor, ActivationCache]:
        """The model's output and a cache of the activations names_filter selects,
        detached (and moved to `device` if given). Runs without autograd."""
        cache = ActivationCache()

        def save(x: Tensor, hook: HookPoint) -> None:
            x = x.detach()
            cache[hook.name] = x.to(device) if device is not None else x

        self.check_ids(*args)
        names = self.select_hooks(names_filter)
        with torch.no_grad(), self.hooks((name, save) for name in names):
            out = self(*args, **kwargs)
        return out, cache
