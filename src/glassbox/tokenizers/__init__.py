"""Tokenizers turn text into integer ids and back; each one saves itself as JSON.

`CharTokenizer` (one id per character) is the default of a run; `BPETokenizer` is
byte-level BPE, trainable here and able to load tiktoken's and GPT-2's vocabularies;
`WordPiece` is BERT's tokenizer, loaded from a vocab.txt (or learned by wordpiece_train).
"""

from glassbox.tokenizers.base import Tokenizer, TokenizerError
from glassbox.tokenizers.bpe import BPETokenizer
from glassbox.tokenizers.char import CharTokenizer
from glassbox.tokenizers.formats import (
    load_gpt2,
    load_tiktoken,
    load_tokenizer,
    open_tokenizer,
)
from glassbox.tokenizers.wordpiece import WordPiece

__all__ = [
    "BPETokenizer",
    "CharTokenizer",
    "Tokenizer",
    "TokenizerError",
    "WordPiece",
    "load_gpt2",
    "load_tiktoken",
    "load_tokenizer",
    "open_tokenizer",
]
