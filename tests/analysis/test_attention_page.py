"""The attention viewer: a page that is self-contained and safe (pure Python), and one that
shows the right numbers when a real mouse hovers a token in real Chromium (browser).

The browser test drives Chromium over the DevTools protocol through a pipe
(--remote-debugging-pipe, the transport Playwright and Puppeteer use), so it needs no
Python package beyond the standard library, no port, and never downloads a browser.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import select
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from glassbox.analysis.attention_page import attention_html, visible_token, write_attention_html
from glassbox.errors import GlassboxError

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1200,900",
]


def causal_patterns(n_layer: int, n_head: int, T: int, seed: int = 0) -> np.ndarray:
    """Random softmax rows with zeros above the diagonal, (n_layer, n_head, T, T)."""
    scores = np.random.default_rng(seed).normal(size=(n_layer, n_head, T, T))
    scores[..., np.triu(np.ones((T, T), dtype=bool), k=1)] = -np.inf
    weights = np.exp(scores - scores.max(-1, keepdims=True))
    return weights / weights.sum(-1, keepdims=True)


# ---------------------------------------------------------------- pure Python


def test_page_is_self_contained():
    page = attention_html(["a", "b", "c"], causal_patterns(2, 3, 3))
    assert page.startswith("<!DOCTYPE html>")
    for forbidden in ("http://", "https://", "src=", "<link", "@import", "url(", "fetch("):
        assert forbidden not in page, forbidden
    assert 'id="layer"' in page and 'id="head"' in page and 'id="readout"' in page


def test_tokens_and_title_are_escaped():
    evil = "</script><script>alert(1)</script>"
    page = attention_html([evil, "&amp;", '"q"'], causal_patterns(1, 1, 3), title="<b>t</b>")
    assert "<script>alert" not in page and "</script><script>" not in page
    assert page.count("<script") == 2  # the data block and the viewer, nothing injected
    assert "<title>&lt;b&gt;t&lt;/b&gt;</title>" in page
    data = re.search(r'<script type="application/json" id="data">(.*?)</script>', page, re.S)
    assert json.loads(data.group(1))["tokens"] == [evil, "&amp;", '"q"']  # intact after parse


def test_whitespace_is_made_visible():
    assert visible_token(" the\n") == "\u2423the\u21b5"
    assert visible_token("\t\x00") == "\u2192\\x00"
    assert visible_token("") == "\u2205"


def test_accepts_torch_and_writes_utf8(tmp_path):
    patterns = torch.softmax(torch.randn(1, 2, 4, 4), dim=-1).to(torch.bfloat16)
    path = write_attention_html(tmp_path / "a.html", ["é", "ß", "\n", "→"], patterns)
    assert path.read_text(encoding="utf-8") == attention_html(["é", "ß", "\n", "→"], patterns)


@pytest.mark.parametrize(
    "tokens, patterns, kw, message",
    [
        (["a", "b"], np.ones((2, 2, 2)), {}, "must be 4-D"),
        (["a", "b"], np.ones((1, 1, 3, 3)) / 3, {}, "= (2, 2)"),
        (["a", "b"], np.ones((1, 1, 2, 2)) / 2, {"key_tokens": ["x", "y", "z"]}, "= (2, 3)"),
        (["a", "b"], np.full((1, 1, 2, 2), np.nan), {}, "non-finite"),
        (["a", "b"], -np.ones((1, 1, 2, 2)), {}, "negative values"),
        ([], np.ones((1, 1, 0, 0)), {}, "empty dimension"),
        (["a", "b"], np.ones((2, 1, 2, 2)) / 2, {"layer_names": ["x"]}, "1 layer_names"),
        (["a", 3], np.ones((1, 1, 2, 2)) / 2, {}, "list of strings"),
        (["a"], "zz", {}, "numeric array"),
    ],
)
def test_bad_inputs_raise_one_clear_line(tokens, patterns, kw, message):
    with pytest.raises(GlassboxError, match=re.escape(message)) as info:
        attention_html(tokens, patterns, **kw)
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------- real browser


class Chromium:
    """Headless Chromium driven over the DevTools protocol on a pipe: Chromium reads
    NUL-terminated JSON commands from fd 3 and writes replies and events to fd 4."""

    def __init__(self, user_data_dir: Path, timeout: float = 30.0):
        self.timeout = timeout
        self.next_id = 0
        self.buffer = b""
        to_child_r, self.to_child = os.pipe()
        self.from_child, from_child_w = os.pipe()
        # Copies at fd >= 10, so placing them at 3 and 4 in the child can't clobber them.
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in (to_child_r, from_child_w)]

        def place_pipes():  # runs in the child between fork and exec
            os.dup2(high[0], 3)
            os.dup2(high[1], 4)

        self.log = open(user_data_dir.parent / "chromium.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [str(CHROMIUM), *CHROMIUM_FLAGS, f"--user-data-dir={user_data_dir}",
             "--remote-debugging-pipe", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log,
            pass_fds=(3, 4), preexec_fn=place_pipes,
        )  # fmt: skip
        for fd in (to_child_r, from_child_w, *high):
            os.close(fd)

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        """Send one command and wait for its reply, skipping the events in between."""
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self.to_child, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            while b"\0" in self.buffer:
                raw, self.buffer = self.buffer.split(b"\0", 1)
                reply = json.loads(raw)
                if reply.get("id") == self.next_id:
                    if "error" in reply:
                        raise RuntimeError(f"{method}: {reply['error']}")
                    return reply["result"]
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.from_child], [], [], left)[0]:
                raise TimeoutError(f"no reply to {method} from Chromium in {self.timeout}s")
            chunk = os.read(self.from_child, 1 << 16)
            if not chunk:
                raise RuntimeError(f"Chromium exited (code {self.proc.poll()}) during {method}")
            self.buffer += chunk

    def open(self, url: str) -> Page:
        """A new tab at `url`, once it has loaded. A new tab first holds about:blank, whose
        readyState is already "complete", so wait for the new URL as well."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        attached = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})
        page = Page(self, attached["sessionId"])
        self.send("Page.navigate", {"url": url}, page.session)
        loaded = f"location.href === {json.dumps(url)} && document.readyState === 'complete'"
        deadline = time.monotonic() + self.timeout
        while not page.eval(loaded):
            assert time.monotonic() < deadline, f"{url} did not finish loading"
            time.sleep(0.05)
        return page

    def close(self) -> None:
        with contextlib.suppress(RuntimeError, TimeoutError, OSError):
            self.send("Browser.close")
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self.to_child)
        os.close(self.from_child)
        self.log.close()


class Page:
    def __init__(self, browser: Chromium, session: str):
        self.browser, self.session = browser, session

    def eval(self, expression: str):
        """Evaluate JS in the page and return its value (JSON-able values only)."""
        params = {"expression": expression, "returnByValue": True, "awaitPromise": True}
        result = self.browser.send("Runtime.evaluate", params, self.session)
        if "exceptionDetails" in result:
            raise RuntimeError(f"page JS failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def select(self, selector: str, value: str) -> None:
        """Choose an <option> as Playwright's select_option does: set it, fire change."""
        self.eval(
            f"(() => {{ const s = document.querySelector({json.dumps(selector)});"
            f" s.value = {json.dumps(value)}; s.dispatchEvent(new Event('change')); }})()"
        )

    def hover(self, selector: str) -> None:
        """Move the real (emulated-input) mouse to the centre of the element."""
        x, y = self.eval(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
            " e.scrollIntoView({block: 'center'}); const r = e.getBoundingClientRect();"
            " return [r.x + r.width / 2, r.y + r.height / 2]; })()"
        )
        params = {"type": "mouseMoved", "x": x, "y": y, "button": "none"}
        self.browser.send("Input.dispatchMouseEvent", params, self.session)


@pytest.fixture
def chromium(tmp_path):
    if not CHROMIUM.exists():
        pytest.skip(
            f"chromium not found at {CHROMIUM}; install Debian's chromium package to run the "
            "browser test"
        )
    profile = tmp_path / "profile"  # a fresh profile every run
    profile.mkdir()
    browser = Chromium(profile)
    try:
        browser.send("Browser.getVersion")  # fails fast if Chromium did not start
    except (RuntimeError, TimeoutError) as e:
        log = (tmp_path / "chromium.log").read_text(errors="replace")[-2000:]
        browser.close()
        pytest.fail(f"Chromium did not answer: {e}\n{log}")
    yield browser
    browser.close()


@pytest.mark.browser
def test_hovering_a_token_shows_its_weights(chromium, tmp_path):
    tokens = ["The", " cat", "<b>sat</b>", "\n", "&amp;", '"on"', " the", " mat",
              "</script><script>window.pwned=1</script>", "."]  # fmt: skip
    T, k = len(tokens), 7
    patterns = causal_patterns(2, 3, T, seed=1)
    path = write_attention_html(tmp_path / "page.html", tokens, patterns, title="cat <test>")
    page = chromium.open(path.as_uri())

    # Escaping held in the real DOM: tokens are text, nothing was injected.
    assert page.eval("document.title") == "cat <test>"
    shown = page.eval("[...document.querySelectorAll('.tok .text')].map(e => e.textContent)")
    assert shown == [visible_token(t) for t in tokens]
    assert page.eval("document.querySelectorAll('#tokens b, #tokens script').length") == 0
    assert page.eval("window.pwned === undefined")

    page.select("#layer", "1")
    page.select("#head", "2")
    page.hover(f'.tok[data-index="{k}"]')

    assert page.eval("document.querySelector('.tok.query').dataset.index") == str(k)
    titles = page.eval("[...document.querySelectorAll('.tok')].map(e => e.title)")
    expected = patterns[1, 2, k]
    np.testing.assert_allclose([float(t) for t in titles], expected, atol=5e-4 + 1e-5)

    readout = page.eval("document.getElementById('readout').textContent").split("\n")
    assert readout[0] == f"{visible_token(tokens[k])} (position {k}) attends to:"
    keys = [j for j in range(T) if expected[j] > 0]  # causal: keys 0..k
    assert keys == list(range(k + 1)) and len(readout) == 1 + len(keys)
    for j, line in zip(keys, readout[1:], strict=True):
        name, weight = line.rsplit(": ", 1)
        assert name == visible_token(tokens[j])
        assert re.fullmatch(r"\d\.\d{3}", weight)
        assert float(weight) == pytest.approx(expected[j], abs=5e-4 + 1e-5)

    # Switching head keeps the hovered query and shows the new head's weights.
    page.select("#head", "0")
    titles = page.eval("[...document.querySelectorAll('.tok')].map(e => e.title)")
    np.testing.assert_allclose([float(t) for t in titles], patterns[1, 0, k], atol=5e-4 + 1e-5)


@pytest.mark.browser
def test_cross_attention_shows_source_keys_for_a_target_query(chromium, tmp_path):
    targets, sources = ["<bos>", "3", "2", "1"], ["1", "2", "3", "<pad>", "<pad>"]
    rng = np.random.default_rng(3)
    weights = rng.random((2, 2, len(targets), len(sources)))
    weights[..., 3:] = 0.0  # padded source positions get nothing
    patterns = weights / weights.sum(-1, keepdims=True)  # (L, H, T_target, S_source)
    path = write_attention_html(tmp_path / "cross.html", targets, patterns, key_tokens=sources)
    page = chromium.open(path.as_uri())
    assert page.eval("document.querySelectorAll('#keys .tok').length") == len(sources)
    page.select("#layer", "1")
    page.select("#head", "0")
    page.hover('#tokens .tok[data-index="2"]')  # the target position that writes "2"
    titles = page.eval("[...document.querySelectorAll('#keys .tok')].map(e => e.title)")
    np.testing.assert_allclose([float(t) for t in titles], patterns[1, 0, 2], atol=5e-4 + 1e-5)
    readout = page.eval("document.getElementById('readout').textContent").split("\n")
    assert readout[0] == "2 (position 2) attends to:"
    assert [line.split(": ")[0] for line in readout[1:]] == ["1", "2", "3"]  # no padding
