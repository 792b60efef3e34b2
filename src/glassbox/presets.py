"""Named starting points: a preset is the model and train fields that differ from the
dataclass defaults of glassbox.config (ModelConfig, TrainConfig), which checks them when
`from_preset` builds the configs. Plain data: this module imports nothing of glassbox.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Preset:
    """A named starting point: model fields and train fields that differ from the defaults."""

    description: str
    model: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)


PRESETS: dict[str, Preset] = {
    # Exactly the configuration of benchmarks/train_char.py and nanoGPT's CPU recipe for
    # shakespeare_char; the dataclass defaults of glassbox.config are this preset.
    "char-small": Preset("4 layers, 4 heads, 128 wide, context 64; 2000 iterations (~2 min CPU)"),
    "char-tiny": Preset(
        "2 layers, 32 wide, context 32; 200 iterations: a seconds-long smoke run",
        model={"n_layer": 2, "n_head": 2, "n_embd": 32, "block_size": 32},
        train={"max_iters": 200, "lr_decay_iters": 200, "warmup_iters": 20, "eval_interval": 50},
    ),
    # Issue 17: char-small's data (tiny Shakespeare, 90/10), shape and val loss (1.898
    # after its 2000 iterations) in under 30 s on 2 CPU cores, with what modded-nanogpt
    # learned. Tuned by timing on an idle 2-core Xeon (docs/benchmarks.md, the ablation).
    "char-speedrun": Preset(
        "char-small's shape on tiny Shakespeare with modded-nanogpt's recipe: RoPE, "
        "RMSNorm, QK-norm, ReLU², an untied zero-init head, soft-capped logits, Muon and "
        "a warmup-stable-decay schedule; char-small's val loss in 220 steps (~24 s, CPU)",
        model={"pos_encoding": "rope", "norm": "rmsnorm", "qk_norm": True,
               "activation": "relu2", "tie_embeddings": False, "zero_init": True,
               "logit_softcap": 15.0},
        train={"data": "shakespeare", "optimizer": "muon", "muon_lr": 0.02,
               "muon_momentum": 0.9, "lr": 2.5e-2, "min_lr": 3e-4, "lr_schedule": "wsd",
               "decay_fraction": 0.4, "warmup_iters": 20, "max_iters": 220,
               "lr_decay_iters": 220, "batch_size": 16, "weight_decay": 0.0, "beta1": 0.8,
               "beta2": 0.95, "eval_interval": 220, "eval_iters": 5, "eval_full": True,
               "run_dir": "runs/char-speedrun"},
    ),
    "char-medium": Preset(
        "6 layers, 6 heads, 384 wide, context 256, dropout 0.2: nanoGPT's GPU shakespeare_char",
        model={"n_layer": 6, "n_head": 6, "n_embd": 384, "block_size": 256, "dropout": 0.2},
        train={"batch_size": 64, "max_iters": 5000, "lr_decay_iters": 5000, "eval_iters": 200},
    ),
    "encoder": Preset(
        "BERT-like masked-LM encoder with char-small's shape; lr 2e-3, since only 15% of "
        "positions teach it anything per step",
        model={"arch": "encoder"},
        train={"lr": 2e-3, "run_dir": "runs/encoder"},
    ),
    "seq2seq": Preset(
        "encoder-decoder, 2+2 layers, 128 wide, sinusoidal positions; 1000 iterations of a "
        "--task (reverse: every held-out example right after about a minute on 2 CPU cores)",
        model={"arch": "encoder-decoder", "n_layer": 2, "block_size": 48,
               "pos_encoding": "sinusoidal"},
        train={"task": "reverse", "batch_size": 64, "max_iters": 1000, "lr_decay_iters": 1000,
               "eval_interval": 100, "eval_iters": 10, "weight_decay": 0.0,
               "label_smoothing": 0.1, "run_dir": "runs/seq2seq"},
    ),
    "induction": Preset(
        "2-layer attention-only decoder with RoPE on random blocks of 10-20 letters, each "
        "repeated: grows previous-token and induction heads (glassbox inspect --heads)",
        model={"n_layer": 2, "n_head": 4, "n_embd": 64, "attn_only": True, "block_size": 40,
               "pos_encoding": "rope"},
        train={"task": "induction", "batch_size": 64, "max_iters": 2000, "lr_decay_iters": 2000,
               "eval_interval": 250, "eval_iters": 10, "weight_decay": 0.0,
               "run_dir": "runs/induction",
               "task_alphabet": "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"},
    ),
    "addition-gpt": Preset(
        "EX2: a 2-layer decoder learns a+b=c on numbers of 1-5 digits, the sum written "
        "least significant first, loss on the answer only (docs/exercises.md)",
        model={"n_layer": 2, "n_head": 4, "n_embd": 128, "block_size": 32},
        train={"task": "addition-gpt", "task_min_len": 1, "task_max_len": 5,
               "batch_size": 128, "max_iters": 2000, "lr_decay_iters": 2000,
               "warmup_iters": 100, "lr": 2e-3, "eval_interval": 250, "eval_iters": 10,
               "weight_decay": 0.0, "run_dir": "runs/addition-gpt"},
    ),
    "calculator": Preset(
        "swole doge: a 3-layer decoder learns + - * / (with remainder) on numbers of 1-3 "
        "digits, writing the school algorithm's steps before each answer "
        "(docs/exercises.md)",
        model={"n_layer": 3, "n_head": 4, "n_embd": 128, "block_size": 48},
        train={"task": "calculator", "task_min_len": 1, "task_max_len": 3,
               "batch_size": 128, "max_iters": 3000, "lr_decay_iters": 3000,
               "warmup_iters": 100, "lr": 2e-3, "eval_interval": 250, "eval_iters": 10,
               "weight_decay": 0.0, "run_dir": "runs/calculator"},
    ),
    "facts": Preset(
        "a 4-layer decoder memorises 300 made-up facts (100 people's city, colour and job) "
        "stated in 3 templates each, a 4th held out; for causal tracing "
        "(glassbox inspect --trace, docs/features.md)",
        model={"n_layer": 4, "n_head": 4, "n_embd": 128, "block_size": 8},
        train={"task": "facts", "task_max_len": 100, "batch_size": 128, "max_iters": 1500,
               "lr_decay_iters": 1500, "warmup_iters": 100, "lr": 2e-3, "eval_interval": 250,
               "eval_iters": 5, "weight_decay": 0.0, "run_dir": "runs/facts"},
    ),
}  # fmt: skip


def _gpt2(n_layer: int, n_head: int, n_embd: int) -> dict[str, Any]:
    """GPT-2's shape: 50257 BPE tokens, 1024 positions, biases, tanh-GELU."""
    return dict(vocab_size=50257, block_size=1024, n_layer=n_layer, n_head=n_head,
                n_embd=n_embd, bias=True, activation="gelu_tanh")  # fmt: skip


for _name, _shape, _size in [
    ("gpt2", (12, 12, 768), "124M"),
    ("gpt2-medium", (24, 16, 1024), "350M"),
    ("gpt2-large", (36, 20, 1280), "774M"),
    ("gpt2-xl", (48, 25, 1600), "1558M"),
]:
    PRESETS[_name] = Preset(f"GPT-2 {_size} shape (for count and generation benchmarks)",
                            model=_gpt2(*_shape))  # fmt: skip
