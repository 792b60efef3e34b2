"""Fill-mask: what a masked-LM encoder predicts where the text says [MASK]."""

from __future__ import annotations

import torch

from glassbox.errors import GlassboxError
from glassbox.models import evaluating
from glassbox.models.encoder import Encoder, encoder_special_ids
from glassbox.tokenizers import WordPiece

MASK_TEXT = "[MASK]"


@torch.no_grad()
def fill_mask(
    model: Encoder, tokenizer, text: str, top_k: int = 5
) -> list[list[tuple[str, float]]]:
    """For each [MASK] in `text`, the top_k (token text, probability) predictions.

    The text around each [MASK] is encoded on its own, so with a character tokenizer a
    [MASK] stands for one character and with BPE for one token.

    >>> fill_mask(model, tokenizer, "def f(x): retu[MASK]n x")  # doctest: +SKIP
    [[('r', 0.97), ...]]
    """
    if isinstance(tokenizer, WordPiece):
        raise GlassboxError(
            "this encoder was imported from BERT weights without a masked-LM head: it "
            "embeds (glassbox embed) but does not fill masks"
        )
    if MASK_TEXT not in text:
        raise GlassboxError(f"the text has no {MASK_TEXT} to fill")
    if top_k < 1:
        raise GlassboxError(f"top_k must be >= 1; got {top_k}")
    special = encoder_special_ids(model.config.vocab_size)
    ids = [special["[CLS]"]]
    for i, piece in enumerate(text.split(MASK_TEXT)):
        if i:
            ids.append(special["[MASK]"])
        ids += tokenizer.encode(piece)
    idx = torch.tensor([ids], device=model.tok_emb.weight.device)  # (1, T)
    with evaluating(model):  # a text too long for the positions is the Stack's error
        probs = model(idx)[0].softmax(dim=-1)  # (T, V)
    n_text = model.config.vocab_size - len(special)  # never propose a special token
    result = []
    for t in (idx[0] == special["[MASK]"]).nonzero()[:, 0].tolist():
        p, which = probs[t, :n_text].topk(min(top_k, n_text))
        result.append(
            [
                (tokenizer.decode([i]), float(q))
                for i, q in zip(which.tolist(), p.tolist(), strict=True)
            ]
        )
    return result
