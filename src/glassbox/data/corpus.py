"""Training text: an embedded default, tiny Shakespeare on request, or any UTF-8 file.

The default corpus is the reference documentation that every CPython installation ships
for `help()` (the `pydoc_data.topics` module, about 460 KB of English prose and code):
it is on any machine Python runs on, so the first `glassbox train` needs no download.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from glassbox.errors import GlassboxError

SHAKESPEARE_URL = (
    "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
)
SHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
CHUNK_CHARS = 1 << 22  # text is read and tokenized in pieces of this many characters


class DataError(GlassboxError):
    """Missing, empty, unreadable or too-short training data."""


def default_corpus() -> str:
    """Python's own reference documentation, as shipped with the interpreter."""
    try:
        from pydoc_data.topics import topics
    except ImportError:  # some distributions split pydoc_data out; fall back to the Zen
        import codecs
        import this

        return codecs.decode(this.s, "rot13")
    return "\n\n".join(topics[name].strip() for name in sorted(topics)) + "\n"


def cache_dir() -> Path:
    """Downloads live in $GLASSBOX_CACHE, else $XDG_CACHE_HOME/glassbox, else ~/.cache."""
    if "GLASSBOX_CACHE" in os.environ:
        return Path(os.environ["GLASSBOX_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "glassbox"


def download(url: str, dest: Path, sha256: str, timeout: float = 30.0) -> Path:
    """Fetch url into dest (once), checking its sha256; a bad or partial file never stays."""
    if dest.exists():
        if _sha256(dest) == sha256:
            return dest
        dest.unlink()  # a corrupted cache entry: fetch it again
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + f".part{os.getpid()}")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as f:
            while chunk := response.read(1 << 16):
                f.write(chunk)
    except (urllib.error.URLError, OSError) as err:
        tmp.unlink(missing_ok=True)
        reason = getattr(err, "reason", err)
        raise DataError(
            f"could not download {url} ({reason}); are you offline? "
            f"Download it by hand and pass --data PATH instead"
        ) from None
    got = _sha256(tmp)
    if got != sha256:
        tmp.unlink()
        raise DataError(f"download of {url} has sha256 {got}, expected {sha256}")
    os.replace(tmp, dest)
    return dest


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def shakespeare_path() -> Path:
    """Tiny Shakespeare (char-rnn's input.txt), downloaded once into the cache."""
    return download(SHAKESPEARE_URL, cache_dir() / "tinyshakespeare.txt", SHAKESPEARE_SHA256)


def corpus_name(spec: str) -> str:
    """A short name for a data spec, for logs and run metadata."""
    return spec if spec in ("default", "shakespeare") else Path(spec).name


def iter_text(spec: str, chunk_chars: int = CHUNK_CHARS) -> Iterator[str]:
    """The text named by spec (`default`, `shakespeare` or a path), in pieces.

    Reading in pieces keeps memory bounded for files larger than RAM.
    """
    if spec == "default":
        yield default_corpus()
        return
    path = shakespeare_path() if spec == "shakespeare" else Path(spec)
    if not path.is_file():
        raise DataError(f"no such data file: {spec} (use default, shakespeare or a file path)")
    offset = 0
    with open(path, encoding="utf-8", newline="") as f:
        while True:
            try:
                chunk = f.read(chunk_chars)
            except UnicodeDecodeError as err:
                raise DataError(
                    f"{spec} is not UTF-8 text (bad byte near character {offset + err.start})"
                ) from None
            if not chunk:
                if offset == 0:
                    raise DataError(f"{spec} is empty: there is nothing to train on")
                return
            offset += len(chunk)
            yield chunk


def load_text(spec: str) -> str:
    """The whole text named by spec (an empty file is an error)."""
    return "".join(iter_text(spec))
