"""Learning a WordPiece vocabulary from a corpus (the tokenizer itself is wordpiece.py)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from itertools import pairwise

from glassbox.tokenizers.base import TokenizerError
from glassbox.tokenizers.wordpiece import DEFAULT_SPECIAL_TOKENS, WordPiece


def train_wordpiece(
    texts: Iterable[str],
    vocab_size: int,
    *,
    lowercase: bool = True,
    strip_accents: bool | None = None,
    handle_chinese_chars: bool = True,
) -> WordPiece:
    """Learn a WordPiece vocabulary of `vocab_size` tokens from `texts`.

    The vocabulary starts with the five special tokens and every character of the words
    that the basic tokenizer finds, in the form it takes at the start of a word ("a") and
    inside one ("##a"), so every training word can be encoded. Then, as in Schuster and
    Nakajima's WordPiece, it repeatedly adds the join of the two neighbouring pieces that
    most raise the likelihood of the corpus under a unigram model of pieces:
    count(ab) / (count(a) * count(b)), ties going to the more frequent pair. Pairs of
    rare pieces that always occur together win over pairs of common ones. Each step
    recounts the pairs of all distinct words: time O(merges x distinct words x length),
    meant for small corpora. Training stops early when no pair is left.

    >>> tok = train_wordpiece(["hug hugs hugging", "pug pugs"], 19)
    >>> tok.tokens[12:]
    ['##in', 'hu', 'pu', 'hug', 'pug', '##gin', '##ging']
    >>> tok.tokenize("hugs pugging")
    ['hug', '##s', 'pug', '##ging']
    """
    specials = list(DEFAULT_SPECIAL_TOKENS.values())
    options = {
        "lowercase": lowercase,
        "strip_accents": strip_accents,
        "handle_chinese_chars": handle_chinese_chars,
    }
    basic = WordPiece(specials, **options)
    word_counts = Counter(w for text in texts for w in basic.split_words(text))
    words = [
        ([w[0], *("##" + ch for ch in w[1:])], count)
        for w, count in word_counts.items()
        if w not in specials
    ]
    tokens = list(dict.fromkeys([*specials, *sorted({p for pieces, _ in words for p in pieces})]))
    if vocab_size < len(tokens):
        raise TokenizerError(
            f"vocab_size must be at least {len(tokens)} (5 special tokens and "
            f"{len(tokens) - 5} characters of the training text); got {vocab_size}"
        )
    known = set(tokens)
    while len(tokens) < vocab_size:
        piece_counts: Counter[str] = Counter()
        pair_counts: Counter[tuple[str, str]] = Counter()
        for pieces, count in words:
            for piece in pieces:
                piece_counts[piece] += count
            for pair in pairwise(pieces):
                pair_counts[pair] += count
        if not pair_counts:
            break
        best = max(
            pair_counts,
            key=lambda p: (
                pair_counts[p] / (piece_counts[p[0]] * piece_counts[p[1]]),
                pair_counts[p],
            ),
        )
        joined = best[0] + best[1][2:]
        if joined not in known:
            known.add(joined)
            tokens.append(joined)
        for pieces, _ in words:
            i = 0
            while i < len(pieces) - 1:
                if (pieces[i], pieces[i + 1]) == best:
                    pieces[i : i + 2] = [joined]
                i += 1
    return WordPiece(tokens, **options)
