"""EX3: does pretraining on a large corpus lower tiny Shakespeare's validation loss?

Karpathy's exercise: pretrain on data so large that train and val loss do not separate,
then fine-tune on tiny Shakespeare with fewer steps and a lower learning rate, and
compare with training on tiny Shakespeare from scratch for the same number of steps.

    python benchmarks/ex3_pretrain.py --shakespeare ../shared/data/tinyshakespeare.txt
    python benchmarks/ex3_pretrain.py --shakespeare FILE --pretrain-iters 500 --budgets 50

The pretraining corpus is the Python standard library that every interpreter ships:
its sources (site-packages left out), plus the `help()` reference documentation, copied
into one folder and passed to `glassbox train --data FOLDER`, which streams it into
the run's token file. Nothing is downloaded. Every run has char-small's shape; the
fine-tuned runs keep the pretrained run's character tokenizer (whose alphabet holds
every character of tiny Shakespeare).

Each line it runs is a `glassbox` command, printed before it runs, so the table in
docs/exercises.md can be reproduced by hand. Scores are `glassbox eval` of each run's
best checkpoint: the mean loss over every window of tiny Shakespeare's validation split
(its last 10%, the same characters for every run), in nats per character. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

FINETUNE_LR = 3e-4  # a third of char-small's 1e-3: the weights are already good
SKIP_DIRS = {"site-packages", "__pycache__"}


def build_corpus(dest: Path) -> dict:
    """Copy the standard library's .py files and the help() topics into `dest`."""
    from pydoc_data.topics import topics

    stdlib = Path(sysconfig.get_paths()["stdlib"])
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    files = 0
    for path in sorted(stdlib.rglob("*.py")):
        rel = path.relative_to(stdlib)
        if SKIP_DIRS & set(rel.parts):
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        files += 1
    docs = "\n\n".join(topics[name].strip() for name in sorted(topics)) + "\n"
    (dest / "pydoc_topics.txt").write_text(docs, encoding="utf-8")
    size = sum(p.stat().st_size for p in dest.rglob("*") if p.is_file())
    return {"stdlib": str(stdlib), "files": files + 1, "bytes": size}


def glassbox(*args: str) -> str:
    cmd = [sys.executable, "-m", "glassbox", *args]
    print("$ glassbox " + shlex.join(args), file=sys.stderr, flush=True)
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"failed ({done.returncode}): {done.stderr.strip()}")
    print(f"  ({time.perf_counter() - start:.0f} s)", file=sys.stderr, flush=True)
    return done.stdout


def val_loss(run: Path) -> float:
    out = glassbox("eval", "--run", str(run), "--json")
    return json.loads(out)["loss"]


def schedule(iters: int) -> list[str]:
    """A run of `iters` steps whose cosine ends with it, with a short warmup."""
    return [
        "--max-iters", str(iters), "--lr-decay-iters", str(iters),
        "--warmup-iters", str(max(1, min(100, iters // 10))),
        "--eval-interval", str(max(1, iters // 4)), "--no-progress",
    ]  # fmt: skip


def curve(run: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [
        {"iter": r["iter"], "train": round(r["train_loss"], 4), "val": round(r["val_loss"], 4)}
        for r in rows
        if r["kind"] == "eval"
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shakespeare", required=True, help="tiny Shakespeare's input.txt")
    parser.add_argument("--work", default="/tmp/glassbox-ex3", help="corpus and runs go here")
    parser.add_argument("--pretrain-iters", type=int, default=8000)
    parser.add_argument("--budgets", type=int, nargs="+", default=[100, 300, 1000, 3000])
    parser.add_argument("--reuse", action="store_true", help="keep an existing pretrained run")
    args = parser.parse_args()
    work = Path(args.work)
    corpus, pretrain = work / "stdlib", work / "pretrain"
    result: dict = {"finetune_lr": FINETUNE_LR, "budgets": {}}
    if not (args.reuse and (pretrain / "checkpoint.safetensors").exists()):
        result["corpus"] = build_corpus(corpus)
        glassbox("train", "--data", str(corpus), "--run", str(pretrain), "--overwrite",
                 *schedule(args.pretrain_iters))  # fmt: skip
    result["pretrain"] = {"iters": args.pretrain_iters, "curve": curve(pretrain)}
    # the pretrained model on Shakespeare before any fine-tuning: "0 steps"
    out = glassbox("eval", "--run", str(pretrain), "--data", args.shakespeare, "--json")
    result["pretrained_zero_shot_whole_text"] = json.loads(out)["loss"]
    for iters in args.budgets:
        scratch, tuned = work / f"scratch-{iters}", work / f"finetune-{iters}"
        glassbox("train", "--data", args.shakespeare, "--run", str(scratch), "--overwrite",
                 *schedule(iters))  # fmt: skip
        glassbox("train", "--init-from", str(pretrain), "--data", args.shakespeare,
                 "--run", str(tuned), "--overwrite", "--lr", str(FINETUNE_LR),
                 "--min-lr", f"{FINETUNE_LR / 10:g}", *schedule(iters))  # fmt: skip
        result["budgets"][iters] = {"scratch": val_loss(scratch), "finetuned": val_loss(tuned)}
        print(json.dumps({iters: result["budgets"][iters]}), file=sys.stderr, flush=True)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
