"""Tokenizers turn text into integer ids and back; each one saves itself as JSON."""

from glassbox.tokenizers.char import CharTokenizer, TokenizerError, load_tokenizer

__all__ = ["CharTokenizer", "TokenizerError", "load_tokenizer"]
