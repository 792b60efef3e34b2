import hashlib
import threading
from functools import partial
from http.server import HTTPServer, SimpleHTTPRequestHandler

import pytest

from glassbox.data import DataError, DataWarning, corpus_name, iter_text, load_text
from glassbox.data import corpus as corpus_module
from glassbox.data.corpus import default_corpus, download


def test_default_corpus_is_there_without_a_download():
    text = default_corpus()
    assert len(text) > 100_000  # Python's reference docs; plenty for a char model
    assert "statement" in text


@pytest.fixture
def http_server(tmp_path):
    """Serve tmp_path/www on 127.0.0.1 for the duration of a test."""
    root = tmp_path / "www"
    root.mkdir()
    handler = partial(SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_download_checks_the_hash_and_caches(http_server, tmp_path):
    root, url = http_server
    body = b"To be, or not to be\n" * 100
    (root / "input.txt").write_bytes(body)
    dest = tmp_path / "cache" / "input.txt"
    path = download(f"{url}/input.txt", dest, hashlib.sha256(body).hexdigest())
    assert path.read_bytes() == body
    (root / "input.txt").unlink()  # a second call must not need the server
    assert download(f"{url}/input.txt", dest, hashlib.sha256(body).hexdigest()) == dest


def test_download_with_the_wrong_hash_leaves_nothing(http_server, tmp_path):
    root, url = http_server
    (root / "input.txt").write_bytes(b"tampered")
    dest = tmp_path / "cache" / "input.txt"
    with pytest.raises(DataError, match="expected 0000"):
        download(f"{url}/input.txt", dest, "0" * 64)
    assert not list(dest.parent.iterdir())


def test_offline_download_says_so(tmp_path):
    # Nothing listens on port 9 of loopback: the connection is refused at once.
    with pytest.raises(DataError, match="are you offline"):
        download("http://127.0.0.1:9/input.txt", tmp_path / "x.txt", "0" * 64, timeout=5)


def test_shakespeare_spec_downloads_from_the_canonical_url(http_server, tmp_path, monkeypatch):
    root, url = http_server
    monkeypatch.setenv("GLASSBOX_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(
        corpus_module, "SHAKESPEARE_SHA256", hashlib.sha256(b"ROMEO:\nhello\n").hexdigest()
    )
    (root / "input.txt").write_bytes(b"ROMEO:\nhello\n")
    monkeypatch.setattr(corpus_module, "SHAKESPEARE_URL", f"{url}/input.txt")
    assert load_text("shakespeare") == "ROMEO:\nhello\n"
    assert (tmp_path / "cache" / "tinyshakespeare.txt").exists()


def test_canonical_url_and_hash():
    assert corpus_module.SHAKESPEARE_URL.endswith("char-rnn/master/data/tinyshakespeare/input.txt")
    assert corpus_module.SHAKESPEARE_SHA256.startswith("86c4e6aa9db7")


def test_files_are_read_in_chunks(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("héllo wörld", encoding="utf-8")
    assert list(iter_text(str(path), chunk_chars=4)) == ["héll", "o wö", "rld"]


def test_bad_files_get_clear_errors(tmp_path):
    with pytest.raises(DataError, match="no such data file"):
        load_text(str(tmp_path / "missing.txt"))
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(DataError, match="is empty"):
        load_text(str(tmp_path / "empty.txt"))
    (tmp_path / "latin1.txt").write_bytes("café".encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8"):
        load_text(str(tmp_path / "latin1.txt"))


def _tree(root):
    """A small source tree: two Python files, a note, a hidden folder and a Latin-1 file."""
    (root / "pkg" / "sub").mkdir(parents=True)
    (root / "pkg" / "a.py").write_text("x = 1\n", encoding="utf-8")
    (root / "pkg" / "sub" / "b.py").write_text("y = 'ü'", encoding="utf-8")  # no final newline
    (root / "pkg" / "notes.txt").write_text("notes\n", encoding="utf-8")
    (root / "pkg" / ".git").mkdir()
    (root / "pkg" / ".git" / "HEAD").write_text("ref: refs/heads/main\n", encoding="utf-8")
    (root / "pkg" / "sub" / "old.py").write_bytes("z = 'café'\n".encode("latin-1"))
    return root / "pkg"


def test_a_folder_is_every_visible_file_in_sorted_order(tmp_path):
    pkg = _tree(tmp_path)
    with pytest.warns(DataWarning, match="old.py: not UTF-8"):
        text = load_text(str(pkg))
    # a.py, notes.txt, sub/b.py (given a newline so the next file starts a line); the
    # Latin-1 file is skipped with a warning and .git is hidden
    assert text == "x = 1\nnotes\ny = 'ü'\n"


def test_a_glob_names_files_across_folders(tmp_path):
    pkg = _tree(tmp_path)
    (pkg / "sub" / "old.py").unlink()
    assert load_text(str(pkg / "**" / "*.py")) == "x = 1\ny = 'ü'\n"
    assert corpus_name(str(pkg / "**" / "*.py")).endswith("*.py")
    assert corpus_name(str(pkg)) == "pkg"
    with pytest.raises(DataError, match="matches no files"):
        load_text(str(pkg / "**" / "*.rs"))


def test_a_folder_is_streamed_in_pieces(tmp_path):
    pkg = _tree(tmp_path)
    (pkg / "sub" / "old.py").unlink()
    pieces = list(iter_text(str(pkg), chunk_chars=4))
    assert max(len(p) for p in pieces) <= 5  # a file's last piece may gain its newline
    assert "".join(pieces) == load_text(str(pkg))


def test_bad_folders_get_clear_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="folder with no files"):
        load_text(str(tmp_path / "empty"))
    (tmp_path / "blank").mkdir()
    (tmp_path / "blank" / "a.txt").write_text("")
    (tmp_path / "blank" / "b.txt").write_text("")
    with pytest.raises(DataError, match="is empty"):
        load_text(str(tmp_path / "blank"))
    # a file that goes bad after its first piece has been used cannot be skipped cleanly
    (tmp_path / "late").mkdir()
    (tmp_path / "late" / "a.txt").write_bytes(b"fine text " * 3 + "café".encode("latin-1"))
    (tmp_path / "late" / "b.txt").write_text("more\n")
    with pytest.raises(DataError, match="a.txt is not UTF-8"):
        list(iter_text(str(tmp_path / "late"), chunk_chars=4))
