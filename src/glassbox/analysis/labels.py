"""How reports name tokens and where they put figures: shared by every `inspect` report."""

from __future__ import annotations

from pathlib import Path


def token_text(tokenizer, i: int) -> str:
    """A token id as text: a task's special names, an encoder's [PAD]/[MASK]/[CLS] (ids
    past the tokenizer's), else its bytes decoded."""
    if hasattr(tokenizer, "token_str"):
        return tokenizer.token_str(i)
    if i >= tokenizer.vocab_size:
        from glassbox.models.encoder import ENCODER_SPECIALS

        return ENCODER_SPECIALS[i - tokenizer.vocab_size]
    return tokenizer.decode_bytes([i]).decode("utf-8", errors="replace")


def output_folder(png: Path | str) -> Path:
    """The folder a report writes its figures to, made if missing."""
    folder = Path(png)
    folder.mkdir(parents=True, exist_ok=True)
    return folder
