"""`glassbox inspect`: the analyses of glassbox.analysis applied to one trained run.

Everything here is glue: load the run, encode the prompt, call the analysis functions,
and gather their numbers in one JSON-ready dict (which the CLI prints or renders).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from glassbox import runs
from glassbox.analysis.circuits import (
    circuit_spectra,
    composition_scores,
    copying_scores,
    plot_spectra,
)
from glassbox.analysis.detectors import DETECTORS, head_scores, repeated_random_tokens
from glassbox.analysis.labels import output_folder, token_text
from glassbox.analysis.lens import direct_logit_attribution, logit_lens
from glassbox.analysis.patching import ablate_heads
from glassbox.analysis.trace_run import describe_trace, trace_facts_report, trace_report
from glassbox.errors import GlassboxError
from glassbox.tokenizers import WordPiece

PROBE_LENGTH = 20  # block length of the repeated-random-tokens probe


def induction_probe(train_config, model, batch_size: int = 32) -> tuple[Tensor, int]:
    """Token ids (B, 2L) of random blocks repeated once, and the index of the first
    position of the repeat. An induction run gets its own task's sequences (BOS, the
    block, the repeat without its last token); any other decoder gets random ids from
    its vocabulary."""
    if train_config.task == "induction":
        from glassbox.data.tasks import task_from_config

        task = task_from_config(train_config)
        generator = torch.Generator().manual_seed(0)
        seq, _ = task.sequences(batch_size, generator, length=task.max_len)
        return seq[:, : 2 * task.max_len], task.max_len + 1  # what training feeds: 2L tokens
    length = min(PROBE_LENGTH, model.config.block_size // 2)
    return repeated_random_tokens(model.config.vocab_size, length, batch_size), length


@torch.no_grad()
def repeat_losses(model, tokens: Tensor, repeat_start: int, logits: Tensor | None = None):
    """Mean next-token loss on the first block and on the repeat (predicting positions
    1..repeat_start-1 and repeat_start+1..end: the repeat's first token is not predictable)."""
    if logits is None:
        logits = model(tokens)
    losses = F.cross_entropy(logits[:, :-1].transpose(1, 2), tokens[:, 1:], reduction="none")
    first = losses[:, : repeat_start - 1].mean().item()  # (B, T-1): loss of token t + 1
    repeat = losses[:, repeat_start:].mean().item()
    return {"first_block_loss": first, "repeat_loss": repeat}


INDUCTION_THRESHOLD = 0.5  # heads scoring above this count as induction heads


def _best_head(scores: Tensor) -> dict[str, Any]:
    """The highest-scoring head of an (n_layer, n_head) grid."""
    layer, head = divmod(int(scores.argmax()), scores.size(1))
    return {"layer": layer, "head": head, "score": float(scores.max())}


def heads_report(run_dir: Path | str, model) -> dict[str, Any]:
    """Detector scores of every head on the induction probe, the loss on both halves, and
    the same losses with the induction heads (score above INDUCTION_THRESHOLD, else the
    best one) zero-ablated: several heads often share the job, so removing one alone
    can leave the others to do it."""
    tokens, start = induction_probe(runs.load_configs(run_dir)[1], model)
    scores = head_scores(model, tokens)
    induction = scores["induction"]
    chosen = (induction > INDUCTION_THRESHOLD).nonzero().tolist()
    chosen = chosen or [list(divmod(int(induction.argmax()), induction.size(1)))]
    ablated = ablate_heads(model, tokens, [tuple(h) for h in chosen], how="zero")
    report = {
        "probe": {"sequences": tokens.size(0), "length": tokens.size(1), "repeat_start": start},
        "scores": {kind: scores[kind].tolist() for kind in DETECTORS},
        "best": {kind: _best_head(s) for kind, s in scores.items()},
        "losses": repeat_losses(model, tokens, start),
        "ablated": {"heads": chosen, **repeat_losses(model, tokens, start, ablated)},
    }
    text = corpus_windows(run_dir, model)
    if text is not None:  # the same detectors on real text: previous-token heads show there
        on_text = head_scores(model, text)
        report["text"] = {
            "windows": text.size(0),
            "length": text.size(1),
            "scores": {kind: on_text[kind].tolist() for kind in DETECTORS},
            "best": {kind: _best_head(s) for kind, s in on_text.items()},
        }
    return report


TEXT_WINDOWS = 16  # windows of a corpus run's val split that --heads also scores


def corpus_windows(run_dir: Path | str, model) -> Tensor | None:
    """The first TEXT_WINDOWS windows (B, block_size) of a corpus run's val split, or
    None for a run without a corpus of its own (a task, an imported model)."""
    if runs.load_configs(run_dir)[1].task or not (Path(run_dir) / runs.TOKENS).is_file():
        return None
    T = model.config.block_size
    dataset = runs.load_tokens(run_dir, model.config.vocab_size, T)
    x, _ = next(dataset.windows("val", T, TEXT_WINDOWS))  # (B, T)
    return x


def circuits_report(model, top: int = 5) -> dict[str, Any]:
    """Copying score of every head, and the strongest Q-, K- and V-compositions."""
    report: dict[str, Any] = {"copying": copying_scores(model).tolist()}
    for kind, scores in composition_scores(model).items():
        L, H = scores.shape[:2]
        best = scores.flatten().topk(min(top, scores.numel()))
        pairs = []
        for value, index in zip(best.values.tolist(), best.indices.tolist(), strict=True):
            l1, h1, l2, h2 = torch.unravel_index(torch.tensor(index), (L, H, L, H))
            pairs.append({"from": [int(l1), int(h1)], "to": [int(l2), int(h2)], "score": value})
        report[f"{kind}_composition"] = pairs
    report["chance"] = model.config.n_embd**-0.5  # what random pairs score
    for kind, spectrum in circuit_spectra(model).items():  # rank <= d_head, always
        report[f"{kind}_rank"] = spectrum["rank"].tolist()
        report[f"{kind}_singular_values"] = spectrum["singular_values"].tolist()
    report["d_head"], report["d_model"] = model.config.d_head, model.config.n_embd
    return report


def inspect_run(
    run_dir: Path | str,
    prompt: str | None = None,
    *,
    heads: bool = False,
    circuits: bool = False,
    lens: bool = False,
    top_k: int = 5,
    target: str | None = None,
    html: Path | str | None = None,
    png: Path | str | None = None,
    routing: bool = False,
    trace: str | None = None,
    answer: str | None = None,
    subject: str | None = None,
    trace_facts: int = 0,
) -> dict[str, Any]:
    """Run the requested analyses on a decoder or encoder run; returns a JSON-ready dict.
    An encoder reads the prompt after a [CLS] token, as in training. `trace` is a prompt
    to trace (causal tracing, with `answer` and `subject`), `trace_facts` a number of a
    facts run's facts to trace and average; `png` is the folder their figures, the
    circuits' spectra and the prompt's attention heatmaps go to."""
    if html and not Path(html).parent.is_dir():  # found out before the analyses run
        raise GlassboxError(f"cannot write {html}: folder {Path(html).parent} does not exist")
    if top_k < 1:
        raise GlassboxError(f"top_k must be at least 1; got {top_k}")
    if trace is None and (answer is not None or subject is not None):
        raise GlassboxError("--answer and --subject go with --trace PROMPT")
    if trace_facts < 0:
        raise GlassboxError(f"--trace-facts is a number of facts; got {trace_facts}")
    model, tokenizer = runs.load_model(run_dir)
    arch = model.config.arch
    if arch == "encoder-decoder":
        analyses = heads or circuits or lens or target or routing or trace or trace_facts
        if analyses or prompt is None:
            raise GlassboxError(
                "for an encoder-decoder, inspect draws the attention of one --prompt "
                "(a source) with --html and --png; the other analyses read one stack"
            )
        return {"run": str(run_dir), **seq2seq_attention(run_dir, model, tokenizer, prompt,
                                                         html, png)}  # fmt: skip
    report: dict[str, Any] = {"run": str(run_dir)}
    if heads:
        report["heads"] = heads_report(run_dir, model)
    if circuits:
        report["circuits"] = circuits_report(model)
        if png:
            path = output_folder(png) / "circuit_spectra.png"
            report["circuits"]["png"] = str(plot_spectra(model, path))
    if trace is not None:
        report["trace"] = trace_report(run_dir, model, tokenizer, trace, answer, subject, png)
    if trace_facts:
        report["trace_facts"] = trace_facts_report(run_dir, model, trace_facts, png)
    if prompt is None:
        if lens or target or html or routing or (png and not (circuits or trace or trace_facts)):
            raise GlassboxError("--lens, --dla, --routing, --html and --png read a --prompt")
        return report
    ids = tokenizer.encode(prompt)
    if not ids:
        raise GlassboxError("the prompt encodes to no tokens")
    names = [token_text(tokenizer, i) for i in ids]
    if arch == "encoder" and isinstance(tokenizer, WordPiece):  # BERT reads [CLS] text [SEP]
        ids, names = [tokenizer.cls_id, *ids, tokenizer.sep_id], ["[CLS]", *names, "[SEP]"]
    elif arch == "encoder":
        from glassbox.models.encoder import encoder_special_ids

        ids, names = (
            [encoder_special_ids(model.config.vocab_size)["[CLS]"], *ids],
            ["[CLS]", *names],
        )
    tokens = torch.tensor([ids])  # (1, T); too long for the positions: the Stack says so
    report["tokens"] = names
    if lens:
        result = logit_lens(model, tokens, top_k=top_k)
        top_ids, top_probs = result["top_ids"][:, 0, -1], result["top_probs"][:, 0, -1]  # (L+1, k)
        report["lens"] = {
            layer: [
                [token_text(tokenizer, int(i)), round(float(p), 4)]
                for i, p in zip(top_ids[row], top_probs[row], strict=True)
            ]
            for row, layer in enumerate(result["layers"])
        }
    if routing:
        report["routing"] = routing_report(model, tokens)
    if target is not None:
        target_ids = tokenizer.encode(target)
        if len(target_ids) != 1:
            raise GlassboxError(f"--dla needs one token; {target!r} is {len(target_ids)} tokens")
        parts = direct_logit_attribution(model, tokens, target_ids[0])
        report["dla"] = {"target": target, "parts": parts, "logit": sum(parts.values())}
    if html or png:
        patterns = attention_patterns(model, tokens)  # (L, H, T, T)
        if html:
            from glassbox.analysis.attention_page import write_attention_html

            report["html"] = str(write_attention_html(html, names, patterns, title=str(run_dir)))
        if png:
            report["png"] = [str(p) for p in plot_patterns(patterns, names, Path(png))]
    return report


def routing_report(model, tokens: Tensor) -> dict[str, Any]:
    """Where a sparse model sends each token of `tokens` (1, T): per mixture-of-experts
    layer the experts each token goes to (first choice first) and how many tokens each
    expert takes; per mixture-of-heads layer the heads each token uses."""
    wanted = ("hook_experts", "hook_head_weights")
    _, cache = model.run_with_cache(tokens, names_filter=lambda name: name.endswith(wanted))
    if not cache:
        raise GlassboxError(
            "--routing shows a sparse model's routing; this model has no router "
            "(train one with --mlp moe or --attention-kind moh)"
        )
    report: dict[str, Any] = {}
    for name in sorted(cache, key=_layer_order):
        layer = name.rsplit(".", 1)[0]  # blocks.0.mlp
        if name.endswith("hook_experts"):
            chosen = cache[name][0]  # (T, K)
            n_experts = model.config.n_experts
            load = torch.bincount(chosen.flatten(), minlength=n_experts)  # (E,)
            report[layer] = {"experts": chosen.tolist(), "load": load.tolist()}
        else:
            gates = cache[name][0]  # (T, H)
            report[layer] = {"heads": [row.nonzero().flatten().tolist() for row in gates]}
    return report


def _layer_order(name: str) -> tuple[int, str]:
    parts = name.split(".")
    return (int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else -1, name)


def seq2seq_attention(
    run_dir: Path | str, model, tokenizer, source: str, html, png
) -> dict[str, Any]:
    """Decode `source` greedily, then draw the three kinds of attention of that pass:
    the encoder's self-attention over the source, the decoder's causal self-attention
    over the target, and the decoder's cross-attention from target to source."""
    from glassbox.data.tasks import BOS, EOS, PAD, task_from_config
    from glassbox.generate.seq2seq import greedy_decode

    task = task_from_config(runs.load_configs(run_dir)[1])
    src_ids = tokenizer.encode(source)
    if not src_ids:
        raise GlassboxError("the source encodes to no tokens")
    src = torch.tensor([src_ids])  # (1, S)
    [out] = greedy_decode(model, src, bos=BOS, eos=EOS, max_len=task.max_target_len)
    tgt = torch.tensor([[BOS, *out]])  # (1, T): the decoder's inputs
    src_names = [token_text(tokenizer, i) for i in src_ids]
    tgt_names = [token_text(tokenizer, i) for i in tgt[0].tolist()]
    L = model.config.n_layer
    kinds = {  # part -> (hook name pattern, query tokens, key tokens)
        "encoder": ("encoder.blocks.{}.attn.hook_pattern", src_names, src_names),
        "decoder": ("decoder.blocks.{}.attn.hook_pattern", tgt_names, tgt_names),
        "cross": ("decoder.blocks.{}.cross_attn.hook_pattern", tgt_names, src_names),
    }
    names = [pattern.format(layer) for pattern, _, _ in kinds.values() for layer in range(L)]
    _, cache = model.run_with_cache(src, tgt, src_mask=src != PAD, names_filter=names)
    report: dict[str, Any] = {"source": src_names, "output": tokenizer.decode(out)}
    for part, (pattern, queries, keys) in kinds.items():
        patterns = torch.stack([cache[pattern.format(layer)][0] for layer in range(L)]).float()
        if html:
            from glassbox.analysis.attention_page import write_attention_html

            path = Path(html)
            path = path.with_name(f"{path.stem}-{part}{path.suffix or '.html'}")
            cross = keys if part == "cross" else None
            title = f"{run_dir}: {part} attention"
            write_attention_html(path, queries, patterns, title=title, key_tokens=cross)
            report.setdefault("html", []).append(str(path))
        if png:
            paths = plot_patterns(patterns, queries, Path(png), key_tokens=keys, prefix=part)
            report.setdefault("png", []).extend(str(p) for p in paths)
    return report


@torch.no_grad()
def attention_patterns(model, tokens: Tensor) -> Tensor:
    """(n_layer, n_head, T, T) attention patterns of the first row of tokens."""
    names = [f"blocks.{layer}.attn.hook_pattern" for layer in range(model.config.n_layer)]
    _, cache = model.run_with_cache(tokens, names_filter=names)
    return torch.stack([cache[name][0] for name in names]).float().cpu()


def plot_patterns(
    patterns: Tensor,
    tokens: list[str],
    out_dir: Path,
    *,
    key_tokens: list[str] | None = None,
    prefix: str = "attention",
) -> list[Path]:
    """One PNG per layer: a heatmap per head, queries (tokens) down, keys (key_tokens,
    default the same tokens) across."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from glassbox.analysis.attention_page import visible_token

    out_dir.mkdir(parents=True, exist_ok=True)
    labels = [visible_token(t) for t in tokens]
    key_labels = [visible_token(t) for t in (key_tokens or tokens)]
    paths = []
    n_layer, n_head, T, S = patterns.shape
    for layer in range(n_layer):
        fig, axes = plt.subplots(1, n_head, figsize=(3.2 * n_head, 3.4), squeeze=False)
        for head, ax in enumerate(axes[0]):
            ax.imshow(patterns[layer, head].numpy(), cmap="Blues", vmin=0, vmax=1)
            ax.set_title(f"layer {layer} head {head}", fontsize=9)
            if max(T, S) <= 40:
                ax.set_xticks(range(S), key_labels, fontsize=6, rotation=90)
                ax.set_yticks(range(T), labels, fontsize=6)
            else:
                ax.set_xticks([])
                ax.set_yticks([])
        fig.tight_layout()
        path = out_dir / f"{prefix}_layer{layer}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def describe_inspection(report: dict[str, Any]) -> str:
    """inspect_run's report as the text `glassbox inspect` prints."""
    lines = []
    if "heads" in report:
        heads = report["heads"]
        for kind, grid in heads["scores"].items():
            lines.append(f"{kind} score per head (rows: layers)")
            lines += ["  " + " ".join(f"{v:6.3f}" for v in row) for row in grid]
        loss, ablated = heads["losses"], heads["ablated"]
        names = ", ".join(f"{layer}.{head}" for layer, head in ablated["heads"])
        lines.append(
            f"loss on the first block {loss['first_block_loss']:.3f}, on its repeat "
            f"{loss['repeat_loss']:.3f}; with head(s) {names} zero-ablated: "
            f"{ablated['first_block_loss']:.3f} and {ablated['repeat_loss']:.3f}"
        )
        if "text" in heads:
            text = heads["text"]
            lines.append(
                f"on the run's own text ({text['windows']} windows of {text['length']} "
                "tokens of its val split):"
            )
            for kind, grid in text["scores"].items():
                lines.append(f"{kind} score per head (rows: layers)")
                lines += ["  " + " ".join(f"{v:6.3f}" for v in row) for row in grid]
    if "circuits" in report:
        circuits = report["circuits"]
        lines.append("copying score per head (rows: layers; 1 copies, -1 suppresses)")
        lines += ["  " + " ".join(f"{v:6.3f}" for v in row) for row in circuits["copying"]]
        for kind in "qkv":
            pairs = ", ".join(
                f"{p['from'][0]}.{p['from'][1]}->{p['to'][0]}.{p['to'][1]} {p['score']:.2f}"
                for p in circuits[f"{kind}_composition"][:3]
            )
            lines.append(f"strongest {kind.upper()}-composition: {pairs}")
        lines.append(f"(random pairs score about {circuits['chance']:.2f})")
        D, C = circuits["d_head"], circuits["d_model"]
        for kind in ("ov", "qk"):
            name = f"W_{kind.upper()}"
            lines.append(f"{name} rank per head (rows: layers; each is {C} x {C}, d_head {D})")
            lines += ["  " + " ".join(f"{r:4d}" for r in row) for row in circuits[f"{kind}_rank"]]
            lines.append(f"{name} singular values per head, largest first")
            for layer, heads in enumerate(circuits[f"{kind}_singular_values"]):
                for head, values in enumerate(heads):
                    shown = " ".join(f"{v:.3g}" for v in values[:8])
                    more = f" ... {values[-1]:.3g}" if len(values) > 8 else ""
                    lines.append(f"  {layer}.{head}: {shown}{more}")
        if "png" in circuits:
            lines.append(f"wrote {circuits['png']}")
    if "lens" in report:
        lines.append("logit lens at the last position (top predictions per layer)")
        for layer, top in report["lens"].items():
            lines.append(f"  {layer:<10}" + "  ".join(f"{t!r} {p:.3f}" for t, p in top))
    if "routing" in report:
        tokens = report["tokens"]
        for layer, route in report["routing"].items():
            if "experts" in route:
                lines.append(f"{layer}: experts per token (first choice first)")
                lines += [f"  {t!r:<12} " + ",".join(map(str, e))
                          for t, e in zip(tokens, route["experts"], strict=True)]  # fmt: skip
                lines.append("  tokens per expert: " + " ".join(map(str, route["load"])))
            else:
                lines.append(f"{layer}: heads each token uses")
                lines += [f"  {t!r:<12} " + ",".join(map(str, h))
                          for t, h in zip(tokens, route["heads"], strict=True)]  # fmt: skip
    if "dla" in report:
        dla = report["dla"]
        lines.append(f"direct logit attribution of {dla['target']!r} (logit {dla['logit']:.3f})")
        for part, value in sorted(dla["parts"].items(), key=lambda kv: -abs(kv[1]))[:12]:
            lines.append(f"  {part:<24}{value:+.3f}")
    if "trace" in report:
        lines += describe_trace(report["trace"])
    if "trace_facts" in report:
        lines += describe_trace(report["trace_facts"])
    for key in ("html", "png"):
        if key in report:
            lines.append(f"wrote {report[key]}")
    return "\n".join(lines) or (
        "nothing asked: pass --heads, --circuits, --lens, --dla, --routing, --trace, "
        "--trace-facts, --html or --png"
    )
