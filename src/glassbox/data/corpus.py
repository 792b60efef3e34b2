"""Training text: an embedded default, tiny Shakespeare on request, or UTF-8 files
(one file, a folder of them, or a glob pattern such as `src/**/*.py`).

The default corpus is the reference documentation that every CPython installation ships
for `help()` (the `pydoc_data.topics` module, about 460 KB of English prose and code):
it is on any machine Python runs on, so the first `glassbox train` needs no download.
"""

from __future__ import annotations

import glob
import hashlib
import os
import urllib.error
import urllib.request
import warnings
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


class DataWarning(UserWarning):
    """A file of a folder or glob that was left out of the corpus (not UTF-8 text)."""


GLOB_CHARS = frozenset("*?[")


def corpus_name(spec: str) -> str:
    """A short name for a data spec, for logs and run metadata."""
    if spec in ("default", "shakespeare") or GLOB_CHARS & set(spec):
        return spec
    return Path(spec).name


def data_files(spec: str) -> list[Path]:
    """The files a path, folder or glob names, in a fixed (sorted) order.

    A folder means every file below it, hidden ones (`.git`, `.DS_Store`) excepted; a
    pattern with `*`, `?` or `[` is a glob, where `**` crosses folders.
    """
    if GLOB_CHARS & set(spec) and not Path(spec).exists():
        files = sorted(Path(p) for p in glob.glob(spec, recursive=True) if Path(p).is_file())
        if not files:
            raise DataError(f"--data {spec} matches no files")
        return files
    path = Path(spec)
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(
            p
            for p in path.rglob("*")
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
        )
        if not files:
            raise DataError(f"--data {spec} is a folder with no files in it")
        return files
    raise DataError(
        f"no such data file: {spec} (use default, shakespeare, a file, a folder or a glob)"
    )


def iter_text(spec: str, chunk_chars: int = CHUNK_CHARS) -> Iterator[str]:
    """The text named by spec (`default`, `shakespeare`, a file, a folder or a glob), in
    pieces of at most chunk_chars characters.

    Reading in pieces keeps memory bounded for corpora larger than RAM. The files of a
    folder or glob follow each other in sorted order, each ending in a newline; one that
    is not UTF-8 text (a binary, a Latin-1 test file) is skipped with a DataWarning,
    since a folder of sources often holds a few. A single file that is not UTF-8 is an
    error.
    """
    if spec == "default":
        yield default_corpus()
        return
    files = [shakespeare_path()] if spec == "shakespeare" else data_files(spec)
    several = len(files) > 1
    total = 0
    for path in files:
        for chunk in _file_chunks(path, chunk_chars, several):
            total += len(chunk)
            yield chunk
    if total == 0:
        raise DataError(f"{spec} is empty: there is nothing to train on")


def _file_chunks(path: Path, chunk_chars: int, one_of_several: bool) -> Iterator[str]:
    """One file's text in pieces. As one of several files its last piece ends in a newline
    (so the next file starts on a line of its own), and a file that is not UTF-8 is
    skipped with a warning if nothing of it has been yielded yet."""
    offset, pending = 0, ""
    with open(path, encoding="utf-8", newline="") as f:
        while True:
            try:
                chunk = f.read(chunk_chars)
            except UnicodeDecodeError as err:
                if one_of_several and offset == len(pending):  # nothing of it yielded yet
                    warnings.warn(f"skipped {path}: not UTF-8 text", DataWarning, stacklevel=4)
                    return
                raise DataError(
                    f"{path} is not UTF-8 text (bad byte near character {offset + err.start})"
                ) from None
            if not chunk:
                break
            if pending:
                yield pending
            offset += len(chunk)
            pending = chunk
    if one_of_several and pending and not pending.endswith("\n"):
        pending += "\n"
    if pending:
        yield pending


def load_text(spec: str) -> str:
    """The whole text named by spec (an empty file is an error)."""
    return "".join(iter_text(spec))
