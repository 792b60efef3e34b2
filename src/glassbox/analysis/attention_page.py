"""A self-contained HTML page for exploring attention patterns, one head at a time.

Pick a layer and a head, hover a token (the query) and every token it attends to (the
keys) lights up in proportion to its weight; a heatmap shows the head's whole pattern.
Everything (data, CSS, JS) is inline, so the file opens from disk, offline, and can be
mailed or attached to a notebook without a server or any fetch from the network.

The data travels as JSON inside ``<script type="application/json">`` and the page puts
tokens on screen with ``textContent``, never ``innerHTML``: a token such as
``</script><script>alert(1)`` is shown as text, not run.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import numpy as np

from glassbox.errors import GlassboxError

# Weights are stored to 5 decimals: the page shows 3, and 5 keeps a causal GPT-2-sized
# page (12 layers x 12 heads x 64 x 64 tokens) at 3.5 MB instead of 7 at full precision.
DECIMALS = 5

# Whitespace made visible, so that " the" and "the" or "\n" and "" don't look alike.
_VISIBLE = {" ": "\u2423", "\n": "\u21b5", "\t": "\u2192", "\r": "\u240d"}


def visible_token(token: str) -> str:
    """How a token is shown: spaces as ␣, newlines as ↵, tabs as →, other control
    characters as their code, the empty token as ∅.

    >>> visible_token(" the\\n")
    '␣the↵'
    """
    if token == "":
        return "\u2205"
    out = []
    for ch in token:
        if ch in _VISIBLE:
            out.append(_VISIBLE[ch])
        elif ord(ch) < 32 or ord(ch) == 127:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return "".join(out)


def _as_array(patterns: Any) -> np.ndarray:
    if hasattr(patterns, "detach"):  # a torch tensor, maybe bf16 or on a GPU
        patterns = patterns.detach().float().cpu().numpy()
    try:
        return np.asarray(patterns, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise GlassboxError(f"patterns must be a numeric array or tensor ({e})") from None


def _check(
    tokens: list[str], keys: list[str], arr: np.ndarray, layer_names: list[str] | None
) -> None:
    if arr.ndim != 4:
        raise GlassboxError(
            f"patterns must be 4-D (n_layer, n_head, T, T), got shape {tuple(arr.shape)}"
        )
    n_layer, n_head, t_query, t_key = arr.shape
    if not all(isinstance(t, str) for t in tokens + keys):
        raise GlassboxError("tokens must be a list of strings")
    if t_query != len(tokens) or t_key != len(keys):
        raise GlassboxError(
            f"patterns' last two dims {(t_query, t_key)} must equal (len(tokens), "
            f"len(key_tokens or tokens)) = {(len(tokens), len(keys))}"
        )
    if n_layer == 0 or n_head == 0 or not tokens:
        raise GlassboxError(f"patterns has an empty dimension: shape {tuple(arr.shape)}")
    if not np.isfinite(arr).all():
        raise GlassboxError("patterns has non-finite values (NaN or inf); pass softmax weights")
    if (arr < 0).any():
        raise GlassboxError("patterns has negative values; pass softmax weights, not scores")
    if layer_names is not None and len(layer_names) != n_layer:
        raise GlassboxError(f"got {len(layer_names)} layer_names for {n_layer} layers")


def _script_json(data: Any) -> str:
    """JSON that is safe inside a <script> element: '<' can't close it, '&' can't start an
    entity, and the two line separators JavaScript once refused are escaped too."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(ch, esc)
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def attention_html(
    tokens: list[str],
    patterns: Any,
    *,
    title: str = "attention patterns",
    layer_names: list[str] | None = None,
    key_tokens: list[str] | None = None,
) -> str:
    """One standalone HTML page showing `patterns`, shape (n_layer, n_head, T, T), query
    x key, over `tokens` (length T). For cross-attention, `key_tokens` (length S) are the
    source tokens the queries read, patterns are (n_layer, n_head, T, S), and the page
    shows the keys in a row of their own (`#keys`) above the queries.

    Rows are softmax weights: they sum to 1, with zeros above the diagonal for a causal
    model. The page has selects `#layer` and `#head`, tokens as `.tok[data-index]` spans,
    a `#readout` that lists "token: weight" for the hovered query, and a `#heatmap`.

    >>> page = attention_html(["a", "b"], np.array([[[[1, 0], [0.25, 0.75]]]]))
    >>> page.startswith("<!DOCTYPE html>")
    True
    """
    arr = _as_array(patterns)
    tokens = list(tokens)
    keys = tokens if key_tokens is None else list(key_tokens)
    _check(tokens, keys, arr, layer_names)
    n_layer, n_head = arr.shape[:2]
    data = {
        "tokens": [visible_token(t) for t in tokens],
        "keys": None if key_tokens is None else [visible_token(t) for t in keys],
        "layers": list(layer_names) if layer_names else [f"layer {i}" for i in range(n_layer)],
        "heads": [f"head {h}" for h in range(n_head)],
        "patterns": np.round(arr, DECIMALS).tolist(),  # [layer][head][query][key]
    }
    return _PAGE.format(title=html.escape(title), data=_script_json(data), css=_CSS, js=_JS)


def write_attention_html(path: str | Path, tokens: list[str], patterns: Any, **kw: Any) -> Path:
    """Write `attention_html(tokens, patterns, **kw)` to `path` as UTF-8; returns the path."""
    path = Path(path)
    path.write_text(attention_html(tokens, patterns, **kw), encoding="utf-8")
    return path


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>{css}</style>
</head>
<body>
<h1>{title}</h1>
<p class="controls">
  <label>Layer <select id="layer"></select></label>
  <label>Head <select id="head"></select></label>
  <span class="hint">Hover a token to see what it attends to.</span>
</p>
<div id="keys"></div>
<div id="tokens"></div>
<div id="readout">Hover a token.</div>
<canvas id="heatmap"></canvas>
<script type="application/json" id="data">{data}</script>
<script>{js}</script>
</body>
</html>
"""

_CSS = """
body { font-family: sans-serif; margin: 1.5em; color: #222; }
.hint { color: #777; margin-left: 1em; }
#tokens, #keys { margin: 1em 0; }
#keys:not(:empty)::before { content: "source: "; color: #777; }
.tok { display: inline-flex; flex-direction: column; align-items: center; margin: 2px 1px;
       padding: 2px 3px; border: 1px solid #ddd; border-radius: 3px; cursor: default; }
.tok.query { outline: 2px solid #0057b8; }
.tok .text { font-family: monospace; white-space: pre; }
.tok .w { font-size: 0.65em; color: #555; min-height: 1.2em; }  /* weight under the token */
#readout { font-family: monospace; white-space: pre; margin: 1em 0; }
#heatmap { border: 1px solid #ccc; image-rendering: pixelated; }
"""

# The JS is written to be read: state is (layer, head, query), and show() redraws
# everything from it. Weights colour key tokens as rgba(255, 99, 71, weight); for
# self-attention the query row is also the key row.
_JS = """
const data = JSON.parse(document.getElementById("data").textContent);
const T = data.tokens.length;
const keyNames = data.keys || data.tokens;  // cross-attention: the source tokens
const S = keyNames.length;
const layerSel = document.getElementById("layer");
const headSel = document.getElementById("head");
const readout = document.getElementById("readout");
const canvas = document.getElementById("heatmap");
const cell = Math.max(2, Math.min(16, Math.floor(320 / Math.max(T, S))));  // px per cell
let query = null;  // index of the hovered token, or null

function fillSelect(select, names) {
  names.forEach((name, i) => select.add(new Option(name, i)));
  select.addEventListener("change", show);
}
fillSelect(layerSel, data.layers);
fillSelect(headSel, data.heads);

function tokenSpans(texts, parent, hoverable) {
  return texts.map((text, i) => {
    const span = document.createElement("span");
    span.className = "tok";
    span.dataset.index = i;
    const label = document.createElement("span");
    label.className = "text";
    label.textContent = text;  // textContent, never innerHTML: tokens are data, not markup
    const weight = document.createElement("span");
    weight.className = "w";
    span.append(label, weight);
    if (hoverable) {
      span.tabIndex = 0;  // keyboard users can focus tokens too
      const pick = () => { query = i; show(); };
      span.addEventListener("mouseenter", pick);
      span.addEventListener("focus", pick);
    }
    document.getElementById(parent).append(span);
    return span;
  });
}
const spans = tokenSpans(data.tokens, "tokens", true);  // the queries
const keySpans = data.keys ? tokenSpans(data.keys, "keys", false) : spans;

canvas.width = S * cell;
canvas.height = T * cell;
canvas.addEventListener("mousemove", (e) => {
  const row = Math.floor(e.offsetY / cell);
  if (row >= 0 && row < T && row !== query) { query = row; show(); }
});

function pattern() {  // the selected head's T x S weights, [query][key]
  return data.patterns[layerSel.value][headSel.value];
}

function show() {
  const p = pattern();
  const row = query === null ? null : p[query];
  const lines = [];
  spans.forEach((span, i) => span.classList.toggle("query", i === query));
  keySpans.forEach((span, j) => {
    const w = row ? row[j] : 0;
    span.style.background = `rgba(255, 99, 71, ${w})`;
    span.title = row ? w.toFixed(3) : "";
    span.querySelector(".w").textContent = row && w > 0 ? w.toFixed(3) : "";
    if (row && w > 0) lines.push(`${keyNames[j]}: ${w.toFixed(3)}`);
  });
  readout.textContent = row
    ? `${data.tokens[query]} (position ${query}) attends to:\\n` + lines.join("\\n")
    : "Hover a token.";
  drawHeatmap(p);
}

function drawHeatmap(p) {
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "white";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  for (let q = 0; q < T; q++) {
    for (let k = 0; k < S; k++) {
      ctx.fillStyle = `rgba(255, 99, 71, ${p[q][k]})`;
      ctx.fillRect(k * cell, q * cell, cell, cell);
    }
  }
  if (query !== null) {  // outline the hovered query's row
    ctx.strokeStyle = "#0057b8";
    ctx.strokeRect(0.5, query * cell + 0.5, S * cell - 1, cell - 1);
  }
}

show();
"""
