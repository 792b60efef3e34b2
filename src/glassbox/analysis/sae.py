"""Sparse autoencoders (SAEs): a dictionary of features for one activation of a model.

Why: the residual stream of a trained transformer stores more features than it has
dimensions, in superposition (docs/superposition.md), so its neurons and basis directions
each respond to many unrelated things. An SAE learns an overcomplete basis in which each
activation vector x (d) is a sparse, non-negative sum of unit directions:

    f  = σ((x − b_dec) W_enc + b_enc)      f (m,): feature activations, m = expansion · d
    x̂  = f W_dec + b_dec                   W_dec (m, d): row i is feature i's direction

(Anthropic, "Towards Monosemanticity", 2023; Gao et al., "Scaling and evaluating sparse
autoencoders", 2024). Two choices of σ and sparsity pressure:

  relu   σ = ReLU, loss ‖x − x̂‖² + λ Σ_i f_i (the decoder rows have unit norm, so this
         is Anthropic's λ Σ f_i ‖W_dec,i‖); dead features are resampled toward the inputs
         the SAE reconstructs worst (Anthropic's resampling), L0 set indirectly by λ
  topk   σ keeps the k largest pre-activations (ReLU'd) and zeroes the rest, loss
         ‖x − x̂‖² + α·AuxK: L0 is exactly k, and the AuxK term lets the k_aux largest
         dead features reconstruct what the live ones miss, so they come back to life

Both keep W_dec's rows at unit norm: the gradient component parallel to each row is
removed before the Adam step and the rows are renormalised after it, so the sparsity
penalty cannot be dodged by shrinking f and growing W_dec. W_enc starts as W_dec's
transpose and b_dec at the data mean (Gao et al.). Inputs are scaled by one constant so
that E‖x‖² = d, which makes λ and the learning rate carry over between models; the
scale is part of the SAE, so encode and forward take and return the model's own units.

Metrics: MSE, explained variance 1 − Σ‖x − x̂‖² / Σ‖x − x̄‖², L0 (mean active features per
token), dead fraction (never active on the held-out tokens), dense fraction (active on
more than 10% of them), and loss recovered: the model's next-token loss with x̂ spliced
in at the hook, between zero-ablation (0) and the clean model (1); mean-ablation too.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from glassbox.errors import GlassboxError
from glassbox.jsonfiles import read_json

KINDS = ("relu", "topk")
FORMAT = "glassbox-sae"
VERSION = 1
WEIGHTS, CONFIG, METRICS = "sae.safetensors", "config.json", "metrics.json"
DENSE = 0.1  # a feature active on more than this fraction of tokens counts as dense
RESAMPLE_INIT = 0.2  # resampled encoder rows: this times the mean norm of live ones


@dataclass
class SAEConfig:
    """The autoencoder's shape and how it trains; saved with its weights.

    >>> SAEConfig(d_in=128, expansion=8, kind="topk", k=32).d_sae
    1024
    """

    d_in: int
    expansion: float = 8.0
    kind: str = "topk"
    k: int = 32  # topk: active features per token
    l1_coef: float = 2.0  # relu: λ, on inputs scaled to E‖x‖² = d
    aux_k: int = 0  # topk: dead features in the AuxK reconstruction (0: d_in // 2)
    aux_coef: float = 1 / 32  # topk: α, Gao et al.'s weight of AuxK
    steps: int = 2000
    batch_size: int = 1024
    lr: float = 1e-3
    warmup_fraction: float = 0.05  # lr rises linearly from 0 over this part of the steps
    l1_warmup_fraction: float = 0.05  # relu: λ rises linearly from 0 over this part
    decay_fraction: float = 0.2  # lr falls linearly to 0 over the last part
    dead_tokens: int = 100_000  # not active on this many training tokens in a row: dead
    resample_every: int = 1000  # relu: resample dead features every this many steps ...
    resample_until: float = 0.5  # ... during this first part of the steps
    seed: int = 0

    def __post_init__(self) -> None:
        def need(ok: bool, message: str) -> None:
            if not ok:
                raise GlassboxError(message)

        need(self.kind in KINDS, f"kind must be one of {', '.join(KINDS)}; got {self.kind!r}")
        need(self.d_in >= 1, f"d_in must be >= 1; got {self.d_in}")
        need(
            self.expansion >= 1,
            f"expansion must be >= 1 (at least as many features as dimensions); "
            f"got {self.expansion}",
        )
        if self.kind == "topk":
            need(
                1 <= self.k <= self.d_sae,
                f"k must be between 1 and the {self.d_sae} features (expansion "
                f"{self.expansion:g} x d {self.d_in}); got {self.k}",
            )
        need(self.aux_k >= 0, f"aux_k must be >= 0; got {self.aux_k}")
        for name in ("l1_coef", "aux_coef", "lr"):
            need(getattr(self, name) >= 0, f"{name} must be >= 0; got {getattr(self, name)}")
        for name in ("steps", "batch_size", "dead_tokens", "resample_every"):
            need(getattr(self, name) >= 1, f"{name} must be >= 1; got {getattr(self, name)}")
        for name in ("warmup_fraction", "l1_warmup_fraction", "decay_fraction", "resample_until"):
            value = getattr(self, name)
            need(0 <= value <= 1, f"{name} must be between 0 and 1; got {value}")
        need(
            self.warmup_fraction + self.decay_fraction <= 1,
            "warmup_fraction + decay_fraction must be <= 1",
        )

    @property
    def d_sae(self) -> int:
        """m, the number of features."""
        return round(self.expansion * self.d_in)


class SAE(nn.Module):
    """A sparse autoencoder over d-dimensional activations with m = d_sae features.

    >>> sae = SAE(SAEConfig(d_in=16, expansion=4, k=3))
    >>> f = sae.encode(torch.randn(5, 16))       # (5, 64), 3 non-zero per row
    >>> sae.decode(f).shape
    torch.Size([5, 16])
    """

    def __init__(self, config: SAEConfig, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.config = config
        d, m = config.d_in, config.d_sae
        W_dec = torch.randn(m, d, generator=generator)  # (m, d)
        W_dec /= W_dec.norm(dim=1, keepdim=True)
        self.W_dec = nn.Parameter(W_dec)  # (m, d) unit rows: the feature directions
        self.W_enc = nn.Parameter(W_dec.T.clone())  # (d, m)
        self.b_enc = nn.Parameter(torch.zeros(m))  # (m,)
        self.b_dec = nn.Parameter(torch.zeros(d))  # (d,), in scaled units
        self.register_buffer("scale", torch.ones(()))  # inputs are multiplied by it
        # the training data's mean input (model units): b_dec's start, and the baseline
        # that mean-ablation puts in place of the activation
        self.register_buffer("data_mean", torch.zeros(d))  # (d,)

    def pre_acts(self, x: Tensor) -> Tensor:
        """(..., d) activations -> (..., m) pre-activations."""
        return (x * self.scale - self.b_dec) @ self.W_enc + self.b_enc

    def activate(self, pre: Tensor) -> Tensor:
        """(..., m) pre-activations -> (..., m) sparse non-negative feature activations."""
        if self.config.kind == "relu":
            return F.relu(pre)
        top = pre.topk(self.config.k, dim=-1)  # values and indices, (..., k) each
        return torch.zeros_like(pre).scatter(-1, top.indices, F.relu(top.values))

    def encode(self, x: Tensor) -> Tensor:
        """(..., d) -> (..., m) feature activations."""
        return self.activate(self.pre_acts(x))

    def decode(self, f: Tensor) -> Tensor:
        """(..., m) feature activations -> (..., d) reconstruction, in the input's units."""
        return (f @ self.W_dec + self.b_dec) / self.scale

    def forward(self, x: Tensor) -> Tensor:
        """(..., d) -> (..., d): the reconstruction x̂."""
        return self.decode(self.encode(x))

    @torch.no_grad()
    def normalize_decoder(self) -> None:
        """Rescale every decoder row to unit norm."""
        self.W_dec /= self.W_dec.norm(dim=1, keepdim=True)

    @torch.no_grad()
    def remove_parallel_grad(self) -> None:
        """Drop the part of W_dec's gradient along its rows, which would only change their
        norms (undone by normalize_decoder) and would skew Adam's moment estimates."""
        g, w = self.W_dec.grad, self.W_dec  # (m, d) each
        g -= (g * w).sum(dim=1, keepdim=True) * w


# ---------------------------------------------------------------- metrics


def explained_variance(x: Tensor, x_hat: Tensor) -> float:
    """1 − Σ‖x − x̂‖² / Σ‖x − x̄‖² over the rows of x (N, d): 1 for a perfect
    reconstruction, 0 for one no better than the mean.

    >>> explained_variance(torch.tensor([[0.0, 0], [2, 2]]), torch.tensor([[0.0, 0], [2, 1]]))
    0.75
    """
    x, x_hat = x.detach().double(), x_hat.detach().double()
    return 1 - float((x - x_hat).pow(2).sum() / (x - x.mean(dim=0)).pow(2).sum())


def l0(f: Tensor) -> float:
    """Mean number of non-zero features per row of f (N, m).

    >>> l0(torch.tensor([[0.0, 1, 2], [0, 0, 3]]))
    1.5
    """
    return float((f != 0).sum(dim=-1).double().mean())


def dead_fraction(counts: Tensor) -> float:
    """Fraction of features with no activation at all; counts (m,) per feature.

    >>> dead_fraction(torch.tensor([0, 5, 0, 1]))
    0.5
    """
    return float((counts == 0).double().mean())


def dense_fraction(counts: Tensor, n_tokens: int, threshold: float = DENSE) -> float:
    """Fraction of features active on more than `threshold` of n_tokens tokens.

    >>> dense_fraction(torch.tensor([0, 50, 11, 10]), n_tokens=100)
    0.5
    """
    return float((counts > threshold * n_tokens).double().mean())


def recovered(ce_clean: float, ce_spliced: float, ce_ablated: float) -> float:
    """(CE_ablated − CE_spliced) / (CE_ablated − CE_clean): 1 when splicing loses nothing,
    0 when it is as bad as ablating the activation.

    >>> recovered(2.0, 2.5, 3.0)
    0.5
    """
    return (ce_ablated - ce_spliced) / (ce_ablated - ce_clean)


def eval_windows(tokens: np.ndarray, block_size: int, n_tokens: int, batch_size: int) -> Iterator:
    """(x, y) batches, (b, T) int64 each, of consecutive windows from the start of tokens
    covering about n_tokens positions (at least one window)."""
    n = max(1, min(n_tokens // block_size, (len(tokens) - 1) // block_size))
    for first in range(0, n, batch_size):
        rows = np.arange(first, min(first + batch_size, n)) * block_size  # (b,)
        window = torch.from_numpy(
            tokens[rows[:, None] + np.arange(block_size + 1)].astype(np.int64)
        )
        yield window[:, :-1], window[:, 1:]  # (b, T+1) -> (b, T), (b, T)


def spliced_losses(
    model: nn.Module,
    hook: str,
    batches: Iterator,
    replacements: dict[str, Callable[[Tensor], Tensor]],
) -> dict[str, float]:
    """Mean next-token cross-entropy of the clean model ("clean") and, for each name in
    replacements, of the model whose activation at `hook` is replaced by fn(activation)."""

    def ce(logits: Tensor, y: Tensor) -> float:  # (b, T, V), (b, T) -> summed over tokens
        return float(F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum"))

    sums = {"clean": 0.0, **{name: 0.0 for name in replacements}}
    n = 0
    with torch.no_grad():
        for x, y in batches:
            sums["clean"] += ce(model(x), y)
            for name, fn in replacements.items():
                sums[name] += ce(
                    model.run_with_hooks(x, fwd_hooks=[(hook, lambda a, _, fn=fn: fn(a))]), y
                )
            n += y.numel()
    return {name: total / n for name, total in sums.items()}


def evaluate_sae(
    sae: SAE,
    model: nn.Module,
    hook: str,
    tokens: np.ndarray,
    *,
    n_tokens: int = 32_768,
    batch_size: int = 32,
) -> dict[str, float]:
    """Every metric of `sae` at `hook` of `model` on about n_tokens held-out tokens (whole
    windows from the start of `tokens`, e.g. the run's val split). Mean-ablation puts the
    SAE's training data mean (sae.data_mean) in place of the activation."""
    T = model.config.block_size
    sq_err = sq_norm = 0.0
    total = torch.zeros(sae.config.d_in, dtype=torch.float64)  # (d,) Σx, for x̄
    counts = torch.zeros(sae.config.d_sae, dtype=torch.int64)  # (m,) tokens each fires on
    active = n = 0
    for x, _ in eval_windows(tokens, T, n_tokens, batch_size):
        _, cache = model.run_with_cache(x, names_filter=hook)
        act = cache[hook].flatten(0, 1).double()  # (b·T, d)
        with torch.no_grad():
            f = sae.encode(act.float())  # (b·T, m)
            x_hat = sae.decode(f).double()  # (b·T, d)
        sq_err += float((act - x_hat).pow(2).sum())
        sq_norm += float(act.pow(2).sum())
        total += act.sum(dim=0)
        counts += (f > 0).sum(dim=0)
        active += int((f > 0).sum())
        n += len(act)
    variance = sq_norm - float(total.pow(2).sum()) / n  # Σ‖x − x̄‖²
    with torch.no_grad():
        ce = spliced_losses(
            model, hook, eval_windows(tokens, T, n_tokens, batch_size),
            {"sae": sae, "zero": torch.zeros_like, "mean": lambda a: sae.data_mean.expand_as(a)},
        )  # fmt: skip
    return {
        "mse": sq_err / (n * sae.config.d_in),
        "explained_variance": 1 - sq_err / variance,
        "l0": active / n,
        "dead_fraction": dead_fraction(counts),
        "dense_fraction": dense_fraction(counts, n),
        "ce_clean": ce["clean"],
        "ce_sae": ce["sae"],
        "ce_zero": ce["zero"],
        "ce_mean": ce["mean"],
        "loss_recovered": recovered(ce["clean"], ce["sae"], ce["zero"]),
        "loss_recovered_mean": recovered(ce["clean"], ce["sae"], ce["mean"]),
        "eval_tokens": n,
    }


# ---------------------------------------------------------------- training


def activation_stats(rows: np.ndarray, chunk: int = 65_536) -> tuple[Tensor, float]:
    """The mean row (d,) and the mean squared norm E‖x‖² of rows (N, d), read in chunks
    (rows may be a memmap larger than memory)."""
    total = np.zeros(rows.shape[1])  # (d,) float64
    sq = 0.0
    for first in range(0, len(rows), chunk):
        block = np.asarray(rows[first : first + chunk], dtype=np.float64)  # (c, d)
        total += block.sum(axis=0)
        sq += float((block**2).sum())
    return torch.from_numpy(total / len(rows)).float(), sq / len(rows)


def lr_factor(step: int, config: SAEConfig) -> float:
    """Linear warmup from 0, constant, then linear decay to 0 over the last steps."""
    warmup = config.warmup_fraction * config.steps
    decay = config.decay_fraction * config.steps
    if step < warmup:
        return (step + 1) / warmup
    return min(1.0, (config.steps - step) / decay) if decay else 1.0


def _reset_adam(opt: torch.optim.Optimizer, param: Tensor, index: Any) -> None:
    """Zero Adam's moments for param[index], so a reinitialised feature starts afresh."""
    state = opt.state.get(param)
    if state:
        state["exp_avg"][index] = 0
        state["exp_avg_sq"][index] = 0


@torch.no_grad()
def resample_dead(
    sae: SAE,
    opt: torch.optim.Optimizer,
    inputs: Tensor,
    dead: Tensor,
    generator: torch.Generator,
) -> int:
    """Anthropic's resampling: each dead feature gets a direction of an input drawn with
    probability ∝ its squared reconstruction loss, so it starts on what the SAE misses.

    inputs (n, d) in the model's units; dead (m,) bool. The decoder row becomes the unit
    vector of (scaled input − b_dec), the encoder column the same vector times 0.2 × the
    mean norm of the live encoder columns, the encoder bias 0; Adam's moments for them are
    zeroed. Returns the number resampled."""
    idx = dead.nonzero().squeeze(1)  # (n_dead,)
    if not len(idx):
        return 0
    loss = (sae(inputs) - inputs).mul(sae.scale).pow(2).sum(dim=1)  # (n,)
    weights = loss.pow(2)
    if not weights.sum() > 0:  # a perfect reconstruction: nothing to aim at
        return 0
    pick = torch.multinomial(weights.cpu(), len(idx), replacement=True, generator=generator)
    v = inputs[pick.to(inputs.device)] * sae.scale - sae.b_dec  # (n_dead, d)
    v /= v.norm(dim=1, keepdim=True).clamp_min(1e-8)
    live = sae.W_enc[:, ~dead].norm(dim=0)  # (m - n_dead,)
    size = RESAMPLE_INIT * (float(live.mean()) if len(live) else 1.0)
    sae.W_dec[idx] = v
    sae.W_enc[:, idx] = v.T * size
    sae.b_enc[idx] = 0
    _reset_adam(opt, sae.W_dec, idx)
    _reset_adam(opt, sae.W_enc, (slice(None), idx))
    _reset_adam(opt, sae.b_enc, idx)
    return len(idx)


def aux_k_loss(sae: SAE, pre: Tensor, error: Tensor, dead: Tensor) -> Tensor:
    """Gao et al.'s AuxK: the k_aux largest pre-activations among dead features, alone,
    reconstruct the main reconstruction's error e (B, d); the squared error of that,
    normalised by e's own variance Σ‖e − ē‖² as in their code, so it stays of order 1
    however small e gets. Gradients reach only the dead features (e is detached)."""
    e = error.detach()
    k_aux = min(sae.config.aux_k or sae.config.d_in // 2, int(dead.sum()))
    top = pre.masked_fill(~dead, -math.inf).topk(k_aux, dim=-1)  # (B, k_aux) each
    f_aux = torch.zeros_like(pre).scatter(-1, top.indices, F.relu(top.values))  # (B, m)
    return (f_aux @ sae.W_dec - e).pow(2).sum() / (e - e.mean(dim=0)).pow(2).sum().clamp_min(1e-12)


def train_sae(
    rows: np.ndarray,
    config: SAEConfig,
    *,
    device: str = "cpu",
    log: Callable[[dict[str, float]], None] | None = None,
    log_every: int = 500,
) -> SAE:
    """Train an SAE on rows (N, d) float32 (an array or a memmap, e.g. Activations.rows),
    drawing random batches of config.batch_size rows. log, if given, gets a dict of the
    step's loss, MSE in scaled units (a fraction of E‖x‖²/d), L0 and dead fraction (no
    activation in the last dead_tokens training tokens) every log_every steps and at the
    end.

    >>> acts = np.random.default_rng(0).normal(size=(1000, 16)).astype(np.float32)
    >>> sae = train_sae(acts, SAEConfig(d_in=16, expansion=2, k=4, steps=20, batch_size=64))
    >>> sae.W_dec.shape
    torch.Size([32, 16])
    """
    if rows.ndim != 2 or rows.shape[1] != config.d_in:
        raise GlassboxError(f"rows must be (N, {config.d_in}); got {tuple(rows.shape)}")
    generator = torch.Generator().manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    mean, sq_norm = activation_stats(rows)
    sae = SAE(config, generator=generator)
    with torch.no_grad():
        sae.scale.fill_(math.sqrt(config.d_in / max(sq_norm, 1e-12)))
        sae.data_mean.copy_(mean)
        sae.b_dec.copy_(mean * sae.scale)
    sae.to(device)
    opt = torch.optim.Adam(sae.parameters(), lr=config.lr, betas=(0.9, 0.999))
    since_fired = torch.zeros(config.d_sae, dtype=torch.int64, device=device)  # (m,) tokens
    l1_warmup = config.l1_warmup_fraction * config.steps
    resample_end = config.resample_until * config.steps
    for step in range(config.steps):
        index = np.sort(rng.integers(0, len(rows), config.batch_size))  # sorted: memmap reads
        x = torch.from_numpy(np.asarray(rows[index], dtype=np.float32)).to(device)  # (B, d)
        for group in opt.param_groups:
            group["lr"] = config.lr * lr_factor(step, config)
        pre = sae.pre_acts(x)  # (B, m)
        f = sae.activate(pre)  # (B, m)
        error = (x - sae.decode(f)) * sae.scale  # (B, d), in scaled units
        mse = error.pow(2).sum(dim=-1).mean()
        dead = since_fired >= config.dead_tokens  # (m,)
        if config.kind == "relu":
            l1 = config.l1_coef * min(1.0, (step + 1) / l1_warmup) if l1_warmup else config.l1_coef
            loss = mse + l1 * f.sum(dim=-1).mean()
        elif dead.any():  # α · NMSE_aux against the NMSE ‖e‖² / Σ‖x − x̄‖², as Gao et al.
            variance = (x * sae.scale).var(dim=0).sum().detach()  # Σ_d Var(x_d), scaled
            loss = mse + config.aux_coef * variance * aux_k_loss(sae, pre, error, dead)
        else:
            loss = mse
        opt.zero_grad(set_to_none=True)
        loss.backward()
        sae.remove_parallel_grad()
        opt.step()
        sae.normalize_decoder()
        since_fired += len(x)
        since_fired[(f > 0).any(dim=0)] = 0
        end = step + 1 == config.steps
        if (
            config.kind == "relu"
            and (step + 1) % config.resample_every == 0
            and step + 1 <= resample_end
            and not end
        ):
            sample = np.sort(rng.integers(0, len(rows), 8 * config.batch_size))
            inputs = torch.from_numpy(np.asarray(rows[sample], dtype=np.float32)).to(device)
            if resample_dead(sae, opt, inputs, since_fired >= config.dead_tokens, generator):
                since_fired[since_fired >= config.dead_tokens] = 0  # a fresh chance each
        if log is not None and ((step + 1) % log_every == 0 or end):
            log({
                "step": step + 1, "loss": loss.item(), "mse_scaled": mse.item() / config.d_in,
                "l0": l0(f), "dead_fraction": float(dead.double().mean()),
            })  # fmt: skip
    return sae.eval()


# ---------------------------------------------------------------- files


def save_sae(sae: SAE, out_dir: Path | str, info: dict[str, Any], metrics: dict[str, Any]) -> Path:
    """Write out_dir/sae.safetensors, config.json (the SAEConfig and `info`: run, hook,
    activation file) and metrics.json; returns out_dir."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {name: t.detach().cpu().contiguous() for name, t in sae.state_dict().items()}
    save_file(tensors, out / WEIGHTS, metadata={"format": FORMAT, "version": str(VERSION)})
    config = {"format": FORMAT, "version": VERSION, "sae": asdict(sae.config), **info}
    (out / CONFIG).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    (out / METRICS).write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    return out


def load_sae(sae_dir: Path | str) -> tuple[SAE, dict[str, Any]]:
    """The SAE saved in sae_dir (eval mode) and its config.json as a dict."""
    path = Path(sae_dir)
    if not (path / CONFIG).is_file() or not (path / WEIGHTS).is_file():
        raise GlassboxError(f"{path} is not an SAE folder (no {CONFIG} and {WEIGHTS}); train one")
    info = read_json(path / CONFIG, "SAE config")
    if not isinstance(info, dict) or info.get("format") != FORMAT or info.get("version") != VERSION:
        raise GlassboxError(f"{path / CONFIG} is not a version-{VERSION} SAE config")
    try:
        config = SAEConfig(**info["sae"])
    except (KeyError, TypeError) as err:
        raise GlassboxError(f"{path / CONFIG} has bad SAE settings ({err})") from None
    sae = SAE(config)
    sae.load_state_dict(load_file(path / WEIGHTS))
    return sae.eval(), info
