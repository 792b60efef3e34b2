"""Faster decoding on the CPU: the model's big matmuls through oneDNN.

Decoding one token at batch size 1 is a chain of matrix-vector products, so its speed is
the speed at which the weights stream from memory. PyTorch's default CPU matmul (MKL)
streams a matrix-vector product at one core's pace (12-18 GB/s measured here on a
(3072, 768) fp32 weight), while oneDNN's inner product, which PyTorch exposes through
`torch.ops.aten.mkldnn_linear` on weights converted with `Tensor.to_mkldnn()`, keeps
every thread reading (27 GB/s and more). Packing a weight
into oneDNN's layout costs a copy up front and makes the layer inference-only, so it is
something generation asks for, not what the model is.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from glassbox.models.gpt import GPT

# Below this many weights, converting activations to and from oneDNN's format costs more
# than the faster product saves (the 128-wide tiny model got slower; GPT-2 small faster).
MIN_PACKED_WEIGHTS = 1 << 19


class PackedLinear(nn.Module):
    """An inference-only Linear whose weight lives in oneDNN's blocked layout."""

    def __init__(self, weight: Tensor, bias: Tensor | None = None) -> None:
        super().__init__()
        self.out_features = weight.size(0)
        # Plain attributes, not buffers: a packed layer is never saved or moved.
        self.weight = weight.detach().float().contiguous().to_mkldnn()  # (out, in), blocked
        bias = bias if bias is not None else weight.new_zeros(self.out_features)
        self.bias = bias.detach().float().contiguous().to_mkldnn()  # (out,)

    def forward(self, x: Tensor) -> Tensor:
        rows = x.reshape(-1, x.size(-1)).contiguous().to_mkldnn()  # (N, in)
        y = torch.ops.aten.mkldnn_linear(rows, self.weight, self.bias).to_dense()  # (N, out)
        return y.view(*x.shape[:-1], self.out_features)


def pack_for_cpu(model: GPT, min_weights: int = MIN_PACKED_WEIGHTS) -> GPT:
    """Swap the model's large Linear layers (every nn.Linear with at least min_weights
    weights, an untied lm_head among them), and a tied unembedding, for oneDNN-packed
    copies, in place; returns the model, which from then on can only run inference.
    Logit soft-capping, if any, still follows the packed product (LanguageModel.unembed).

    >>> fast = pack_for_cpu(load_model("runs/gpt2")[0])  # doctest: +SKIP
    """
    if next(model.parameters()).device.type != "cpu" or not torch.backends.mkldnn.is_available():
        return model
    model.eval()
    # Every Linear, found by type wherever it sits (attention, MLP, a plugged-in sublayer),
    # so that packing needs no list of attribute names.
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Linear) and child.weight.numel() >= min_weights:
                setattr(parent, name, PackedLinear(child.weight.detach(), child.bias))
    if model.lm_head is None and model.tok_emb.weight.numel() >= min_weights:
        # An instance attribute shadows the head_logits method for this model only
        # (set past nn.Module's registration: the packed copy is not a saved submodule).
        object.__setattr__(model, "head_logits", PackedLinear(model.tok_emb.weight.detach()))
    model.requires_grad_(False)
    return model
