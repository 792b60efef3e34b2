"""Activations of a trained run at one hook point, collected into a file on disk.

Why a file: a sparse autoencoder trains for many passes over millions of activation
vectors, and running the transformer again for every pass would cost far more than the
autoencoder itself. So the run's model reads its own corpus once, and the vectors at one
hook point are streamed, batch by batch, into a `.npy` file opened as a memory map (never
all in memory, so the file may be larger than RAM). Training then draws batches from it.

acts.npy        (N, d) float32, one row per token, in the standard .npy format
acts.npy.json   the sidecar: the run (its path and a fingerprint of its checkpoint), the
                hook, d, N, the block size and the start of each window in the run's
                train split, so that row r is token r % T of window r // T, and its
                context can be read back from the run's corpus

The windows are evenly spaced over the train split, the same for every call with the
same sizes, so two collections of one run and hook hold the same rows. A file collected
from another run, another checkpoint or another hook than the one asked for is refused,
naming both, since an autoencoder trained on it would describe a different model.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from glassbox.errors import GlassboxError
from glassbox.jsonfiles import read_json
from glassbox.runs import checkpoint_path, load_model, load_tokens

FORMAT = "glassbox-activations"
VERSION = 1
FINGERPRINT_BYTES = 1 << 20  # the checkpoint's first MiB is hashed, with its size


def sidecar_path(path: Path | str) -> Path:
    return Path(f"{path}.json")


def run_fingerprint(run_dir: Path | str, which: str = "best") -> str:
    """A short id of the checkpoint's contents: SHA-256 of its size and first MiB.

    Any retraining rewrites the file's header (step, metrics) and the first weights, so
    the id changes; copying or moving the run does not change it, as a mtime would."""
    path = checkpoint_path(run_dir, which)
    digest = hashlib.sha256(str(path.stat().st_size).encode())
    with open(path, "rb") as f:
        digest.update(f.read(FINGERPRINT_BYTES))
    return digest.hexdigest()[:16]


def check_hook(model: nn.Module, hook: str, run_dir: Path | str) -> None:
    """One line naming the nearest hook names (or all of them) if `hook` is not one."""
    names = model.hook_names()
    if hook in names:
        return
    close = difflib.get_close_matches(hook, names, n=4, cutoff=0.6)
    listed = f"nearest: {', '.join(close)}" if close else f"valid names: {', '.join(names)}"
    raise GlassboxError(f"{run_dir} has no hook point {hook!r}; {listed}")


def check_decoder(model: nn.Module, run_dir: Path | str) -> None:
    """Loss recovered is a next-token loss, so only decoder runs can be scored."""
    if model.config.arch != "decoder":
        raise GlassboxError(
            f"{run_dir} is not a decoder run (arch {model.config.arch}); sparse autoencoders "
            "here read decoder runs, whose next-token loss measures what a reconstruction keeps"
        )


def hook_width(model: nn.Module, hook: str) -> int:
    """d, the width of the vector `hook` holds per token, read from one short forward
    pass; one line if the activation is not one vector per token (B, T, d)."""
    x = torch.zeros(1, 2, dtype=torch.long, device=model.tok_emb.weight.device)  # (1, 2)
    act = model.run_with_cache(x, names_filter=hook)[1][hook]
    if act.dim() != 3 or act.shape[:2] != x.shape:
        raise GlassboxError(
            f"{hook} has shape (B, T, ...) = {tuple(act.shape)} for (B, T) = (1, 2); an "
            "autoencoder reads one vector per token, (B, T, d): use a residual stream, "
            "attention output or MLP hook"
        )
    return act.shape[-1]


def window_starts(n_split: int, block_size: int, n_windows: int) -> np.ndarray:
    """Starts of n_windows windows of block_size + 1 tokens, evenly spaced over a split
    of n_split tokens and overlapping only when the split is too short for them.

    >>> window_starts(1000, 64, 3).tolist()
    [0, 468, 935]
    """
    last = n_split - block_size - 1  # the latest start whose window (x and y) fits
    if last < 0:
        raise GlassboxError(
            f"the train split has {n_split} tokens; a window needs {block_size + 1}"
        )
    return np.linspace(0, last, n_windows).round().astype(np.int64)  # (n_windows,)


@dataclass
class Activations:
    """An opened activation file: `rows` (N, d) float32 memmap, and its sidecar."""

    rows: np.ndarray
    meta: dict[str, Any]
    path: Path

    def contexts(self, tokens: np.ndarray, rows: np.ndarray, before: int, after: int) -> list:
        """For each row: (token ids of its window from `before` tokens back to `after`
        ahead, the row's index in that list, the row number of the list's first token).
        `tokens` is the run's train split."""
        T = self.meta["block_size"]
        starts = self.meta["starts"]
        out = []
        for row in rows.tolist():
            window, pos = divmod(row, T)
            lo, hi = max(0, pos - before), min(T, pos + after + 1)
            ids = tokens[starts[window] + lo : starts[window] + hi].astype(np.int64).tolist()
            out.append((ids, pos - lo, row - (pos - lo)))
        return out


def collect(
    run_dir: Path | str,
    hook: str,
    *,
    n_tokens: int,
    out_path: Path | str,
    batch_size: int = 32,
    which: str = "best",
    device: str = "cpu",
) -> Activations:
    """Run the run's model over n_tokens tokens of its train split, cache only `hook`,
    and stream the rows (n_tokens, d) float32 into out_path, with the sidecar beside it.

    The rows are whole windows of the model's block size (the last one cut short to make
    n_tokens), evenly spaced over the split. The file is written under a temporary name
    and renamed when complete, so a killed collection never leaves a file that looks whole.

    >>> acts = collect("runs/default", "blocks.1.hook_resid_post", n_tokens=200_000,
    ...                out_path="acts.npy")  # doctest: +SKIP
    >>> acts.rows.shape  # doctest: +SKIP
    (200000, 128)
    """
    if n_tokens < 1 or batch_size < 1:
        raise GlassboxError(f"n_tokens and batch_size must be >= 1; got {n_tokens}, {batch_size}")
    model, _ = load_model(run_dir, which, device)
    check_decoder(model, run_dir)
    check_hook(model, hook, run_dir)
    d = hook_width(model, hook)
    T = model.config.block_size
    split = load_tokens(run_dir, model.config.vocab_size, T).splits["train"]
    if n_tokens > len(split):
        raise GlassboxError(
            f"{run_dir}'s train split has {len(split)} tokens; ask for at most that many"
        )
    starts = window_starts(len(split), T, math.ceil(n_tokens / T))  # (n_windows,)
    out_path = Path(out_path)
    tmp = out_path.with_name(f".{out_path.name}.tmp")
    rows = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n_tokens, d))
    try:
        written = 0
        for first in range(0, len(starts), batch_size):
            index = starts[first : first + batch_size, None] + np.arange(T)  # (b, T)
            x = torch.from_numpy(split[index].astype(np.int64)).to(device)  # (b, T)
            act = model.run_with_cache(x, names_filter=hook)[1][hook]  # (b, T, d)
            flat = act.reshape(-1, d)[: n_tokens - written].float().cpu().numpy()  # (b·T, d)
            rows[written : written + len(flat)] = flat
            written += len(flat)
        rows.flush()
    except BaseException:  # an error or ^C: no half-written file stays behind
        del rows
        tmp.unlink(missing_ok=True)
        raise
    del rows  # closes the map before the rename
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "run": str(Path(run_dir).resolve()),
        "checkpoint": which,
        "fingerprint": run_fingerprint(run_dir, which),
        "hook": hook,
        "d": d,
        "n_tokens": n_tokens,
        "block_size": T,
        "split": "train",
        "starts": starts.tolist(),
    }
    sidecar_path(out_path).write_text(json.dumps(meta) + "\n", encoding="utf-8")
    os.replace(tmp, out_path)
    return open_activations(out_path, run_dir, hook, which)


def open_activations(
    path: Path | str, run_dir: Path | str, hook: str, which: str = "best"
) -> Activations:
    """The activation file at path, memory-mapped read-only, after checking that its
    sidecar names this run (same checkpoint contents) and this hook."""
    path = Path(path)
    side = sidecar_path(path)
    if not path.is_file() or not side.is_file():
        missing = path if not path.is_file() else side
        raise GlassboxError(f"{missing} is missing: collect the activations again")
    meta = read_json(side, "activation sidecar (collect the activations again)")
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise GlassboxError(f"{side} is not a version-{VERSION} activation sidecar")
    # The checkpoint's contents and the hook decide; the path may differ (a moved run).
    wanted = (str(Path(run_dir).resolve()), run_fingerprint(run_dir, which), hook)
    held = (meta["run"], meta["fingerprint"], meta["hook"])
    if held[1:] != wanted[1:]:
        raise GlassboxError(
            f"{path} holds {held[2]} of {held[0]} (checkpoint {held[1]}), not the "
            f"{wanted[2]} of {wanted[0]} (checkpoint {wanted[1]}) asked for; collect again"
        )
    rows = np.load(path, mmap_mode="r")  # (N, d)
    if rows.shape != (meta["n_tokens"], meta["d"]) or rows.dtype != np.float32:
        raise GlassboxError(
            f"{path} holds {rows.dtype} {rows.shape}, not the float32 "
            f"({meta['n_tokens']}, {meta['d']}) its sidecar says: the file is corrupt"
        )
    return Activations(rows, meta, path)
