"""`glassbox import gpt2 SOURCE --run DIR`: a run holding pretrained GPT-2 weights, from a
Hugging Face folder or a model name in the local Hugging Face cache (glassbox.pretrained
does the work; the module is not named `import`, a Python keyword)."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "import",
        help="make a run from pretrained GPT-2 weights (a Hugging Face folder or cached name)",
        description="Write a run holding a pretrained GPT-2, ready for sample, eval --data, "
        "inspect and count. SOURCE is a folder with config.json (model_type gpt2), "
        "model.safetensors or pytorch_model.bin, and vocab.json + merges.txt (or "
        "encoder.json + vocab.bpe); or a model name (gpt2, openai-community/gpt2-medium) "
        "already in the Hugging Face cache ($HF_HUB_CACHE, $HF_HOME/hub or "
        "~/.cache/huggingface/hub). Nothing is downloaded.",
    )
    p.add_argument(
        "format", choices=["gpt2", "bert"], help="the checkpoint's family (bert: BERT-style "
        "encoders such as all-MiniLM-L6-v2, with a WordPiece vocab.txt)"
    )  # fmt: skip
    p.add_argument(
        "source", metavar="SOURCE", help="a Hugging Face GPT-2 folder, or a cached model name"
    )
    p.add_argument("--run", required=True, help="the run folder to write")
    p.add_argument("--overwrite", action="store_true", help="replace a run already there")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.format == "bert":
        from glassbox.embed import import_encoder

        run_dir = import_encoder(args.source, args.run, overwrite=args.overwrite)
        print(f"wrote {run_dir}: a BERT-style encoder with its WordPiece tokenizer")
        print(f'try: glassbox inspect {run_dir} --prompt "The cat sat on the mat." --html a.html')
        return 0
    from glassbox.pretrained import describe_import, import_gpt2

    run_dir = import_gpt2(args.source, args.run, overwrite=args.overwrite)
    print(describe_import(run_dir))
    return 0
