"""`glassbox train | sample | eval | fill-mask | compare | inspect | count | tokenize`: a thin
command line
over the Python API.

Every model and train config field is a flag (`--n-layer 6`, `--no-bias`), typed from the
dataclass, so a typo or a wrong type is an argparse error rather than a silent default.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import MISSING, fields
from typing import Any

from glassbox.compare import add_compare_parser, cmd_compare
from glassbox.config import (
    ACTIVATIONS,
    ARCHS,
    ATTENTION_IMPLS,
    DTYPES,
    NORM_PLACEMENTS,
    NORMS,
    POS_ENCODINGS,
    PRESETS,
    TOKENIZERS,
    ModelConfig,
    TrainConfig,
    from_preset,
)
from glassbox.errors import GlassboxError

# glassbox.data.tasks.TASKS plus induction, spelled out to keep torch out of startup
TASKS = ("copy", "reverse", "sort", "addition", "induction")
CHOICES = {
    "arch": ARCHS,
    "task": TASKS,
    "norm_placement": NORM_PLACEMENTS,
    "pos_encoding": POS_ENCODINGS,
    "attention": ATTENTION_IMPLS,
    "activation": ACTIVATIONS,
    "norm": NORMS,
    "dtype": DTYPES,
    "tokenizer": TOKENIZERS,
}
NOT_FLAGS = {"vocab_size"}  # set from the tokenizer, never by hand
ALIASES = {"run_dir": ["--run"], "bpe_vocab_size": ["--vocab-size"]}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _add_config_flags(
    parser: argparse.ArgumentParser, train: bool = True, skip: set[str] = NOT_FLAGS
) -> list[str]:
    """One flag per config field; returns the field names, which are also the dests."""
    names = []
    classes = ((ModelConfig, "model"), (TrainConfig, "training"))[: 2 if train else 1]
    for cls, title in classes:
        group = parser.add_argument_group(f"{title} settings (default: the preset's)")
        for f in fields(cls):
            if f.name in skip:
                continue
            names.append(f.name)
            default = f.default if f.default is not MISSING else None
            aliases = [_flag(f.name)] + ALIASES.get(f.name, [])
            if f.type == "bool":
                group.add_argument(
                    *aliases,
                    dest=f.name,
                    default=None,
                    action=argparse.BooleanOptionalAction,
                    help=f"(char-small: {default})",
                )
            else:
                kind = {"int": int, "float": float, "str": str}[str(f.type)]
                group.add_argument(
                    *aliases,
                    dest=f.name,
                    type=kind,
                    default=None,
                    choices=CHOICES.get(f.name),
                    metavar=f.name.upper(),
                    help=f"(char-small: {default})",
                )
    return names


def _given(args: argparse.Namespace, names: list[str]) -> dict[str, Any]:
    return {n: getattr(args, n) for n in names if getattr(args, n) is not None}


def cmd_train(args: argparse.Namespace, names: list[str]) -> int:
    from glassbox.train.trainer import resume, train

    changes = _given(args, names)
    progress = not args.no_progress
    if args.resume:
        run_dir = changes.pop("run_dir", None)
        if run_dir is None:
            raise GlassboxError("--resume needs --run DIR: the run to continue")
        result = resume(run_dir, progress=progress, **changes)
    else:
        task, arch = changes.get("task"), changes.get("arch")
        default = "encoder" if arch == "encoder" and not task else "char-small"
        preset = args.preset or {None: default, "induction": "induction"}.get(task, "seq2seq")
        model_config, train_config = from_preset(preset, **changes)
        result = train(model_config, train_config, overwrite=args.overwrite, progress=progress)
    print(
        f"done: {result.step} iterations, val loss {result.val_loss:.4f} "
        f"(best {result.best_val_loss:.4f}); run saved in {result.run_dir}"
    )
    arch = runs_arch(result.run_dir)
    if arch == "encoder":
        print(f'fill masks with it: glassbox fill-mask --run {result.run_dir} "text with [MASK]"')
    elif arch == "encoder-decoder":
        print(f"score it: glassbox eval --run {result.run_dir}")
        print(f"run it: glassbox sample --run {result.run_dir} --prompt SOURCE")
    else:
        print(f"sample from it: glassbox sample --run {result.run_dir}")
    return 0


def runs_arch(run_dir) -> str:
    from glassbox.runs import load_configs

    return load_configs(run_dir)[0].arch


def cmd_sample(args: argparse.Namespace) -> int:
    from glassbox.device import resolve_device
    from glassbox.generate import generate_batch, generate_text
    from glassbox.generate.cpu import pack_for_cpu
    from glassbox.runs import load_model

    model, tokenizer = load_model(args.run, args.checkpoint, resolve_device(args.device))
    if model.config.arch == "encoder":
        raise GlassboxError(
            f"{args.run} holds an encoder, which fills masks rather than continuing text: "
            f'glassbox fill-mask --run {args.run} "text with [MASK]"'
        )
    if model.config.arch == "encoder-decoder":
        return _sample_seq2seq(args, model, tokenizer)
    pack_for_cpu(model)  # no-op off the CPU and for small models
    options = dict(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                   seed=args.seed, use_cache=not args.no_cache, dtype=args.dtype)  # fmt: skip
    if args.num_samples == 1 and not args.stop:  # stream one sample as it is made
        sys.stdout.write(args.prompt)
        for piece in generate_text(model, tokenizer, args.prompt, args.max_new_tokens, **options):
            sys.stdout.write(piece)
            sys.stdout.flush()
        sys.stdout.write("\n")
        return 0
    prompts = [args.prompt] * args.num_samples
    texts = generate_batch(model, tokenizer, prompts, args.max_new_tokens, stop=args.stop,
                           **options)  # fmt: skip
    for i, text in enumerate(texts):
        if args.num_samples > 1:
            print(f"--- sample {i + 1}")
        print(args.prompt + text)
    return 0


def _sample_seq2seq(args: argparse.Namespace, model, tokenizer) -> int:
    from glassbox.data.tasks import BOS, EOS, PAD
    from glassbox.generate.seq2seq import translate
    from glassbox.runs import load_configs
    from glassbox.train.objectives import task_from_config

    task = task_from_config(load_configs(args.run)[1])
    prompt = args.prompt.strip()
    if len(tokenizer.encode(prompt)) > task.max_source_len and model.config.position_table:
        raise GlassboxError(
            f"source of {len(prompt)} symbols is longer than the {task.max_source_len} "
            f"this {task.name} model was trained on"
        )
    [output] = translate(
        model, tokenizer, [prompt], bos=BOS, eos=EOS, pad=PAD,
        max_len=task.max_target_len, beam_size=args.beam_size,
        alpha=args.length_penalty,
    )  # fmt: skip
    print(output)
    return 0


def cmd_fill_mask(args: argparse.Namespace) -> int:
    from glassbox.device import resolve_device
    from glassbox.generate.fill_mask import fill_mask
    from glassbox.runs import load_model

    model, tokenizer = load_model(args.run, args.checkpoint, resolve_device(args.device))
    if model.config.arch != "encoder":
        raise GlassboxError(
            f"{args.run} holds a {model.config.arch} model; fill-mask needs one trained with "
            "--arch encoder"
        )
    predictions = fill_mask(model, tokenizer, args.text, args.top_k)
    if args.json:
        print(json.dumps(predictions, ensure_ascii=False))
        return 0
    for i, options in enumerate(predictions, 1):
        shown = "  ".join(f"{tok!r} {p:.3f}" for tok, p in options)
        print(f"[MASK] {i}: {shown}")
    return 0


def cmd_count(args: argparse.Namespace, names: list[str]) -> int:
    from glassbox.analysis import count_report
    from glassbox.config import override
    from glassbox.runs import load_configs

    changes = _given(args, names)
    if args.run:
        config = override(load_configs(args.run)[0], changes)
    else:
        config = from_preset(args.preset, **changes)[0]
    report = count_report(config, args.context, args.batch_size, args.dtype)
    if args.json:
        print(json.dumps(report))
        return 0
    params, flops, kv = report["params"], report["flops_per_token"], report["kv_cache"]
    print(f"{'component':<20}{'parameters':>16}{'share':>8}")
    for name, n in params.items():
        share = f"{n / params['total']:.1%}" if name != "total" else ""
        print(f"{name:<20}{n:>16,}{share:>8}")
    print(
        f"(the head is the token embedding, transposed: tied weights count once)\n"
        f"non-embedding parameters N = {report['non_embedding_params']:,}\n"
    )
    print(
        f"forward FLOPs per token at context {kv['context']}: {flops['forward_at_context']:,.0f}"
        f"  (2N rule: {flops['forward_2n_rule']:,})"
    )
    for part, value in flops["forward_parts"].items():
        if part != "total":
            print(f"  {part:<18}{value:>16,.0f}")
    print(
        f"training FLOPs per token (3x forward, mean causal context): "
        f"{flops['training']:,.0f}  (6N rule: {flops['training_6n_rule']:,})\n"
    )
    print(
        f"KV cache ({kv['dtype']}, {kv['n_kv_head']} KV heads): {kv['bytes_per_token']:,} bytes "
        f"per token; {kv['bytes_full_context'] / 2**20:,.1f} MiB for {kv['context']} tokens "
        f"x batch {kv['batch_size']}"
    )
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from glassbox import runs
    from glassbox.data import TokenDataset, load_text
    from glassbox.data.tokens import windows
    from glassbox.device import resolve_device
    from glassbox.train.evaluate import mean_loss

    device = resolve_device(args.device)
    model, tokenizer = runs.load_model(args.run, args.checkpoint, device)
    model_config, train_config = runs.load_configs(args.run)
    if model_config.arch != "decoder" or train_config.task:
        result = _eval_other(args, model, device, model_config, train_config)
        print(json.dumps(result) if args.json else _describe(result))
        return 0
    T = model.config.block_size
    if args.data is None:
        dataset = TokenDataset(f"{args.run}/{runs.TOKENS}", tokenizer.vocab_size)
        batches = dataset.windows(args.split, T, args.batch_size)
        source = f"{args.split} split of the run's corpus"
    else:
        ids = np.asarray(tokenizer.encode(load_text(args.data)), dtype=np.int64)  # (N,)
        if len(ids) < T + 1:
            raise GlassboxError(f"{args.data} has {len(ids)} tokens; eval needs {T + 1}")
        batches = windows(ids, T, args.batch_size)
        source = args.data
    with torch.inference_mode():
        result = {"run": args.run, "data": source, **mean_loss(model, batches, device)}
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"{source}: loss {result['loss']:.4f}, perplexity {result['perplexity']:.3f} "
            f"over {result['tokens']:,} tokens"
        )
    return 0


def _eval_other(
    args: argparse.Namespace, model, device: str, model_config, train_config
) -> dict[str, Any]:
    """Encoder-decoder: exact match on the held-out examples. Encoder: masked-LM loss.
    Induction: the loss on the first block and on its repeat."""
    from glassbox.train.evaluate import estimate_loss, exact_match
    from glassbox.train.objectives import held_out_examples, task_from_config
    from glassbox.train.trainer import build_objective

    if args.data is not None:
        raise GlassboxError(f"--data applies to runs trained on a corpus; {args.run} is not one")
    if train_config.task == "induction":
        from glassbox.analysis.inspect import induction_probe, repeat_losses

        tokens, start = induction_probe(train_config, model)
        return {"run": args.run, "task": "induction", **repeat_losses(model, tokens, start)}
    if model.config.arch == "encoder-decoder":
        task = task_from_config(train_config)
        pairs = held_out_examples(task, train_config.seed)
        scores = exact_match(model, task, pairs, beam_size=args.beam_size)
        return {"run": args.run, "task": task.name, **scores}
    objective = build_objective(model_config, train_config)
    losses = estimate_loss(model, objective, eval_iters=args.batches, seed=0, device=device)
    return {"run": args.run, "masked_lm_loss": losses[args.split], "split": args.split}


def _describe(result: dict[str, Any]) -> str:
    if "repeat_loss" in result:
        return (
            f"induction: loss {result['first_block_loss']:.4f} on random blocks, "
            f"{result['repeat_loss']:.4f} on their repeats"
        )
    if "exact_match" in result:
        lines = [
            f"{result['task']}: exact match {result['exact_match']:.2%} on "
            f"{result['examples']} held-out examples (beam {result['beam_size']})"
        ]
        lines += [
            f"  {m['source']} -> {m['output']} (want {m['target']})" for m in result["misses"]
        ]
        return "\n".join(lines)
    return f"{result['split']} masked-LM loss {result['masked_lm_loss']:.4f}"


def cmd_inspect(args: argparse.Namespace) -> int:
    from glassbox.analysis.inspect import inspect_run

    report = inspect_run(
        args.run, args.prompt, heads=args.heads, circuits=args.circuits, lens=args.lens,
        top_k=args.top_k,
        target=args.dla, html=args.html, png=args.png,
    )  # fmt: skip
    if args.json:
        print(json.dumps(report, ensure_ascii=False))
        return 0
    print(_describe_inspection(report))
    return 0


def _describe_inspection(report: dict[str, Any]) -> str:
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
    if "lens" in report:
        lines.append("logit lens at the last position (top predictions per layer)")
        for layer, top in report["lens"].items():
            lines.append(f"  {layer:<10}" + "  ".join(f"{t!r} {p:.3f}" for t, p in top))
    if "dla" in report:
        dla = report["dla"]
        lines.append(f"direct logit attribution of {dla['target']!r} (logit {dla['logit']:.3f})")
        for part, value in sorted(dla["parts"].items(), key=lambda kv: -abs(kv[1]))[:12]:
            lines.append(f"  {part:<24}{value:+.3f}")
    for key in ("html", "png"):
        if key in report:
            lines.append(f"wrote {report[key]}")
    return (
        "\n".join(lines)
        or "nothing asked: pass --heads, --circuits, --lens, --dla, --html or --png"
    )


def cmd_tokenize(args: argparse.Namespace) -> int:
    import os

    from glassbox.tokenizers import open_tokenizer
    from glassbox.tokenizers.display import encode_for_display, pieces, render

    tokenizer = open_tokenizer(args.tokenizer)
    text = sys.stdin.read() if args.text is None else args.text
    ids = encode_for_display(tokenizer, text)
    if args.ids:
        print(json.dumps(ids))
        return 0
    color = sys.stdout.isatty() and "NO_COLOR" not in os.environ
    print(render(pieces(tokenizer, ids), color))
    print(f"{len(ids):,} tokens for {len(text):,} characters ({len(text.encode()):,} bytes)")
    return 0


def build_parser() -> tuple[argparse.ArgumentParser, list[str]]:
    parser = argparse.ArgumentParser(
        prog="glassbox", description="Train, sample and evaluate transformers built from scratch."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "train",
        help="train a GPT, an encoder or an encoder-decoder",
        description="Train a model. Without flags: a GPT with the char-small preset on "
        "the embedded default corpus, saved in runs/default. --arch encoder trains a "
        "masked-LM encoder on the same corpora; --task reverse (copy, sort, addition) "
        "trains an encoder-decoder on a generated task (preset seq2seq).",
    )
    p.add_argument(
        "--preset",
        default=None,
        choices=list(PRESETS),
        help="starting configuration (char-small; encoder with --arch encoder; seq2seq or "
        "induction with --task); "
        + "; ".join(f"{k}: {v.description}" for k, v in PRESETS.items()).replace("%", "%%"),
    )
    p.add_argument(
        "--resume", action="store_true", help="continue the run in --run from its last checkpoint"
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing run")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    names = _add_config_flags(p)

    def beam_options(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--beam-size", type=int, default=1, help="encoder-decoder runs: 1 = greedy (1)"
        )
        p.add_argument(
            "--length-penalty",
            type=float,
            default=0.6,
            help="beam search's alpha in ((5 + length) / 6) ** alpha (0.6)",
        )

    def run_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--run", default="runs/default", help="run directory (runs/default)")
        p.add_argument(
            "--checkpoint",
            default="best",
            choices=["best", "last"],
            help="best-validation weights or the latest ones (best)",
        )
        p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps")

    p = sub.add_parser("sample", help="generate text from a trained run")
    run_options(p)
    p.add_argument("--prompt", default="\n", help="text to continue (a newline)")
    p.add_argument("--max-new-tokens", type=int, default=500)
    p.add_argument("--temperature", type=float, default=0.8, help="0 means greedy (0.8)")
    p.add_argument("--top-k", type=int, default=None, help="keep the K most likely tokens")
    p.add_argument("--top-p", type=float, default=None, help="nucleus sampling threshold")
    p.add_argument("--seed", type=int, default=None, help="make the draw repeatable")
    p.add_argument("--num-samples", type=int, default=1, help="samples drawn as one batch")
    p.add_argument(
        "--stop",
        action="append",
        default=[],
        metavar="TEXT",
        help="end a sample where it first writes TEXT (repeatable)",
    )
    p.add_argument(
        "--no-cache",
        action="store_true",
        help="recompute the whole context every step (slow; for comparison)",
    )
    p.add_argument(
        "--dtype",
        default="auto",
        choices=list(DTYPES),
        help="matmul precision: auto is bf16 on CUDA, fp32 elsewhere",
    )
    beam_options(p)

    p = sub.add_parser(
        "fill-mask",
        help="an encoder's predictions for each [MASK] in a text",
        description='Show the top predictions of an --arch encoder run for every "[MASK]".',
    )
    run_options(p)
    p.add_argument("text", help='text with one or more "[MASK]"')
    p.add_argument("--top-k", type=int, default=5, help="predictions per mask (5)")
    p.add_argument("--json", action="store_true", help="print a JSON list per mask")

    p = sub.add_parser(
        "count",
        help="parameters, FLOPs and KV-cache memory of a model",
        description="Count a preset's, a run's or a configured model's "
        "parameters by component, FLOPs per token and KV-cache bytes.",
    )
    p.add_argument("--preset", default="char-small", choices=list(PRESETS))
    p.add_argument("--run", default=None, help="count this run's model instead of a preset")
    p.add_argument("--context", type=int, default=None, help="sequence length (block_size)")
    p.add_argument("--batch-size", type=int, default=1, help="for the KV-cache total (1)")
    p.add_argument(
        "--dtype",
        default="float32",
        choices=["float32", "bfloat16", "float16", "int8"],
        help="KV-cache precision",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    count_names = _add_config_flags(p, train=False, skip=set())
    p.set_defaults(count_names=count_names)

    p = sub.add_parser(
        "eval",
        help="loss and perplexity of a run on a dataset; exact match of a task run",
    )
    run_options(p)
    beam_options(p)
    p.add_argument(
        "--batches", type=int, default=50, help="encoder runs: masked batches scored (50)"
    )
    p.add_argument(
        "--data", default=None, help="default | shakespeare | PATH (the run's own split if omitted)"
    )
    p.add_argument(
        "--split",
        default="val",
        choices=["train", "val"],
        help="which split of the run's corpus, when --data is omitted (val)",
    )
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--json", action="store_true", help="print one JSON object")

    p = sub.add_parser(
        "tokenize",
        help="show how a text splits into tokens",
        description="Show the tokens of a text (coloured in a terminal, a JSON list of "
        "pieces when piped) and count them.",
    )
    p.add_argument(
        "--tokenizer",
        default="runs/default",
        help="a run directory, a .tiktoken file, a tokenizer JSON file, a folder with GPT-2's "
        "encoder.json and vocab.bpe, or cl100k (runs/default)",
    )
    p.add_argument("--ids", action="store_true", help="print the ids as a JSON list")
    p.add_argument("text", nargs="?", default=None, help="the text (read from stdin if omitted)")
    add_compare_parser(sub)

    p = sub.add_parser(
        "inspect",
        help="look inside a trained decoder: head detectors, logit lens, attribution, patterns",
        description="Analyses of a decoder run. --heads scores every head as previous-"
        "token, duplicate-token and induction head on repeated random tokens and ablates "
        "the best induction head; the others read --prompt.",
    )
    p.add_argument("run", help="run directory")
    p.add_argument("--prompt", default=None, help="text to analyse")
    p.add_argument("--heads", action="store_true", help="head detector scores and ablation")
    p.add_argument(
        "--circuits", action="store_true", help="copying and composition scores from weights"
    )
    p.add_argument("--lens", action="store_true", help="logit lens at the last position")
    p.add_argument("--top-k", type=int, default=5, help="predictions per layer (5)")
    p.add_argument("--dla", default=None, metavar="TOKEN", help="attribute this next token")
    p.add_argument("--html", default=None, help="write an attention page here")
    p.add_argument("--png", default=None, metavar="DIR", help="write attention heatmaps here")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    return parser, names


def main(argv: list[str] | None = None) -> int:
    parser, names = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "train":
            return cmd_train(args, names)
        if args.command == "sample":
            return cmd_sample(args)
        if args.command == "count":
            return cmd_count(args, args.count_names)
        if args.command == "tokenize":
            return cmd_tokenize(args)
        if args.command == "fill-mask":
            return cmd_fill_mask(args)
        if args.command == "compare":
            return cmd_compare(args)
        if args.command == "inspect":
            return cmd_inspect(args)
        return cmd_eval(args)
    except GlassboxError as err:
        print(f"glassbox: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nglassbox: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
