"""What hook points cost when nothing is attached.

Times the forward pass of today's GPT against the same model built from the code as it
was just before hook points were added (extracted from git into a temporary folder), in
alternating subprocesses so that drifts in the machine's speed hit both. The weights are
identical (same seed, same parameter order) and the logits are checked equal.

    python benchmarks/hooks_overhead.py --json                       # char-small, B=12, T=64
    python benchmarks/hooks_overhead.py --preset gpt2 --batch-size 1 --context 64 --json

Prints JSON: for each, the median over rounds of each subprocess's fastest timing (the
least disturbed by the shared machine), and the overhead in percent.
The baseline includes every other change made since that commit, so the figure is an
upper bound on what the hook points themselves cost.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Run in a subprocess with one glassbox or the other on sys.path.
TIMER = r"""
import hashlib, json, statistics, sys, time
import torch
from glassbox.config import from_preset
from glassbox.models.gpt import GPT
from glassbox.device import tune_cpu_allocator
tune_cpu_allocator()  # as training and sampling do: no page faults on every activation
preset, B, T, repeats, inner, threads = sys.argv[1:7]
B, T, repeats, inner, threads = int(B), int(T), int(repeats), int(inner), int(threads)
if threads:
    torch.set_num_threads(threads)
config, _ = from_preset(preset)
torch.manual_seed(0)
model = GPT(config).eval()
g = torch.Generator().manual_seed(1)
x = torch.randint(config.vocab_size, (B, T or config.block_size), generator=g)
times = []
with torch.inference_mode():
    logits = model(x)
    for _ in range(2):
        model(x)
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(inner):
            model(x)
        times.append((time.perf_counter() - t0) / inner * 1000)
digest = hashlib.sha256(logits.numpy().tobytes()).hexdigest()[:16]
print(json.dumps({"ms": min(times), "logits": digest}))
"""


def baseline_ref() -> str:
    """The commit before the one that added glassbox/nn/hooks.py."""
    added = subprocess.run(
        ["git", "log", "--diff-filter=A", "--format=%H", "--", "src/glassbox/nn/hooks.py"],
        cwd=ROOT, check=True, capture_output=True, text=True,
    ).stdout.split()  # fmt: skip
    if not added:
        sys.exit("cannot find the commit that added hook points (is this a git checkout?)")
    return added[-1] + "^"


def extract_src(ref: str, into: Path) -> Path:
    archive = into / "src.tar"
    with open(archive, "wb") as f:
        subprocess.run(["git", "archive", ref, "src"], cwd=ROOT, check=True, stdout=f)
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    return into / "src"


def run_timer(src: Path, args: argparse.Namespace) -> dict:
    env = {**os.environ, "PYTHONPATH": str(src)}
    cmd = [sys.executable, "-c", TIMER, args.preset, str(args.batch_size), str(args.context or 0),
           str(args.repeats), str(args.inner), str(args.threads)]  # fmt: skip
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="char-small")
    parser.add_argument("--batch-size", type=int, default=12)
    parser.add_argument("--context", type=int, default=None, help="tokens (block_size)")
    parser.add_argument("--rounds", type=int, default=5, help="alternating subprocess pairs")
    parser.add_argument("--repeats", type=int, default=15, help="timings per subprocess")
    parser.add_argument("--inner", type=int, default=10, help="forward passes per timing")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--baseline", default=None, help="git ref (the commit before hooks)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    ref = args.baseline or baseline_ref()
    with tempfile.TemporaryDirectory() as tmp:
        old_src = extract_src(ref, Path(tmp))
        hooked, bare = [], []
        for _ in range(args.rounds):
            bare.append(run_timer(old_src, args))
            hooked.append(run_timer(ROOT / "src", args))
    if {r["logits"] for r in hooked} != {r["logits"] for r in bare}:
        sys.exit("the two models' logits differ: not the same model, no comparison")
    h = statistics.median(r["ms"] for r in hooked)
    b = statistics.median(r["ms"] for r in bare)
    result = {
        "preset": args.preset,
        "batch_size": args.batch_size,
        "context": args.context,
        "baseline": ref,
        "hooked_ms": round(h, 4),
        "bare_ms": round(b, 4),
        "overhead_percent": round((h / b - 1) * 100, 2),
        "rounds_hooked_ms": [round(r["ms"], 4) for r in hooked],
        "rounds_bare_ms": [round(r["ms"], 4) for r in bare],
    }
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
