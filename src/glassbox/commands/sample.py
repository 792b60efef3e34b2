"""`glassbox sample`: continue a prompt with a decoder run, or answer a source with an
encoder-decoder run (or a problem with an addition-gpt or calculator run)."""

from __future__ import annotations

import argparse
import sys

from glassbox.commands.options import add_beam_options, add_run_options
from glassbox.config import DTYPES
from glassbox.errors import GlassboxError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("sample", help="generate text from a trained run")
    add_run_options(p)
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
    add_beam_options(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from glassbox.device import resolve_device
    from glassbox.generate import generate_batch, generate_text
    from glassbox.generate.cpu import pack_for_cpu
    from glassbox.runs import load_configs, load_model

    model, tokenizer = load_model(args.run, args.checkpoint, resolve_device(args.device))
    if model.config.arch == "encoder":
        raise GlassboxError(
            f"{args.run} holds an encoder, which fills masks rather than continuing text: "
            f'glassbox fill-mask --run {args.run} "text with [MASK]"'
        )
    if model.config.arch == "encoder-decoder":
        from glassbox.data.tasks import task_from_config
        from glassbox.generate.seq2seq import solve

        task = task_from_config(load_configs(args.run)[1])
        print(solve(model, task, args.prompt, beam_size=args.beam_size, alpha=args.length_penalty))
        return 0
    train_config = load_configs(args.run)[1]
    if train_config.task == "addition-gpt":  # "123+45=" -> the greedy sum, written the usual way
        from glassbox.data.arithmetic import answer
        from glassbox.data.tasks import task_from_config

        task = task_from_config(train_config)
        a, b = task.parse(args.prompt)
        [total] = answer(model, task, [args.prompt])
        print(f"{a}+{b}={total}")
        return 0
    if train_config.task == "calculator":  # "12*34" -> the steps the model wrote, and its answer
        from glassbox.data.calculator import work_out
        from glassbox.data.tasks import task_from_config

        task = task_from_config(train_config)
        [written] = work_out(model, task, [args.prompt])
        print(task.prompt(task.parse(args.prompt)) + written)
        print("\n".join("  " + line for line in task.explain(args.prompt, written)))
        return 0
    if args.num_samples < 1:
        raise GlassboxError(f"--num-samples must be at least 1; got {args.num_samples}")
    pack_for_cpu(model)  # no-op off the CPU and for small models
    options = dict(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                   seed=args.seed, use_cache=not args.no_cache, dtype=args.dtype)  # fmt: skip
    if args.num_samples == 1 and not args.stop:  # stream one sample as it is made
        stream = generate_text(model, tokenizer, args.prompt, args.max_new_tokens, **options)
        first = next(stream, "")  # a bad option or prompt fails here, before any output
        sys.stdout.write(args.prompt + first)
        for piece in stream:
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
