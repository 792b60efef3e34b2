"""Retrieval-augmented generation, each step written out: chunk documents, embed the chunks,
store the vectors, retrieve the nearest ones to a question, and write them into a prompt.

Why from scratch: every step of a RAG pipeline can be looked at here. A chunk is a span
of WordPiece tokens of one file, kept as its (start, end) character offsets, so a hit
always points back into its source. The index is a folder of plain files (numpy's .npy
and JSON, never pickle) that a reader can open with numpy alone:

    manifest.json       format, version, the model and how it pools, the chunk settings,
                        the number of chunks, and each file's size and sha256
    vectors.npy         (N, C) float32 or float16, one unit vector per chunk
    chunks.jsonl        one JSON object per chunk: source, start, end, text
    chunk_offsets.npy   (N + 1,) int64: where each line of chunks.jsonl starts, so a hit's
                        text is read without parsing the other lines
    ivf_*.npy           only with ivf_lists > 0: the approximate index (see build_ivf)

Exact search is one matrix product per block of rows of the memory-mapped vectors and
`np.argpartition` for the top k, which reads a million 384-d chunks in well under a
second. A build is written into a temporary folder beside the index and renamed into
place when complete, so a failed or killed build never leaves half an index and never
removes the old one before the new one is whole.

>>> encoder = load_encoder("path/to/all-MiniLM-L6-v2")  # doctest: +SKIP
>>> index = build_index(["notes/"], "notes.index", encoder)  # doctest: +SKIP
>>> hits = retrieve(index, encoder, "Where is the key?", k=2)  # doctest: +SKIP
>>> [hit.chunk.source for hit in hits]  # doctest: +SKIP
['notes/house.txt', 'notes/car.txt']
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from glassbox.checkpoint import atomic_write
from glassbox.data.corpus import GLOB_CHARS, DataError, DataWarning, data_files
from glassbox.embed import SentenceEncoder
from glassbox.errors import GlassboxError
from glassbox.tokenizers import WordPiece
from glassbox.vector_search import IVF, build_ivf, ivf_search, search

FORMAT = "glassbox-rag-index"
VERSION = 1
MANIFEST = "manifest.json"
VECTORS = "vectors.npy"
CHUNKS = "chunks.jsonl"
OFFSETS = "chunk_offsets.npy"
IVF_FILES = ("ivf_centroids.npy", "ivf_ids.npy", "ivf_bounds.npy")
DTYPES = ("float32", "float16")

# The index records the vector its model gives this text; a query's model must give the
# same one. Names can differ (a folder moved, a hub name vs its cache folder) while the
# weights are the same, and one name can hold other weights; the vectors cannot lie.
PROBE = "A retrieval index remembers which model embedded its chunks."
PROBE_TOLERANCE = 1e-3  # largest per-coordinate difference between the same model's vectors


class RagError(GlassboxError):
    """No documents, an empty question, a broken index, or a model that is not the index's."""


@dataclass(frozen=True)
class Chunk:
    """A span of one source: `text == open(source).read()[start:end]` (characters)."""

    source: str
    start: int
    end: int
    text: str


@dataclass(frozen=True)
class Hit:
    """One retrieved chunk: its rank (1 is best), its row in the index, its score."""

    rank: int
    id: int
    score: float
    chunk: Chunk


# ---- chunk ---------------------------------------------------------------------------------


def chunk_text(
    text: str, tokenizer: WordPiece, *, source: str = "", chunk_tokens: int = 128, overlap: int = 32
) -> list[Chunk]:
    """Windows of `chunk_tokens` WordPiece tokens, each sharing about `overlap` tokens with
    the one before, as character spans of `text`.

    Windows start and end at word boundaries (never on a "##" piece), so a chunk's text
    tokenizes to exactly its window's tokens and reads as whole words; to get there a
    window ends up to one word early and starts up to one word earlier than `overlap`
    asks. A word is cut only where ending before it would leave a window with nothing
    new (a word about as long as a window); the next chunk then starts at the cut. Text
    between tokens that makes none (whitespace, control characters) may belong to no chunk.

    >>> tok = WordPiece(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "one", "two", "three"])
    >>> [c.text for c in chunk_text("one two three two one", tok, chunk_tokens=3, overlap=1)]
    ['one two three', 'three two one']
    """
    if chunk_tokens < 1:
        raise RagError(f"chunk_tokens must be at least 1; got {chunk_tokens}")
    if not 0 <= overlap < chunk_tokens:
        raise RagError(f"overlap must be in [0, chunk_tokens={chunk_tokens}); got {overlap}")
    ids, spans = tokenizer.encode_with_offsets(text)
    word_start = [not tokenizer.tokens[i].startswith("##") for i in ids]
    chunks = []
    for a, b in _windows(word_start, chunk_tokens, overlap):
        start, end = spans[a][0], spans[b - 1][1]
        chunks.append(Chunk(source, start, end, text[start:end]))
    return chunks


def _windows(word_start: list[bool], size: int, overlap: int) -> Iterator[tuple[int, int]]:
    """Token ranges [a, b) covering every token: at most `size` long, each ending past the
    one before, starting on a word start and ending before one where words allow, and
    sharing at least `overlap` tokens with the one before, or none."""
    n, a, end = len(word_start), 0, 0  # end: where the window before ended
    while a < n:
        b = min(a + size, n)
        if b < n and not word_start[b]:  # end before the word it would cut, if that moves on
            b = next((j for j in range(b - 1, max(a, end), -1) if word_start[j]), b)
        yield a, b
        end = b
        if b == n:
            return
        # the next window starts at the last word start that leaves `overlap` tokens shared
        a = next((j for j in range(b - overlap, a, -1) if word_start[j]), b)


def document_files(docs: Sequence[str | Path]) -> list[Path]:
    """The files that DOCS name (files, folders, globs), each once, in the order given."""
    files: dict[Path, Path] = {}
    for spec in map(str, docs):
        try:
            found = data_files(spec)
        except DataError:
            if Path(spec).exists() or GLOB_CHARS & set(spec):
                raise RagError(f"{spec} holds no files to index") from None
            raise RagError(f"no such file or folder: {spec}") from None
        for path in found:
            files.setdefault(path.resolve(), path)
    return list(files.values())


def chunk_files(
    files: Sequence[Path], tokenizer: WordPiece, *, chunk_tokens: int = 128, overlap: int = 32
) -> list[Chunk]:
    """The chunks of every file, file by file. Offsets count characters of the file read as
    UTF-8 with its line endings kept. A file that is not UTF-8 is skipped with a
    DataWarning when it is one of several, and an error when it is the only one."""
    chunks: list[Chunk] = []
    for path in files:
        try:
            text = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError as err:
            if len(files) == 1:
                raise RagError(f"{path} is not UTF-8 text (bad byte at {err.start})") from None
            warnings.warn(f"skipped {path}: not UTF-8 text", DataWarning, stacklevel=2)
            continue
        chunks += chunk_text(
            text, tokenizer, source=str(path), chunk_tokens=chunk_tokens, overlap=overlap
        )
    return chunks


# ---- store ---------------------------------------------------------------------------------


def model_record(encoder: SentenceEncoder) -> dict[str, Any]:
    """What an index records of its model: name, dim, pooling, and its vector for PROBE."""
    name = encoder.name
    if name and Path(name).is_dir():
        name = str(Path(name).resolve())  # a relative folder would not be found from elsewhere
    probe = encoder.encode([PROBE])[0]  # (C,)
    return {
        "name": name,
        "dim": encoder.dim,
        "pooling": encoder.pooling,
        "normalize": encoder.normalize,
        "max_length": encoder.max_length,
        "probe": [round(float(x), 5) for x in probe],
    }


def build_index(
    docs: Sequence[str | Path],
    out: str | Path,
    encoder: SentenceEncoder,
    *,
    chunk_tokens: int = 128,
    overlap: int = 32,
    dtype: str = "float32",
    batch_size: int = 64,
    ivf_lists: int = 0,
    overwrite: bool = False,
    progress: bool = False,
) -> Index:
    """Chunk DOCS (files, folders, globs), embed every chunk and write the index to `out`.

    `out` may be missing, empty, or an index (which is replaced once the new one is
    complete); anything else is refused unless `overwrite`, which deletes it.
    """
    check_out(out, overwrite)
    _check_dtype(dtype)
    room = encoder.max_length - 2  # [CLS] and [SEP] take two of the tokens the model reads
    if chunk_tokens > room:
        raise RagError(
            f"chunks of {chunk_tokens} tokens are longer than the {room} that {encoder.name} "
            "reads after [CLS] and [SEP]; choose a smaller chunk size"
        )
    files = document_files(docs)
    chunks = chunk_files(files, encoder.tokenizer, chunk_tokens=chunk_tokens, overlap=overlap)
    if not chunks:
        raise RagError(f"no text to index: the {len(files)} file(s) hold no words")
    vectors = encoder.encode([c.text for c in chunks], batch_size=batch_size, progress=progress)
    return write_index(
        out, chunks, vectors, model_record(encoder), chunk_tokens=chunk_tokens,
        overlap=overlap, dtype=dtype, ivf_lists=ivf_lists, overwrite=overwrite,
    )  # fmt: skip


def check_out(out: str | Path, overwrite: bool) -> None:
    """Refuse to build into something that is neither missing, empty, nor an index."""
    path = Path(out)
    if not path.exists() or overwrite or is_index(path):
        return
    if path.is_dir() and not any(path.iterdir()):
        return
    kind = "folder" if path.is_dir() else "file"
    raise RagError(
        f"{out} is a {kind} that is not a glassbox index; choose another --out, or pass "
        "--overwrite to delete it and write the index there"
    )


def _check_dtype(dtype: str) -> None:
    if dtype not in DTYPES:
        raise RagError(f"dtype must be one of {', '.join(DTYPES)}; got {dtype!r}")


def is_index(path: Path) -> bool:
    """Whether `path` is a folder whose manifest says it is an index (of any version)."""
    try:
        return json.loads((path / MANIFEST).read_bytes()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def write_index(
    out: str | Path,
    chunks: Sequence[Chunk],
    vectors: np.ndarray,
    model: dict[str, Any],
    *,
    chunk_tokens: int,
    overlap: int,
    dtype: str = "float32",
    ivf_lists: int = 0,
    overwrite: bool = False,
    seed: int = 0,
) -> Index:
    """Write chunks and their vectors (N, C) as an index folder at `out`, atomically.

    Everything is written into `.NAME.tmpPID` beside `out`, synced, then renamed into
    place; an existing `out` is first renamed to `.NAME.oldPID` and deleted after.
    """
    check_out(out, overwrite)
    _check_dtype(dtype)
    if not chunks:
        raise RagError("no chunks to index")
    if not 0 <= ivf_lists <= len(chunks):
        raise RagError(f"ivf_lists must be in [0, {len(chunks)}] (the chunks); got {ivf_lists}")
    if vectors.ndim != 2 or len(vectors) != len(chunks) or vectors.shape[1] != model["dim"]:
        raise RagError(
            f"vectors of shape {vectors.shape} do not fit {len(chunks)} chunks of "
            f"dim {model['dim']}"
        )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        stored = np.ascontiguousarray(vectors, dtype=dtype)  # (N, C)
        _write_array(tmp / VECTORS, stored)
        _write_array(tmp / OFFSETS, _write_chunks(tmp / CHUNKS, chunks))
        manifest: dict[str, Any] = {
            "format": FORMAT,
            "version": VERSION,
            "model": model,
            "chunking": {
                "unit": "wordpiece tokens",
                "chunk_tokens": chunk_tokens,
                "overlap": overlap,
            },
            "count": len(chunks),
            "dim": int(stored.shape[1]),
            "dtype": dtype,
            "sources": len({c.source for c in chunks}),
        }
        if ivf_lists:
            ivf = build_ivf(stored, ivf_lists, seed=seed)
            for name, array in zip(IVF_FILES, (ivf.centroids, ivf.ids, ivf.bounds), strict=True):
                _write_array(tmp / name, array)
            manifest["ivf"] = {"lists": ivf_lists, "seed": seed}
        names = [VECTORS, CHUNKS, OFFSETS, *(IVF_FILES if ivf_lists else ())]
        manifest["files"] = {
            name: {"bytes": (tmp / name).stat().st_size, "sha256": _sha256(tmp / name)}
            for name in names
        }
        atomic_write(tmp / MANIFEST, _manifest_json(manifest).encode())
        _fsync_dir(tmp)
        _publish(tmp, out)
    except BaseException:  # an error or Ctrl-C: the old index stays, the new one goes
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return load_index(out)


def _manifest_json(manifest: dict[str, Any]) -> str:
    """Indented JSON with each list of numbers (the probe vector) on one line."""
    text = json.dumps(manifest, indent=1)
    # a list that json.dumps broke over lines (a JSON string never holds a raw newline)
    return re.sub(r"\[(\n[-+.\deE,\s]+)\]", lambda m: f"[{' '.join(m[1].split())}]", text) + "\n"


def _write_array(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as f:
        np.save(f, array, allow_pickle=False)
        f.flush()
        os.fsync(f.fileno())


def _write_chunks(path: Path, chunks: Sequence[Chunk]) -> np.ndarray:
    """Write one JSON line per chunk; returns where each line starts, (N + 1,) int64."""
    offsets = np.zeros(len(chunks) + 1, dtype=np.int64)  # (N + 1,)
    with open(path, "wb") as f:
        for i, chunk in enumerate(chunks):
            line = (json.dumps(asdict(chunk), ensure_ascii=False) + "\n").encode("utf-8")
            f.write(line)
            offsets[i + 1] = offsets[i] + len(line)
        f.flush()
        os.fsync(f.fileno())
    return offsets


def _publish(tmp: Path, out: Path) -> None:
    """Rename the finished folder `tmp` to `out`. Between the two renames `out` is briefly
    missing; a build killed right then leaves the old index whole in `.NAME.oldPID`."""
    old = out.with_name(f".{out.name}.old{os.getpid()}")
    if out.exists() or out.is_symlink():
        os.replace(out, old)
    os.replace(tmp, out)
    _fsync_dir(out.parent)
    if old.is_dir() and not old.is_symlink():
        shutil.rmtree(old)
    else:
        old.unlink(missing_ok=True)


def _fsync_dir(path: Path) -> None:
    if hasattr(os, "O_DIRECTORY"):
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class Index:
    """An index folder, opened: the manifest, the vectors (N, C) memory-mapped, and where
    each chunk's line starts in chunks.jsonl."""

    path: Path
    manifest: dict[str, Any]
    vectors: np.ndarray  # (N, C), read from disk as a search touches it
    offsets: np.ndarray  # (N + 1,) int64
    ivf: IVF | None = None

    def __len__(self) -> int:
        return len(self.vectors)

    @property
    def model_name(self) -> str:
        return self.manifest["model"]["name"]

    def chunks(self, ids: Sequence[int]) -> list[Chunk]:
        """The chunks with these ids (rows), read from their lines of chunks.jsonl."""
        out = []
        with open(self.path / CHUNKS, "rb") as f:
            for i in ids:
                f.seek(int(self.offsets[i]))
                line = f.read(int(self.offsets[i + 1] - self.offsets[i]))
                try:
                    out.append(Chunk(**json.loads(line)))
                except (ValueError, TypeError):
                    raise RagError(
                        f"chunk {i} of {self.path / CHUNKS} is unreadable; rebuild the index"
                    ) from None
        return out

    def search(
        self, queries: np.ndarray, k: int, *, nprobe: int = 0
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top k (scores, ids) for each query (Q, C): exact, or by IVF with nprobe > 0."""
        if nprobe:
            if self.ivf is None:
                raise RagError(f"{self.path} has no IVF lists (build it with --ivf-lists) to probe")
            return ivf_search(self.ivf, self.vectors, queries, k, nprobe)
        return search(self.vectors, queries, k)


def load_index(path: str | Path, *, verify: bool = False) -> Index:
    """Open an index, checking that its files are there with the sizes, shapes and dtypes
    the manifest records (and, with verify, their sha256: a full read of every file)."""
    path = Path(path)
    if not path.is_dir():
        raise RagError(f"no index at {path}" if not path.exists() else f"{path} is not a folder")
    if not (path / MANIFEST).is_file():
        raise RagError(f"{path} has no {MANIFEST}: not a glassbox index, or an unfinished one")
    try:
        manifest = json.loads((path / MANIFEST).read_bytes())
    except (OSError, ValueError) as err:
        raise RagError(f"{path / MANIFEST} is unreadable ({err})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise RagError(f"{path / MANIFEST} is not a glassbox index manifest")
    if manifest.get("version") != VERSION:
        raise RagError(
            f"{path} is index version {manifest.get('version')}; this glassbox reads {VERSION}"
        )
    try:
        count, dim, dtype = manifest["count"], manifest["dim"], manifest["dtype"]
        for name, info in manifest["files"].items():
            _check_file(path / name, info["bytes"], info["sha256"] if verify else None)
        vectors = _open_array(path / VECTORS, (count, dim), dtype)
        offsets = _open_array(path / OFFSETS, (count + 1,), "int64")
        if offsets[0] != 0 or offsets[-1] != manifest["files"][CHUNKS]["bytes"]:
            raise RagError(f"{path / OFFSETS} does not match {path / CHUNKS}; rebuild the index")
        ivf = None
        if "ivf" in manifest:
            lists = manifest["ivf"]["lists"]
            shapes = ((lists, dim), (count,), (lists + 1,))
            dtypes = ("float32", "int64", "int64")
            ivf = IVF(*map(_open_array, [path / n for n in IVF_FILES], shapes, dtypes))
    except (KeyError, TypeError) as err:
        raise RagError(f"{path / MANIFEST} is incomplete (no {err})") from None
    return Index(path, manifest, vectors, offsets, ivf)


def _check_file(path: Path, size: int, sha256: str | None) -> None:
    if not path.is_file():
        raise RagError(f"{path} is missing; rebuild the index")
    actual = path.stat().st_size
    if actual != size:
        raise RagError(
            f"{path} has {actual} bytes but the manifest records {size}: truncated or "
            "replaced; rebuild the index"
        )
    if sha256 is not None and _sha256(path) != sha256:
        raise RagError(f"{path} does not match its sha256 in the manifest; rebuild the index")


def _open_array(path: Path, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    """An .npy file memory-mapped read-only, checked to have this shape and dtype."""
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise RagError(f"{path} is unreadable ({err}); rebuild the index") from None
    if array.shape != shape or array.dtype != np.dtype(dtype):
        raise RagError(
            f"{path} holds {array.dtype} {array.shape} but the manifest says {dtype} {shape}; "
            "rebuild the index"
        )
    return array


# ---- retrieve ------------------------------------------------------------------------------


def check_query(index: Index, question: str, k: int, nprobe: int = 0) -> None:
    """Refuse an empty question, k < 1, and nprobe without IVF lists (before any model loads)."""
    if not question.strip():
        raise RagError("the question is empty")
    if k < 1:
        raise RagError(f"k must be at least 1; got {k}")
    if nprobe < 0 or (nprobe and index.ivf is None):
        raise RagError(
            f"nprobe must be 0 (exact search) or, with IVF lists, at least 1; got {nprobe}"
            if nprobe < 0
            else f"{index.path} has no IVF lists (build it with --ivf-lists) to probe"
        )


def check_encoder(index: Index, encoder: SentenceEncoder) -> None:
    """Refuse an encoder that embeds text differently from the index's model."""
    record = index.manifest["model"]
    same = encoder.dim == record["dim"] and (
        np.abs(encoder.encode([PROBE])[0] - np.asarray(record["probe"])).max() <= PROBE_TOLERANCE
    )
    if not same:
        raise RagError(
            f"{index.path} was built with {record['name']}, and {encoder.name or 'this model'} "
            f"embeds text differently; query it with that model (leave out --model)"
        )


def retrieve(
    index: Index, encoder: SentenceEncoder, question: str, k: int = 5, *, nprobe: int = 0
) -> list[Hit]:
    """The k chunks whose vectors are nearest the question's, best first."""
    check_query(index, question, k, nprobe)
    check_encoder(index, encoder)
    query = encoder.encode([question])  # (1, C)
    scores, ids = index.search(query, k, nprobe=nprobe)  # (1, k)
    chunks = index.chunks(ids[0].tolist())
    rows = zip(ids[0].tolist(), scores[0].tolist(), chunks, strict=True)
    return [Hit(rank, i, s, c) for rank, (i, s, c) in enumerate(rows, 1)]


# ---- augment -------------------------------------------------------------------------------


def rag_prompt(question: str, hits: Sequence[Hit]) -> str:
    """The retrieval-augmented prompt: an instruction, the numbered chunks with their
    sources, and the question.

    >>> print(rag_prompt("Who?", [Hit(1, 0, 0.8, Chunk("a.txt", 0, 9, "Ann did."))]))
    Answer the question using only the sources below, citing them by number.
    If they do not hold the answer, say so.
    <BLANKLINE>
    [1] a.txt, characters 0-9
    Ann did.
    <BLANKLINE>
    Question: Who?
    Answer:
    """
    parts = [
        "Answer the question using only the sources below, citing them by number.\n"
        "If they do not hold the answer, say so.\n"
    ]
    for hit in hits:
        c = hit.chunk
        parts.append(f"[{hit.rank}] {c.source}, characters {c.start}-{c.end}\n{c.text.strip()}\n")
    parts.append(f"Question: {question.strip()}\nAnswer:")
    return "\n".join(parts)
