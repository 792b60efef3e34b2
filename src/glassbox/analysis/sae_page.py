"""A self-contained HTML page for browsing an SAE's features, one at a time.

Why: a feature is only a column of numbers until you see what it fires on. For each
chosen feature the page shows the contexts from the activation file where it fires
hardest, every token shaded by the feature's activation on it and the top token
outlined; a histogram of its non-zero activations (inline SVG); and the tokens whose
logits its decoder direction raises and lowers through the direct path, the final norm's
gain and centring then the unembedding (W_dec[i] · W_U, the norm's 1/σ left out since it
only scales every logit alike).

As with the attention page (glassbox.analysis.attention_page), everything is inline, the
data travels as JSON in a ``<script type="application/json">`` block, and tokens reach the
screen through ``textContent`` only, so the file opens offline and no token can inject
markup.
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from glassbox.analysis.activations import Activations
from glassbox.analysis.attention_page import _script_json, visible_token
from glassbox.analysis.sae import SAE
from glassbox.errors import GlassboxError
from glassbox.nn.norms import BatchNorm, LayerNorm, RMSNorm
from glassbox.tokenizers import Tokenizer
from glassbox.tokenizers.display import pieces

DECIMALS = 4  # activations and logits on the page: 4 significant decimals is plenty


def parse_features(spec: str, d_sae: int) -> list[int]:
    """Feature indices from "0-49", "3,7,10-12" or "all", each checked to exist.

    >>> parse_features("3,7,10-12", 64)
    [3, 7, 10, 11, 12]
    """
    if spec == "all":
        return list(range(d_sae))
    parts = [re.fullmatch(r"(\d+)(?:-(\d+))?", part.strip()) for part in spec.split(",")]
    if not all(parts):
        raise GlassboxError(f"features must look like 0-49 or 3,7,10-12; got {spec!r}")
    out = [i for m in parts for i in range(int(m[1]), int(m[2] or m[1]) + 1)]
    if not out or not all(0 <= i < d_sae for i in out):
        raise GlassboxError(f"features must be ranges within 0-{d_sae - 1}; got {spec!r}")
    return list(dict.fromkeys(out))  # in the order given, each once


def logit_effects(model: nn.Module, directions: Tensor) -> Tensor:
    """(n, C) residual directions -> (n, V) their direct effect on the logits: through
    the final norm's linear part (LayerNorm: centring and gain; RMSNorm: gain; BatchNorm:
    gain over the running σ; none with post-norm), then W_U."""
    v = directions.double()
    norm = model.ln_f
    if isinstance(norm, LayerNorm):
        v = v - v.mean(dim=-1, keepdim=True)
    if isinstance(norm, BatchNorm):
        bn = norm.norm
        v = v * (bn.weight / (bn.running_var + bn.eps).sqrt()).double()
    elif isinstance(norm, (LayerNorm, RMSNorm)):
        v = v * norm.weight.double()
    return v @ model.W_U.double()  # (n, C) @ (C, V)


@torch.no_grad()
def feature_data(
    sae: SAE,
    acts: Activations,
    split: np.ndarray,
    tokenizer: Tokenizer,
    features: list[int],
    *,
    model: nn.Module | None = None,
    top: int = 12,
    before: int = 24,
    after: int = 4,
    bins: int = 24,
    n_logits: int = 8,
    chunk: int = 8192,
) -> list[dict[str, Any]]:
    """What the page shows for each feature, from the rows of `acts` (`split`, the run's
    train split, supplies the tokens): density, max and mean activation, a histogram of
    the non-zero activations, the `top` contexts where it fires hardest, and, given the
    model, the n_logits tokens its direction promotes and suppresses most."""
    rows = acts.rows
    sel = torch.tensor(features)  # (n,)
    n = len(features)
    count = torch.zeros(n, dtype=torch.int64)  # (n,) rows each fires on
    total = torch.zeros(n, dtype=torch.float64)  # (n,)
    best_v = torch.full((top, n), -1.0)  # (top, n): the largest activations so far
    best_r = torch.zeros((top, n), dtype=torch.int64)  # (top, n): their rows
    for first in range(0, len(rows), chunk):  # pass 1: counts, sums, top rows
        f = sae.encode(torch.from_numpy(np.array(rows[first : first + chunk])))[:, sel]
        count += (f > 0).sum(dim=0)
        total += f.double().sum(dim=0)
        r = torch.arange(first, first + len(f)).expand(n, -1).T  # (c, n)
        merged = torch.cat([best_v, f]).topk(top, dim=0)  # over (top + c, n)
        best_r = torch.cat([best_r, r]).gather(0, merged.indices)
        best_v = merged.values
    peak = best_v[0].clamp_min(1e-12)  # (n,)
    hist = np.zeros((n, bins), dtype=np.int64)
    for first in range(0, len(rows), chunk):  # pass 2: histograms of the non-zero values
        f = sae.encode(torch.from_numpy(np.array(rows[first : first + chunk])))[:, sel]
        for j in range(n):
            v = f[:, j][f[:, j] > 0].numpy()
            hist[j] += np.histogram(v, bins=bins, range=(0.0, float(peak[j])))[0]
    effects = None
    if model is not None and sae.config.d_in == model.config.n_embd:
        effects = logit_effects(model, sae.W_dec[sel])  # (n, V)
    out = []
    for j, i in enumerate(features):
        keep = best_v[:, j] > 0
        contexts = acts.contexts(split, best_r[keep, j].numpy(), before, after)
        shown = []
        for (ids, at, row0), value in zip(contexts, best_v[keep, j].tolist(), strict=True):
            x = torch.from_numpy(np.array(rows[row0 : row0 + len(ids)]))  # (len, d)
            local = sae.encode(x)[:, i]  # (len,)
            shown.append({
                "tokens": [visible_token(p) for p in pieces(tokenizer, ids)],
                "acts": np.round(local.numpy(), DECIMALS).tolist(),
                "at": at, "value": round(value, DECIMALS),
            })  # fmt: skip
        item = {
            "index": i,
            "density": int(count[j]) / len(rows),
            "max": round(float(best_v[0, j].clamp_min(0)), DECIMALS),
            "mean": round(float(total[j]) / max(int(count[j]), 1), DECIMALS),
            "hist": hist[j].tolist(),
            "contexts": shown,
            "promoted": [],
            "suppressed": [],
        }
        if effects is not None:
            for key, order in (("promoted", True), ("suppressed", False)):
                vals, ids = effects[j].sort(descending=order)
                ids, vals = ids[:n_logits].tolist(), vals[:n_logits].tolist()
                names = [visible_token(p) for p in pieces(tokenizer, ids)]
                item[key] = [[t, round(v, DECIMALS)] for t, v in zip(names, vals, strict=True)]
        out.append(item)
    return out


def sae_html(features: list[dict[str, Any]], *, title: str = "SAE features", info: str = "") -> str:
    """One standalone HTML page for `features` (as feature_data returns them).

    The page has a select `#feature` (one option per feature), `#stats`, `#hist` (an
    SVG with one `rect.bar` per bin), lists `#promoted` and `#suppressed` of `.logit`
    rows, and `#contexts`, one `.ctx` per context with `.tok` spans (the one the
    context is about has class `top`). `show(j)` displays the j-th feature.

    >>> sae_html([]).startswith("<!DOCTYPE html>")
    True
    """
    data = {"features": features, "info": info}
    return _PAGE.format(title=html.escape(title), data=_script_json(data), css=_CSS, js=_JS)


def write_sae_html(path: str | Path, features: list[dict[str, Any]], **kw: Any) -> Path:
    """Write `sae_html(features, **kw)` to `path` as UTF-8; returns the path."""
    path = Path(path)
    path.write_text(sae_html(features, **kw), encoding="utf-8")
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
<p id="info"></p>
<p class="controls">
  <button id="prev" type="button">&larr;</button>
  <label>Feature <select id="feature"></select></label>
  <button id="next" type="button">&rarr;</button>
  <span class="hint">&larr;/&rarr; step through features; hover a token for its value.</span>
</p>
<div id="stats"></div>
<div class="row">
  <div><h2>Activations (non-zero)</h2><svg id="hist" width="360" height="140"></svg></div>
  <div><h2>Promotes</h2><div id="promoted"></div></div>
  <div><h2>Suppresses</h2><div id="suppressed"></div></div>
</div>
<h2>Top contexts</h2>
<div id="contexts"></div>
<script type="application/json" id="data">{data}</script>
<script>{js}</script>
</body>
</html>
"""

_CSS = """
body { font-family: sans-serif; margin: 1.5em; color: #222; }
.hint, #info { color: #777; }
.row { display: flex; gap: 3em; flex-wrap: wrap; }
h2 { font-size: 1em; margin: 1em 0 0.4em; }
#stats { font-family: monospace; margin: 0.5em 0; }
.logit { font-family: monospace; white-space: pre; }
.ctx { font-family: monospace; margin: 3px 0; white-space: pre; }
.ctx .value { display: inline-block; width: 5em; color: #555; }
.tok { border-radius: 2px; }
.tok.top { outline: 2px solid #0057b8; }
rect.bar { fill: #e8590c; }
"""

# show(j) redraws everything from data.features[j]; tokens are shaded orange in
# proportion to the feature's activation on them over its largest activation.
_JS = """
const data = JSON.parse(document.getElementById("data").textContent);
const features = data.features;
const select = document.getElementById("feature");
const SVG = document.getElementById("hist").namespaceURI;  // for createElementNS
document.getElementById("info").textContent = data.info;

features.forEach((f, j) => select.add(
  new Option(`${f.index} (density ${(100 * f.density).toFixed(2)}%)`, j)));
select.addEventListener("change", () => show(Number(select.value)));
function step(by) {
  if (!features.length) return;
  show((Number(select.value) + by + features.length) % features.length);
}
document.getElementById("prev").addEventListener("click", () => step(-1));
document.getElementById("next").addEventListener("click", () => step(1));
document.addEventListener("keydown", (e) => {
  if (e.key === "ArrowLeft") step(-1);
  if (e.key === "ArrowRight") step(1);
});

function text(tag, content, cls) {
  const el = document.createElement(tag);
  el.textContent = content;  // textContent, never innerHTML: tokens are data
  if (cls) el.className = cls;
  return el;
}

function drawHist(counts, max) {
  const svg = document.getElementById("hist");
  svg.replaceChildren();
  const W = 360, H = 120, top = Math.max(1, ...counts);
  const w = W / Math.max(1, counts.length);
  counts.forEach((c, b) => {
    const rect = document.createElementNS(SVG, "rect");
    const h = H * Math.log1p(c) / Math.log1p(top);  // log scale: the tail stays visible
    rect.setAttribute("class", "bar");
    rect.setAttribute("x", b * w);
    rect.setAttribute("width", Math.max(1, w - 1));
    rect.setAttribute("y", H - h);
    rect.setAttribute("height", h);
    const lo = (max * b / counts.length).toFixed(3);
    const hi = (max * (b + 1) / counts.length).toFixed(3);
    const tip = document.createElementNS(SVG, "title");
    tip.textContent = `${lo} to ${hi}: ${c} tokens`;
    rect.append(tip);
    svg.append(rect);
  });
  const axis = document.createElementNS(SVG, "text");
  axis.setAttribute("x", 0);
  axis.setAttribute("y", H + 15);
  axis.setAttribute("font-size", "11");
  axis.textContent = `0 to ${max} (counts on a log scale)`;
  svg.append(axis);
}

function logits(id, rows) {
  const box = document.getElementById(id);
  const line = ([tok, v]) => text("div", `${v >= 0 ? "+" : ""}${v.toFixed(3)}  ${tok}`, "logit");
  box.replaceChildren(...rows.map(line));
  if (!rows.length) box.append(text("div", "(not a residual-stream width)", "logit"));
}

function show(j) {
  const f = features[j];
  select.value = j;
  document.getElementById("stats").textContent =
    `feature ${f.index}: active on ${(100 * f.density).toFixed(3)}% of tokens, ` +
    `max ${f.max}, mean when active ${f.mean}`;
  drawHist(f.hist, f.max);
  logits("promoted", f.promoted);
  logits("suppressed", f.suppressed);
  const box = document.getElementById("contexts");
  box.replaceChildren();
  f.contexts.forEach((c) => {
    const line = document.createElement("div");
    line.className = "ctx";
    line.append(text("span", c.value.toFixed(3), "value"));
    c.tokens.forEach((t, k) => {
      const span = text("span", t, k === c.at ? "tok top" : "tok");
      const a = Math.max(0, c.acts[k]);
      span.style.background = `rgba(232, 89, 12, ${f.max > 0 ? Math.min(1, a / f.max) : 0})`;
      span.title = c.acts[k].toFixed(3);
      line.append(span);
    });
    box.append(line);
  });
  if (!f.contexts.length) box.append(text("div", "never active on these tokens"));
}

if (features.length) show(0);
document.body.dataset.ready = "1";  // the script ran to its end
"""
