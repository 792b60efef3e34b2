"""Where training text comes from, and how it becomes batches of token ids."""

from glassbox.data.corpus import DataError, DataWarning, corpus_name, iter_text, load_text
from glassbox.data.tokens import TokenDataset, write_tokens

__all__ = [
    "DataError",
    "DataWarning",
    "TokenDataset",
    "corpus_name",
    "iter_text",
    "load_text",
    "write_tokens",
]
