"""Nearest neighbours among unit vectors, exact and approximate, for retrieval (rag.py).

Exact search is one matrix product per block of rows and `np.argpartition` for the top
k: the vectors may be float16 and memory-mapped, and only one block is ever in memory as
float32. The approximate index is an inverted file (IVF): k-means lists, of which a query
scores only the nearest few.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch

from glassbox.errors import GlassboxError

BLOCK_ROWS = 1 << 13  # rows per matrix product: 12 MB of float32 at C = 384, so a
# float16 block is widened to float32 in cache rather than in memory


class SearchError(GlassboxError):
    """A search that cannot be done: k < 1, no vectors, queries of another width."""


def as_float32(rows: np.ndarray) -> np.ndarray:
    """rows (b, C) as float32; float16 is widened by torch, which converts vectors of
    elements at once where numpy converts one element at a time (7x faster here)."""
    if rows.dtype != np.float16:
        return np.asarray(rows, dtype=np.float32)
    with warnings.catch_warnings():  # a memory-mapped index is read-only; we only read it
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(np.ascontiguousarray(rows)).float().numpy()


def inner_products(queries: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """(Q, b) float32: queries (Q, C) float32 against rows (b, C), float32 or float16.

    float16 rows are widened and multiplied by torch. Widening them in torch and
    multiplying in numpy is 6x slower at 10^6 rows on 2 cores than either alone: the two
    libraries' thread pools take turns, and each spins while the other works."""
    if rows.dtype != np.float16:
        return queries @ np.asarray(rows, dtype=np.float32).T
    wide = torch.from_numpy(as_float32(rows))  # (b, C)
    return (torch.from_numpy(np.ascontiguousarray(queries)) @ wide.T).numpy()


def search(
    vectors: np.ndarray, queries: np.ndarray, k: int, *, block_rows: int = BLOCK_ROWS
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k by inner product (cosine, for unit vectors): scores (Q, k) float32 and
    ids (Q, k) int64, best first, ties to the lower id; k is capped at N.

    vectors (N, C) may be float16 and memory-mapped: each block of `block_rows` rows is
    read, made float32 and scored with one matrix product, and keeps its own top k.

    >>> search(np.eye(3, dtype=np.float32), np.array([[0.1, 0.9, 0.2]], np.float32), 2)
    (array([[0.9, 0.2]], dtype=float32), array([[1, 2]]))
    """
    if k < 1:
        raise SearchError(f"k must be at least 1; got {k}")
    if not len(vectors):
        raise SearchError("there are no vectors to search")
    if queries.ndim != 2 or queries.shape[1] != vectors.shape[1]:
        raise SearchError(f"queries of shape {queries.shape} do not fit vectors {vectors.shape}")
    queries = np.asarray(queries, dtype=np.float32)
    k = min(k, len(vectors))
    kept_scores, kept_ids = [], []
    for start in range(0, len(vectors), block_rows):
        scores = inner_products(queries, vectors[start : start + block_rows])  # (Q, b)
        top = _top_k(scores, k)  # (Q, min(k, b))
        kept_scores.append(np.take_along_axis(scores, top, axis=1))
        kept_ids.append(top + start)
    scores = np.concatenate(kept_scores, axis=1)  # (Q, k * blocks)
    ids = np.concatenate(kept_ids, axis=1)  # (Q, k * blocks)
    top = _top_k(scores, k)  # (Q, k)
    scores, ids = np.take_along_axis(scores, top, 1), np.take_along_axis(ids, top, 1)
    order = np.lexsort((ids, -scores), axis=1)  # best first, then lower id
    return np.take_along_axis(scores, order, 1), np.take_along_axis(ids, order, 1)


def _top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Columns (Q, k) of the k largest scores per row, in no particular order."""
    if scores.shape[1] <= k:
        return np.broadcast_to(np.arange(scores.shape[1]), scores.shape).copy()
    return np.argpartition(-scores, k - 1, axis=1)[:, :k]


@dataclass
class IVF:
    """Chunks grouped by their nearest of L centroids; a query scores only the chunks of
    the nprobe lists whose centroids are nearest it (Jégou et al.'s IVF, without the
    product quantizer: the vectors themselves are scored)."""

    centroids: np.ndarray  # (L, C) float32, unit length
    ids: np.ndarray  # (N,) int64: chunk ids, list after list
    bounds: np.ndarray  # (L + 1,) int64: list l is ids[bounds[l] : bounds[l + 1]]


def kmeans(
    x: np.ndarray, n: int, *, iters: int = 10, seed: int = 0, block_rows: int = BLOCK_ROWS
) -> np.ndarray:
    """Spherical k-means (cosine): n unit centroids (n, C) for the rows of x (N, C).

    Starts from n distinct random rows; a centroid left with no rows is moved onto a
    random row, so none is wasted.
    """
    rng = np.random.default_rng(seed)
    if not 1 <= n <= len(x):
        raise SearchError(f"k-means needs 1 to {len(x)} centroids; got {n}")
    centroids = np.array(x[np.sort(rng.choice(len(x), n, replace=False))], np.float32)  # (n, C)
    for _ in range(iters):
        nearest = _nearest(x, centroids, block_rows)  # (N,)
        sums = np.zeros_like(centroids)  # (n, C)
        for start in range(0, len(x), block_rows):
            block = as_float32(x[start : start + block_rows])  # (b, C)
            np.add.at(sums, nearest[start : start + block_rows], block)
        empty = ~sums.any(axis=1)
        sums[empty] = x[rng.choice(len(x), int(empty.sum()), replace=False)]
        centroids = sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)
    return centroids


def _nearest(x: np.ndarray, centroids: np.ndarray, block_rows: int) -> np.ndarray:
    """Index (N,) of the centroid with the largest inner product, row by row."""
    out = np.empty(len(x), dtype=np.int64)  # (N,)
    for start in range(0, len(x), block_rows):
        scores = inner_products(centroids, x[start : start + block_rows])  # (n, b)
        out[start : start + scores.shape[1]] = scores.argmax(axis=0)
    return out


def build_ivf(
    vectors: np.ndarray, lists: int, *, iters: int = 10, seed: int = 0, train_rows: int = 256
) -> IVF:
    """Cluster the vectors into `lists` lists. k-means learns from at most train_rows rows
    per list (a random sample, as faiss does), then every vector joins its nearest list."""
    rng = np.random.default_rng(seed)
    n = min(len(vectors), train_rows * lists)
    sample = np.asarray(vectors[np.sort(rng.choice(len(vectors), n, replace=False))])  # (n, C)
    centroids = kmeans(sample, lists, iters=iters, seed=seed)  # (L, C)
    nearest = _nearest(vectors, centroids, BLOCK_ROWS)  # (N,)
    ids = np.argsort(nearest, kind="stable").astype(np.int64)  # (N,)
    bounds = np.searchsorted(nearest[ids], np.arange(lists + 1)).astype(np.int64)  # (L + 1,)
    return IVF(centroids.astype(np.float32), ids, bounds)


def ivf_search(
    ivf: IVF, vectors: np.ndarray, queries: np.ndarray, k: int, nprobe: int
) -> tuple[np.ndarray, np.ndarray]:
    """Approximate top-k (scores, ids) as in `search`, from the nprobe nearest lists (more,
    when those hold fewer than k chunks)."""
    if k < 1 or nprobe < 1:
        raise SearchError(f"k and nprobe must be at least 1; got {k} and {nprobe}")
    k = min(k, len(vectors))
    sizes = np.diff(ivf.bounds)  # (L,)
    out_scores = np.empty((len(queries), k), dtype=np.float32)  # (Q, k)
    out_ids = np.empty((len(queries), k), dtype=np.int64)  # (Q, k)
    for row, query in enumerate(np.asarray(queries, dtype=np.float32)):
        order = np.argsort(-(ivf.centroids @ query), kind="stable")  # (L,) nearest list first
        enough = int(np.searchsorted(np.cumsum(sizes[order]), k)) + 1
        probed = order[: max(nprobe, enough)]
        ids = np.sort(np.concatenate([ivf.ids[ivf.bounds[i] : ivf.bounds[i + 1]] for i in probed]))
        scores, top = search(vectors[ids], query[None], k)  # (1, k) each
        out_scores[row], out_ids[row] = scores[0], ids[top[0]]
    return out_scores, out_ids
