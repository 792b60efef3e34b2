"""Attention heads read as matrices: the QK and OV circuits of Elhage et al. (2021), "A
Mathematical Framework for Transformer Circuits", and the scores built from them.

A head does two separate things. Its QK circuit W_QK = W_Q W_Kᵀ (C, C) decides where it
looks: the score of query x_t for key x_s is x_t W_QK x_sᵀ (before the 1/√D). Its OV
circuit W_OV = W_V W_O (C, C) decides what it moves: a key position s it attends to adds
x_s W_OV to the query's residual stream. Multiplied by the token embedding and
unembedding they become V x V "full" circuits: which token attends to which, and which
token's logit goes up when a head attends to a token.

Convention: row vectors times matrices, as in the code (q = x @ W_Q); the paper writes
column vectors, so its products appear here transposed and in reverse order.

Each circuit has rank <= D but is C x C (or V x V), so it stays factored
(`FactoredMatrix`): norms, eigenvalues and singular values come from r x r products and
the big matrix is only built when `.full()` asks for it. `circuit_spectra` gives every
head's singular values and rank, `plot_spectra` the cliff after the D-th value.

What is left out, and why: the per-token scale of the norm before attention (a scalar
per position, which changes a circuit's size at that position but not its shape),
LayerNorm's mean-centering, all biases, rotary rotations (the QK circuit is the content
part, as if query and key sat at the same position), relative-position vectors and
ALiBi's penalty. Only self-attention is analysed, not an encoder-decoder's
cross-attention.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from glassbox.analysis.lens import check_head
from glassbox.errors import GlassboxError
from glassbox.models import EncoderDecoder
from glassbox.nn.norms import BatchNorm
from glassbox.nn.stack import Stack
from glassbox.plot import save_figure


class FactoredMatrix:
    """The product A @ B of A (..., m, r) and B (..., r, n), kept as its two factors.

    For r much smaller than m and n this stores (m + n)·r numbers instead of m·n, and
    every method below works on the r x r products AᵀA, BBᵀ and BA. Leading dimensions
    broadcast, so a stack of H heads' circuits is one FactoredMatrix.

    >>> fm = FactoredMatrix(torch.ones(3, 1), torch.ones(1, 3))  # the all-ones 3 x 3
    >>> fm.shape, fm.rank, round(fm.norm().item(), 4), fm.eigenvalues()
    (torch.Size([3, 3]), 1, 3.0, tensor([3.+0.j]))
    """

    def __init__(self, A: Tensor, B: Tensor) -> None:
        if A.dim() < 2 or B.dim() < 2:
            raise GlassboxError(
                f"FactoredMatrix needs two matrices; got shapes {tuple(A.shape)} and "
                f"{tuple(B.shape)}"
            )
        if A.size(-1) != B.size(-2):
            raise GlassboxError(
                f"FactoredMatrix factors do not chain: A is {tuple(A.shape)} and B is "
                f"{tuple(B.shape)}; A's last dimension must equal B's second to last"
            )
        self.A, self.B = A, B

    @property
    def shape(self) -> torch.Size:
        batch = torch.broadcast_shapes(self.A.shape[:-2], self.B.shape[:-2])
        return torch.Size((*batch, self.A.size(-2), self.B.size(-1)))

    @property
    def rank(self) -> int:
        """The inner dimension r: an upper bound on the rank of A @ B."""
        return self.A.size(-1)

    def full(self) -> Tensor:
        """The materialized product (..., m, n)."""
        return self.A @ self.B

    @property
    def T(self) -> FactoredMatrix:
        """(AB)ᵀ = Bᵀ Aᵀ, still factored."""
        return FactoredMatrix(self.B.mT, self.A.mT)

    def __matmul__(self, other: Tensor | FactoredMatrix) -> FactoredMatrix | Tensor:
        """(AB) @ other. A matrix or a FactoredMatrix gives a FactoredMatrix of rank at
        most min(r, r'); a vector gives a plain vector."""
        if isinstance(other, FactoredMatrix):
            middle = self.B @ other.A  # (..., r, r'): the only product of the inner sizes
            if self.rank <= other.rank:
                return FactoredMatrix(self.A, middle @ other.B)  # (m, r) (r, n')
            return FactoredMatrix(self.A @ middle, other.B)  # (m, r') (r', n')
        if other.dim() == 1:
            return self.A @ (self.B @ other)  # (m,)
        return FactoredMatrix(self.A, self.B @ other)

    def __rmatmul__(self, other: Tensor) -> FactoredMatrix | Tensor:
        """other @ (AB), for a tensor on the left."""
        if other.dim() == 1:
            return (other @ self.A) @ self.B  # (n,)
        return FactoredMatrix(other @ self.A, self.B)

    def norm(self) -> Tensor:
        """Frobenius norm (...,): ||AB||² = trace(Bᵀ AᵀA B) = trace((AᵀA)(BBᵀ)), a sum over
        r x r entries. Rounding can make the trace slightly negative for a product that
        is (nearly) zero, so it is clamped at 0 before the square root."""
        gram_a = self.A.mT @ self.A  # (..., r, r)
        gram_b = self.B @ self.B.mT  # (..., r, r)
        return (gram_a * gram_b).sum(dim=(-2, -1)).clamp(min=0).sqrt()  # both symmetric

    def eigenvalues(self) -> Tensor:
        """The r eigenvalues (..., r), complex, of BA: exactly the eigenvalues of the
        square AB other than the m - r zeros it must have (AB v = λv with λ ≠ 0 gives
        BA (Bv) = λ (Bv), and back). Some may be zero too if the rank is below r."""
        if self.A.size(-2) != self.B.size(-1):
            raise GlassboxError(
                f"eigenvalues need a square matrix; this one is {tuple(self.shape)}"
            )
        return torch.linalg.eigvals(self.B @ self.A)  # (..., r)

    def svd(self) -> tuple[Tensor, Tensor, Tensor]:
        """Thin SVD (U (..., m, k), S (..., k), Vh (..., k, n)), k = min(m, n, r), with
        U @ diag(S) @ Vh = AB. From QR of both factors: A = Q_a R_a and Bᵀ = Q_b R_b give
        AB = Q_a (R_a R_bᵀ) Q_bᵀ, and only the small middle matrix needs an SVD."""
        q_a, r_a = torch.linalg.qr(self.A)  # (..., m, k_a), (..., k_a, r)
        q_b, r_b = torch.linalg.qr(self.B.mT)  # (..., n, k_b), (..., k_b, r)
        u, s, vh = torch.linalg.svd(r_a @ r_b.mT, full_matrices=False)  # middle (k_a, k_b)
        return q_a @ u, s, vh @ q_b.mT

    def __repr__(self) -> str:
        return f"FactoredMatrix(shape={tuple(self.shape)}, rank={self.rank})"


# ---- finding heads and their weights --------------------------------------------------


def _stack(model: nn.Module, part: str | None) -> Stack:
    """The module holding the blocks: the model itself, or one stack of an encoder-decoder."""
    if isinstance(model, Stack):
        return model  # GPT, Encoder: `part` does not apply
    if part not in ("encoder", "decoder"):
        got = "nothing" if part is None else repr(part)
        raise GlassboxError(
            f"an encoder-decoder has two stacks of blocks: pass part='encoder' or "
            f"part='decoder' (got {got})"
        )
    return model.encoder if part == "encoder" else model.decoder


def _gain(norm: nn.Module, where: str) -> Tensor | None:
    """The norm's gain g (C,) to fold, or None when there is nothing to fold."""
    if isinstance(norm, nn.Identity):
        return None
    if isinstance(norm, BatchNorm):
        raise GlassboxError(
            f"fold_ln cannot fold {where}: batchnorm's per-channel statistics are not a "
            "gain; pass fold_ln=False"
        )
    return norm.weight


def _layer_weights(stack: nn.Module, layer: int, fold_ln: bool) -> dict[str, Tensor]:
    """W_Q, W_K, W_V (H, C, D) and W_O (H, D, C) of every head of one layer, detached
    copies, with key/value heads repeated so that index h is query head h's (as the
    attention module's own W_K and W_V already are)."""
    block = stack.blocks[layer]
    attn = block.attn
    w_q, w_k, w_v = attn.W_Q.detach(), attn.W_K.detach(), attn.W_V.detach()  # (H, C, D)
    w_o = attn.W_O.detach()  # (H, D, C)
    if fold_ln and not block.post_norm:  # post-norm: attention reads the stream itself
        g = _gain(block.ln_1, f"layer {layer}'s ln_1")
        if g is not None:
            g = g.detach()[None, :, None]  # (1, C, 1): diag(g) @ W for every head
            w_q, w_k, w_v = g * w_q, g * w_k, g * w_v
    return {"W_Q": w_q.clone(), "W_K": w_k.clone(), "W_V": w_v.clone(), "W_O": w_o.clone()}


def head_weights(
    model: nn.Module, layer: int, head: int, *, fold_ln: bool = True, part: str | None = None
) -> dict[str, Tensor]:
    """One head's weights, as copies: W_Q, W_K, W_V (C, D) and W_O (D, C), in the
    row-vector convention q = x @ W_Q, and the head's term of the attention output z @ W_O.
    With grouped-query attention, W_K and W_V are those of the key/value head that
    query head `head` uses.

    fold_ln multiplies the gain g of the norm before attention (ln_1) into the reading
    weights, W ← diag(g) @ W, as TransformerLens does, so that x̂ @ W_Q is the query for
    the normalized-but-ungained x̂. Not folded: the norm's per-token scale 1/rms (which
    depends on the input), LayerNorm's mean-centering, and its bias (ignored, as are the
    attention biases). Post-norm blocks have no norm before attention: nothing to fold.

    `part` picks "encoder" or "decoder" in an encoder-decoder; GPT and Encoder ignore it.

    >>> from glassbox.config import ModelConfig
    >>> from glassbox.models import GPT
    >>> model = GPT(ModelConfig(n_layer=2, n_head=4, n_embd=32))
    >>> {k: tuple(w.shape) for k, w in head_weights(model, 1, 3).items()}
    {'W_Q': (32, 8), 'W_K': (32, 8), 'W_V': (32, 8), 'W_O': (8, 32)}
    """
    stack = _stack(model, part)
    check_head(stack, layer, head)
    return {name: w[head] for name, w in _layer_weights(stack, layer, fold_ln).items()}


def _at_least_float32(t: Tensor) -> Tensor:
    """torch.linalg has no half-precision kernels; circuits are computed in float32."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def _circuits(stack: nn.Module, layer: int, fold_ln: bool) -> tuple[FactoredMatrix, FactoredMatrix]:
    """The OV and QK circuits (H, C, C) of every head of one layer."""
    w = {k: _at_least_float32(v) for k, v in _layer_weights(stack, layer, fold_ln).items()}
    return FactoredMatrix(w["W_V"], w["W_O"]), FactoredMatrix(w["W_Q"], w["W_K"].mT)


def ov_circuit(
    model: nn.Module, layer: int, head: int, *, fold_ln: bool = True, part: str | None = None
) -> FactoredMatrix:
    """W_OV = W_V W_O (C, C), rank <= D: attending to a position whose residual is x adds
    x @ W_OV (times the attention weight) to the query's residual."""
    w = head_weights(model, layer, head, fold_ln=fold_ln, part=part)
    return FactoredMatrix(_at_least_float32(w["W_V"]), _at_least_float32(w["W_O"]))


def qk_circuit(
    model: nn.Module, layer: int, head: int, *, fold_ln: bool = True, part: str | None = None
) -> FactoredMatrix:
    """W_QK = W_Q W_Kᵀ (C, C), rank <= D: the score of query x_t for key x_s is
    x_t @ W_QK @ x_sᵀ, before the 1/√D scale and the softmax."""
    w = head_weights(model, layer, head, fold_ln=fold_ln, part=part)
    return FactoredMatrix(_at_least_float32(w["W_Q"]), _at_least_float32(w["W_K"]).T)


def _embed(model: nn.Module, stack: nn.Module) -> Tensor:
    """W_E (V, C): each token's vector as it enters the residual stream (the source table
    for an encoder with its own, and scaled by √C with sinusoidal positions)."""
    table = model.tok_emb
    if isinstance(model, EncoderDecoder) and stack is model.encoder and model.src_emb is not None:
        table = model.src_emb
    return _at_least_float32(table.weight.detach()) * stack.emb_scale


def _unembed(model: nn.Module, fold_ln: bool) -> Tensor:
    """W_U (C, V): the unembedding (tied or not; model.W_U), with the gain of the final
    norm before the logits folded in (diag(g) @ W_U) under fold_ln."""
    final = model.decoder if isinstance(model, EncoderDecoder) else model  # ln_f feeds logits
    w_u = _at_least_float32(model.W_U.detach())  # (C, V)
    g = _gain(final.ln_f, "the final norm ln_f") if fold_ln else None
    return w_u if g is None else _at_least_float32(g.detach())[:, None] * w_u


def full_ov_circuit(
    model: nn.Module, layer: int, head: int, *, fold_ln: bool = True, part: str | None = None
) -> FactoredMatrix:
    """W_E W_OV W_U (V, V), factored as (W_E W_V)(W_O W_U): entry [s, t] is how much
    attending to token s raises the logit of token t, on the direct path (no other
    layers, norm scales left out). For an encoder stack of an encoder-decoder this reads
    the head's output through the decoder's unembedding: a lens, not a path the model has.
    """
    stack = _stack(model, part)
    ov = ov_circuit(model, layer, head, fold_ln=fold_ln, part=part)
    return _embed(model, stack) @ ov @ _unembed(model, fold_ln)


def full_qk_circuit(
    model: nn.Module, layer: int, head: int, *, fold_ln: bool = True, part: str | None = None
) -> FactoredMatrix:
    """W_E W_QK W_Eᵀ (V, V), factored as (W_E W_Q)(W_E W_K)ᵀ: entry [i, j] is the score a
    query token i gives a key token j from the token embeddings alone."""
    w_e = _embed(model, _stack(model, part))
    return w_e @ qk_circuit(model, layer, head, fold_ln=fold_ln, part=part) @ w_e.T


def positional_qk_circuit(
    model: nn.Module, layer: int, head: int, *, fold_ln: bool = True, part: str | None = None
) -> FactoredMatrix:
    """W_pos W_QK W_posᵀ (block_size, block_size): the score a query at position t gives
    a key at position s from the position vectors alone (learned or sinusoidal tables,
    the ones added to the residual stream)."""
    stack = _stack(model, part)
    scheme = stack.pos_emb
    if not scheme.adds_embedding:
        raise GlassboxError(
            f"positional_qk_circuit needs positions added to the residual stream (learned "
            f"or sinusoidal); this model uses {stack.config.pos_encoding}"
        )
    rows = torch.arange(stack.config.block_size, device=model.tok_emb.weight.device)
    w_pos = _at_least_float32(scheme.embed(rows).detach())  # (block_size, C)
    return w_pos @ qk_circuit(model, layer, head, fold_ln=fold_ln, part=part) @ w_pos.T


# ---- scores -----------------------------------------------------------------------------


def _copying(full_ov: FactoredMatrix) -> Tensor:
    """sum(λ).real / sum(|λ|) over the eigenvalues λ of full OV circuits (...,)."""
    eig = full_ov.eigenvalues()  # (..., D) complex
    return eig.sum(dim=-1).real / eig.abs().sum(dim=-1)


def copying_score(
    model: nn.Module, layer: int, head: int, *, fold_ln: bool = True, part: str | None = None
) -> float:
    """How much a head copies: sum(λ).real / sum(|λ|) over the eigenvalues λ of its full
    OV circuit W_E W_OV W_U, in [-1, 1] (Elhage et al. 2021, the "positive eigenvalues"
    measure of copying heads).

    A head that copies makes the token it attends to more likely: positive eigenvalues
    (eigenvectors mapped to positive multiples of themselves), score near 1. Near -1 it
    suppresses the attended token, near 0 it maps tokens elsewhere (e.g. rotations,
    whose eigenvalues come in ±iθ pairs). NaN if the circuit is zero. The score is blind
    to the overall size of the circuit: a tiny head can copy perfectly.

    >>> from glassbox.config import ModelConfig
    >>> from glassbox.models import GPT
    >>> -1 <= copying_score(GPT(ModelConfig(n_layer=1, vocab_size=11)), 0, 0) <= 1
    True
    """
    return _copying(full_ov_circuit(model, layer, head, fold_ln=fold_ln, part=part)).item()


def copying_scores(model: nn.Module, *, fold_ln: bool = True, part: str | None = None) -> Tensor:
    """copying_score of every head, (L, H), one batched eigenvalue problem per layer."""
    stack = _stack(model, part)
    w_e, w_u = _embed(model, stack), _unembed(model, fold_ln)
    rows = []
    for layer in range(len(stack.blocks)):
        ov, _ = _circuits(stack, layer, fold_ln)  # (H, C, C)
        rows.append(_copying(w_e @ ov @ w_u))  # (H,)
    return torch.stack(rows)  # (L, H)


def numerical_rank(singular_values: Tensor, shape: tuple[int, int]) -> Tensor:
    """How many singular values (..., k) count as nonzero, by torch.linalg.matrix_rank's
    default rule: above σ_max · max(m, n) · eps for an m x n matrix. (...,) integers."""
    eps = torch.finfo(singular_values.dtype).eps
    tol = singular_values.amax(dim=-1, keepdim=True) * max(shape) * eps  # (..., 1)
    return (singular_values > tol).sum(dim=-1)


def circuit_spectra(
    model: nn.Module, *, fold_ln: bool = True, part: str | None = None
) -> dict[str, dict[str, Tensor]]:
    """Singular values and rank of every head's OV and QK circuit: {"ov": ..., "qk": ...},
    each {"singular_values": (L, H, D) largest first, "rank": (L, H)}.

    A circuit is a C x C matrix made of two C x D factors, so its rank is at most
    D = d_head, however wide the residual stream: a head reads a D-dimensional
    subspace and writes into another. The values come from the factored SVD (D x D
    work per head); the rank counts the ones matrix_rank would keep for the C x C
    product, and can be below D when a head uses fewer directions than it has.

    >>> from glassbox.config import ModelConfig
    >>> from glassbox.models import GPT
    >>> spectra = circuit_spectra(GPT(ModelConfig(n_layer=2, n_head=4, n_embd=32)))
    >>> spectra["ov"]["singular_values"].shape, int(spectra["ov"]["rank"].max())
    (torch.Size([2, 4, 8]), 8)
    """
    stack = _stack(model, part)
    out: dict[str, dict[str, list[Tensor]]] = {"ov": {}, "qk": {}}
    for layer in range(len(stack.blocks)):
        for kind, circuit in zip(("ov", "qk"), _circuits(stack, layer, fold_ln), strict=True):
            _, s, _ = circuit.svd()  # (H, D)
            rank = numerical_rank(s, tuple(circuit.shape[-2:]))  # (H,)
            out[kind].setdefault("singular_values", []).append(s)
            out[kind].setdefault("rank", []).append(rank)
    return {
        kind: {name: torch.stack(rows) for name, rows in parts.items()}  # (L, H, ...)
        for kind, parts in out.items()
    }


def plot_spectra(
    model: nn.Module, path: Path | str, *, fold_ln: bool = True, part: str | None = None
) -> Path:
    """One PNG, a panel each for OV and QK: all C singular values of every head's circuit
    as the explicit C x C product (log scale, one line per head, coloured by layer), and
    a dashed line at D, past which every value is zero up to rounding."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stack = _stack(model, part)
    L, D = len(stack.blocks), stack.config.d_head
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    colours = plt.get_cmap("viridis")
    for ax, kind in zip(axes, ("ov", "qk"), strict=True):
        for layer in range(L):
            circuit = _circuits(stack, layer, fold_ln)[0 if kind == "ov" else 1]
            values = torch.linalg.svdvals(circuit.full())  # (H, C)
            floor = values.amax() * torch.finfo(values.dtype).eps  # log scale: no zeros
            for head, row in enumerate(values.clamp(min=floor).cpu()):
                label = f"layer {layer}" if head == 0 else None
                ax.plot(range(1, len(row) + 1), row.numpy(), color=colours(layer / max(L - 1, 1)),
                        linewidth=0.8, label=label)  # fmt: skip
        ax.axvline(D, color="grey", linestyle="--", linewidth=0.8)
        ax.set_yscale("log")
        ax.set_xlabel(f"singular value index (d_head = {D}, d_model = {stack.config.n_embd})")
        ax.set_title(f"W_{kind.upper()} of every head", fontsize=10)
        ax.legend(fontsize=7)
    return save_figure(fig, path)


def composition_scores(
    model: nn.Module, *, fold_ln: bool = True, part: str | None = None
) -> dict[str, Tensor]:
    """How much each later head reads what each earlier head writes: "q", "k" and "v"
    scores, (L, H, L, H) each, indexed [l1, h1, l2, h2] for an earlier head (l1, h1) and
    a later head (l2, h2). Entries with l1 >= l2 are 0 (not computed: a head cannot read
    a head of its own or a later layer); 0 rather than NaN so that max() and argmax() of
    a score tensor pick a real pair.

    Elhage et al. 2021 in the row-vector convention (x @ W), with W_OV = W_V W_O and
    W_QK = W_Q W_Kᵀ. The earlier head writes y @ W_OV¹ into the stream; when the later
    head reads that
      - as its query: score (y W_OV¹) W_QK² x_sᵀ   -> Q = ||W_OV¹ W_QK²||
      - as its key:   score x_t W_QK² (y W_OV¹)ᵀ   -> K = ||W_QK² (W_OV¹)ᵀ||
      - as its value: output y W_OV¹ W_OV²         -> V = ||W_OV¹ W_OV²||
    each divided by ||W_OV¹|| times the later matrix's norm (||W_QK²|| or ||W_OV²||),
    Frobenius norms computed from the factored matrices. Each score is in [0, 1]; it is
    large when the earlier head's write space lines up with what the later head reads.

    Compare with chance: for random matrices of these shapes (random orientations) the
    score is about 1/√C (C = n_embd), so only scores well above that mean composition.
    """
    stack = _stack(model, part)
    L = len(stack.blocks)
    H = stack.blocks[0].attn.n_head
    circuits = [_circuits(stack, layer, fold_ln) for layer in range(L)]  # (OV, QK) (H, C, C)
    dtype = circuits[0][0].A.dtype
    device = circuits[0][0].A.device
    scores = {kind: torch.zeros(L, H, L, H, dtype=dtype, device=device) for kind in "qkv"}
    for l1 in range(L):
        ov1, _ = circuits[l1]
        ov1_col = FactoredMatrix(ov1.A[:, None], ov1.B[:, None])  # (H, 1, C, C): h1 on rows
        ov1_norm = ov1.norm()[:, None]  # (H, 1)
        for l2 in range(l1 + 1, L):
            ov2, qk2 = circuits[l2]
            ov2_row = FactoredMatrix(ov2.A[None], ov2.B[None])  # (1, H, C, C): h2 on columns
            qk2_row = FactoredMatrix(qk2.A[None], qk2.B[None])
            qk_norm, ov2_norm = qk2.norm()[None], ov2.norm()[None]  # (1, H)
            scores["q"][l1, :, l2] = (ov1_col @ qk2_row).norm() / (ov1_norm * qk_norm)
            scores["k"][l1, :, l2] = (qk2_row @ ov1_col.T).norm() / (ov1_norm * qk_norm)
            scores["v"][l1, :, l2] = (ov1_col @ ov2_row).norm() / (ov1_norm * ov2_norm)
    return scores


__all__ = [
    "FactoredMatrix",
    "circuit_spectra",
    "composition_scores",
    "copying_score",
    "copying_scores",
    "full_ov_circuit",
    "full_qk_circuit",
    "head_weights",
    "numerical_rank",
    "ov_circuit",
    "plot_spectra",
    "positional_qk_circuit",
    "qk_circuit",
]
