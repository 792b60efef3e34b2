"""Typed configuration: the model's shape, the training recipe, and named presets (their
values live in glassbox.presets; `from_preset` builds checked configs from them).

Configs are dataclasses validated when they are built, so a bad value fails at once with
a sentence instead of deep inside a forward pass. Every run saves both configs as JSON,
and `override` is the one place where a name typed by a user becomes a field (the CLI
flags and the Python keyword arguments both go through it, so a typo is always an error).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
from dataclasses import dataclass, fields
from typing import Any, TypeVar

from glassbox.errors import GlassboxError
from glassbox.presets import PRESETS  # the named starting points, which from_preset reads

ARCHS = ("decoder", "encoder", "encoder-decoder")
POS_ENCODINGS = ("learned", "sinusoidal", "rope", "alibi", "relative", "none")
ATTENTION_IMPLS = ("auto", "sdpa", "manual")
# Sublayer kinds a Block is built from: names of the registries in glassbox.nn.block
# (MLPS, ATTENTIONS) and glassbox.nn.positional (POSITION_SCHEMES); a test keeps them equal.
MLP_KINDS = ("dense", "moe")
ATTENTION_KINDS = ("mha", "moh")
ACTIVATIONS = ("gelu", "gelu_tanh", "relu", "relu2", "swiglu")
NORMS = ("layernorm", "rmsnorm", "batchnorm")
NORM_PLACEMENTS = ("pre", "post")
DTYPES = ("auto", "float32", "bfloat16")
OPTIMIZERS = ("adamw", "muon")
LR_SCHEDULES = ("cosine", "wsd")
TOKENIZERS = ("char", "bpe")
SEQ2SEQ_TASKS = ("copy", "reverse", "sort", "addition")  # glassbox.data.tasks makes them
# decoder-only tasks: induction (repeated random blocks), addition-gpt (a+b=c, the sum
# least significant first; glassbox.data.arithmetic), calculator (+ - * / with the school
# algorithm's steps before each answer; glassbox.data.calculator)
DECODER_TASKS = ("induction", "addition-gpt", "calculator", "facts")  # facts: data.facts
PROBLEM_TASKS = ("addition-gpt", "calculator", "facts")  # rows "problem=answer", loss maskable
TASKS = (*SEQ2SEQ_TASKS, *DECODER_TASKS)


class ConfigError(GlassboxError, ValueError):
    """A configuration value a model or trainer cannot use; the message says which and why."""


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}; got {value!r}")


@dataclass
class ModelConfig:
    """The shape of a transformer: which architecture, how big, and which variant of each part.

    Glossary used in shape comments everywhere: B batch, T time (sequence position),
    C = n_embd (residual stream width), H = n_head, D = d_head = C // H, V = vocab_size.
    """

    # decoder (GPT: causal self-attention) | encoder (BERT: bidirectional, masked-LM) |
    # encoder-decoder (the 2017 Transformer: the decoder also attends to the encoder)
    arch: str = "decoder"
    vocab_size: int = 65
    block_size: int = 64  # longest context the model is trained on (and positions it knows)
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    n_kv_head: int = 0  # heads of keys/values: 0 = n_head (multi-head), 1 = multi-query, else GQA
    dropout: float = 0.0
    bias: bool = False  # biases in Linear and LayerNorm layers
    # learned | sinusoidal (added to the embeddings) | rope (rotates q and k) | alibi (a
    # linear distance penalty on the scores) | relative (Shaw et al. 2018: learned vectors
    # per clipped offset, added to keys and values) | none
    pos_encoding: str = "learned"
    max_relative_distance: int = 16  # relative: offsets beyond +-this share one vector
    # sdpa (F.scaled_dot_product_attention) | manual (the maths written out) | auto (the
    # faster of the two for the device and length; see glassbox/nn/attention.py)
    attention: str = "auto"
    # which self-attention module, from glassbox.nn.block.ATTENTIONS: mha (multi-head;
    # multi-query or grouped-query with n_kv_head) | moh (mixture of heads: a router
    # weights each token's heads and keeps the top moh_active_heads of the routed ones)
    attention_kind: str = "mha"
    moh_shared_heads: int = 0  # moh: heads every token uses, outside the routing
    moh_active_heads: int = 0  # moh: routed heads kept per token; 0 = all of them
    moh_balance_coef: float = 0.01  # moh: weight of the heads' load-balancing loss
    attn_only: bool = False  # blocks without MLPs: the circuits interpretability starts from
    mlp_ratio: int = 4  # hidden width of the MLP is mlp_ratio * n_embd
    # gelu (exact, erf) | gelu_tanh (GPT-2's approximation) | relu | relu2 (relu squared,
    # So et al. 2021's Primer; modded-nanogpt) | swiglu (gated; hidden width 2/3 of
    # mlp_ratio * n_embd so the MLP keeps its parameter count)
    activation: str = "gelu"
    # which MLP module, from nn.block.MLPS: dense (fc, activation, proj) | moe (a mixture
    # of experts, each a dense MLP of the same shape, chosen per token by a router)
    mlp: str = "dense"
    n_experts: int = 8  # moe: routed experts per layer
    moe_top_k: int = 2  # moe: experts each token goes to (1: Switch, 2: Mixtral); --top-k
    dropless: bool = True  # moe: every token reaches its experts; else capacity_factor caps
    capacity_factor: float = 1.25  # moe without dropless: slots = factor * tokens * k / E
    n_shared_experts: int = 0  # moe: experts every token goes through as well
    moe_balance_coef: float = 0.01  # moe: weight of the Switch load-balancing loss
    moe_z_coef: float = 0.001  # moe: weight of the router z-loss (ST-MoE)
    shared_embeddings: bool = True  # encoder-decoder: one token table for source and target
    norm: str = "layernorm"  # layernorm | rmsnorm | batchnorm (statistics over batch and time)
    norm_eps: float = 1e-5  # added to the variance (BERT checkpoints use 1e-12)
    embed_norm: bool = False  # normalize token + position embeddings before block 0 (BERT)
    # pre (GPT-2: normalize each sublayer's input; final norm at the end) | post (2017
    # paper and BERT: normalize after each residual addition)
    norm_placement: str = "pre"
    # RMS-normalize every head's queries and keys (no gain) before their dot product, so
    # a score is at most sqrt(d_head) in size and no logit of attention can blow up
    qk_norm: bool = False
    # the output layer is the token embedding transposed (GPT-2); False: a Linear of its
    # own (lm_head), which costs vocab_size * n_embd parameters
    tie_embeddings: bool = True
    # start the Linears that write into the residual stream (each block's proj) and an
    # untied lm_head at zero: every block starts as the identity, every logit at 0
    zero_init: bool = False
    # logits = cap * tanh(logits / cap), so none exceeds cap in size (Gemma 2); 0 = off
    logit_softcap: float = 0.0

    def __post_init__(self) -> None:
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd", "mlp_ratio"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be a positive integer; got {value!r}")
        if self.n_embd % self.n_head != 0:
            raise ConfigError(
                f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head}) "
                "so that every head gets d_head = n_embd // n_head dimensions"
            )
        if self.n_kv_head < 0 or (self.n_kv_head and self.n_head % self.n_kv_head != 0):
            raise ConfigError(
                f"n_kv_head ({self.n_kv_head}) must divide n_head ({self.n_head}): each "
                "key/value head serves a whole group of query heads"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1); got {self.dropout}")
        _check_choice("pos_encoding", self.pos_encoding, POS_ENCODINGS)
        _check_choice("attention", self.attention, ATTENTION_IMPLS)
        _check_choice("attention_kind", self.attention_kind, ATTENTION_KINDS)
        _check_choice("mlp", self.mlp, MLP_KINDS)
        _check_choice("activation", self.activation, ACTIVATIONS)
        _check_choice("norm", self.norm, NORMS)
        _check_choice("norm_placement", self.norm_placement, NORM_PLACEMENTS)
        _check_choice("arch", self.arch, ARCHS)
        if not 0 < self.norm_eps < 1:
            raise ConfigError(f"norm_eps must be in (0, 1); got {self.norm_eps}")
        if self.max_relative_distance < 1:
            raise ConfigError(
                f"max_relative_distance must be >= 1; got {self.max_relative_distance}"
            )
        if not (math.isfinite(self.logit_softcap) and self.logit_softcap >= 0):
            raise ConfigError(
                f"logit_softcap must be a finite number >= 0 (0 = off); got {self.logit_softcap}"
            )
        self._check_sparse()
        if self.pos_encoding == "rope" and self.d_head % 2:
            raise ConfigError(
                f"rope rotates pairs of channels: d_head ({self.d_head}) must be even"
            )

    def _check_sparse(self) -> None:
        """The mixture-of-experts and mixture-of-heads settings (docs/architectures.md)."""
        for name in ("moe_balance_coef", "moe_z_coef", "moh_balance_coef"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"{name} must be a finite number >= 0; got {value}")
        if not (math.isfinite(self.capacity_factor) and self.capacity_factor > 0):
            raise ConfigError(
                f"capacity_factor must be > 0 (slots per expert = factor * tokens * top_k / "
                f"n_experts); got {self.capacity_factor}"
            )
        if self.mlp == "moe":
            if self.attn_only:
                raise ConfigError("mlp moe replaces the MLP, and an attn_only model has none")
            if self.n_experts < 1:
                raise ConfigError(f"n_experts must be at least 1; got {self.n_experts}")
            if not 1 <= self.moe_top_k <= self.n_experts:
                raise ConfigError(
                    f"moe_top_k (--top-k) must be between 1 and n_experts ({self.n_experts}); "
                    f"got {self.moe_top_k}"
                )
            if self.n_shared_experts < 0:
                raise ConfigError(f"n_shared_experts must be >= 0; got {self.n_shared_experts}")
        if self.attention_kind == "moh":
            routed = self.n_head - self.moh_shared_heads
            if not 0 <= self.moh_shared_heads < self.n_head:
                raise ConfigError(
                    f"moh_shared_heads must be in [0, n_head) = [0, {self.n_head}), leaving "
                    f"at least one head to route; got {self.moh_shared_heads}"
                )
            if not 0 <= self.moh_active_heads <= routed:
                raise ConfigError(
                    f"moh_active_heads must be in [0, {routed}] (the routed heads: n_head "
                    f"{self.n_head} - moh_shared_heads {self.moh_shared_heads}; 0 = all); "
                    f"got {self.moh_active_heads}"
                )

    @property
    def d_head(self) -> int:
        return self.n_embd // self.n_head

    @property
    def position_table(self) -> bool:
        """Whether positions come from a table of block_size rows (so sequences longer than
        block_size cannot be encoded); alibi, relative and none work at any length."""
        # The scheme itself knows (its has_table flag). Imported here, not at the top:
        # glassbox.nn imports this module, and the configs load without torch.
        from glassbox.nn.positional import POSITION_SCHEMES

        return POSITION_SCHEMES[self.pos_encoding].has_table

    @property
    def kv_heads(self) -> int:
        """The number of key/value heads actually used (n_kv_head, or n_head if 0)."""
        return self.n_kv_head or self.n_head


@dataclass
class TrainConfig:
    """How to train: data, optimizer, schedule, evaluation, and where the run lives."""

    # One part of `freeze` (a class constant, not a field): blocks[.N or .A-B][.attn or
    # .mlp], or a top-level part; glassbox.train.finetune maps them to parameters.
    FREEZE_PART = (
        r"embeddings|head|ln_f|blocks(\.(?P<first>\d+)(-(?P<last>\d+))?)?(\.(?P<sub>attn|mlp))?"
    )

    data: str = "default"  # default (embedded corpus) | shakespeare | a file, folder or glob
    run_dir: str = "runs/default"  # where config, tokens, checkpoints and metrics go
    # char (one id per character of the text) | bpe (byte-level BPE learned from the
    # training split; see docs/tokenization.md)
    tokenizer: str = "char"
    bpe_vocab_size: int = 4096  # ids of a learned BPE tokenizer: 256 bytes + merges
    # Instead of a corpus, a synthetic task generated on the fly (data is then unused):
    # copy | reverse | sort | addition (sequence to sequence, for arch encoder-decoder)
    task: str = ""
    task_alphabet: str = "0123456789"  # the symbols of copy/reverse/sort sequences
    task_min_len: int = 10  # sequence length (addition: digits per operand) is drawn
    task_max_len: int = 20  # uniformly from [task_min_len, task_max_len]
    reverse_answer: bool = True  # addition-gpt: the sum's digits least significant first
    mask_problem: bool = True  # addition-gpt, calculator: no loss on the problem (a+b=)
    label_smoothing: float = 0.0  # seq2seq loss: weight spread evenly over the vocabulary
    mlm_prob: float = (
        0.15  # encoder: fraction of tokens to predict (80% [MASK], 10% random, 10% kept)
    )
    batch_size: int = 12
    grad_accum: int = 1  # micro-batches per optimizer step
    max_iters: int = 2000
    # adamw | muon (Muon, Jordan 2024: orthogonalized momentum for the blocks' matrices,
    # at muon_lr; AdamW at lr for embeddings, lm_head, biases and gains; glassbox.train.muon)
    optimizer: str = "adamw"
    lr: float = 1e-3  # peak learning rate, reached after warmup (AdamW's, with muon)
    muon_lr: float = 0.02  # muon: peak learning rate of the blocks' matrices
    muon_momentum: float = 0.95  # muon: momentum of the (Nesterov) gradient average
    min_lr: float = 1e-4  # floor of the decay (muon's matrices: muon_lr * min_lr / lr)
    warmup_iters: int = 100
    # cosine (from lr after warmup down to min_lr at lr_decay_iters) | wsd (warmup,
    # stable at lr, then a linear decay to min_lr over the last decay_fraction)
    lr_schedule: str = "cosine"
    lr_decay_iters: int = 2000  # the schedule reaches min_lr here and stays there
    decay_fraction: float = 0.2  # wsd: the share of lr_decay_iters spent decaying
    weight_decay: float = (
        0.1  # on matrices (incl. embeddings) only; biases and norm gains are exempt
    )
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0  # max global gradient norm; 0 disables clipping
    eval_interval: int = 250
    eval_iters: int = 20
    # score val over the whole split, window by window as `glassbox eval` does,
    # instead of eval_iters random batches; decoders trained on a corpus only
    eval_full: bool = False
    seed: int = 1337
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    compile: bool = False
    dtype: str = "auto"  # auto (bf16 autocast on CUDA, fp32 elsewhere) | float32 | bfloat16
    threads: int = 0  # CPU threads for torch; 0 leaves torch's default
    # under torchrun: shard parameters, gradients and AdamW state over the ranks (FSDP)
    # instead of copying the model to each (DDP); docs/distributed.md
    fsdp: bool = False
    tensorboard: bool = False  # also log to RUN/tensorboard (pip install glassbox[tensorboard])
    # Fine-tuning (docs/training.md): start from a trained model's weights and tokenizer
    init_from: str = ""  # a run folder or a Hugging Face GPT-2 folder; "" = fresh weights
    # parts left as they are, comma-separated: embeddings, head, ln_f, blocks, blocks.N,
    # blocks.A-B, each blocks part optionally .attn or .mlp (blocks.0-3.attn)
    freeze: str = ""
    lora_rank: int = 0  # LoRA adapters of this rank on attention and MLP Linears; 0 = none
    lora_alpha: float = 0.0  # adapters' output scale is lora_alpha / lora_rank; 0 = rank

    def __post_init__(self) -> None:
        positive = ("batch_size", "grad_accum", "max_iters", "eval_interval", "eval_iters")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be a positive integer; got {value!r}")
        for name in ("warmup_iters", "lr_decay_iters", "threads"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0; got {getattr(self, name)}")
        for f in fields(self):  # nan passes every comparison below, and inf most of them
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"{f.name} must be a finite number; got {value}")
        if not self.lr > 0:
            raise ConfigError(f"lr must be positive; got {self.lr}")
        if not 0 <= self.min_lr <= self.lr:
            raise ConfigError(f"min_lr must be in [0, lr]; got {self.min_lr} with lr {self.lr}")
        if self.weight_decay < 0 or self.grad_clip < 0:
            raise ConfigError("weight_decay and grad_clip must be >= 0")
        for name in ("beta1", "beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise ConfigError(f"{name} must be in [0, 1); got {getattr(self, name)}")
        _check_choice("tokenizer", self.tokenizer, TOKENIZERS)
        _check_choice("dtype", self.dtype, DTYPES)
        self._check_optimizer()
        if self.task:
            _check_choice("task", self.task, TASKS)
        where = f"task {self.task}" if self.task else "a corpus run"
        if self.eval_full and self.task:
            raise ConfigError(
                f"eval_full scores the val split of a corpus; task {self.task} has none"
            )
        if self.task != "addition-gpt" and not self.reverse_answer:
            raise ConfigError(f"reverse_answer applies to task addition-gpt only, not to {where}")
        if self.task not in PROBLEM_TASKS and not self.mask_problem:
            raise ConfigError(
                f"mask_problem applies to tasks {', '.join(PROBLEM_TASKS)} only, not to {where}"
            )
        if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", self.device):
            raise ConfigError(f"device must be auto, cpu, cuda, cuda:N or mps; got {self.device!r}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError(f"label_smoothing must be in [0, 1); got {self.label_smoothing}")
        if not 0.0 < self.mlm_prob < 1.0:
            raise ConfigError(f"mlm_prob must be in (0, 1); got {self.mlm_prob}")
        if self.bpe_vocab_size < 256:
            raise ConfigError(
                f"bpe_vocab_size must be >= 256 (the bytes); got {self.bpe_vocab_size}"
            )
        if self.lora_rank < 0 or self.lora_alpha < 0:
            raise ConfigError(
                f"lora_rank and lora_alpha must be >= 0; got {self.lora_rank} and {self.lora_alpha}"
            )
        if self.lora_alpha and not self.lora_rank:
            raise ConfigError("lora_alpha scales LoRA adapters: set lora_rank too")
        for part in self.freeze.split(",") if self.freeze else ():
            m = re.fullmatch(self.FREEZE_PART, part.strip())
            if m is None:
                raise ConfigError(
                    f"freeze: unknown part {part.strip()!r}; name embeddings, head, ln_f, "
                    "blocks, blocks.N or blocks.A-B (each blocks part optionally .attn or .mlp)"
                )
            if m["last"] is not None and int(m["last"]) < int(m["first"]):
                raise ConfigError(f"freeze: {part.strip()} counts backwards; write A <= B")

    def _check_optimizer(self) -> None:
        """The optimizer and schedule settings (docs/training.md)."""
        _check_choice("optimizer", self.optimizer, OPTIMIZERS)
        _check_choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        if not self.muon_lr > 0:
            raise ConfigError(f"muon_lr must be positive; got {self.muon_lr}")
        if not 0 <= self.muon_momentum < 1:
            raise ConfigError(f"muon_momentum must be in [0, 1); got {self.muon_momentum}")
        if not 0 < self.decay_fraction <= 1:
            raise ConfigError(
                f"decay_fraction must be in (0, 1] (the share of lr_decay_iters the wsd "
                f"schedule decays over); got {self.decay_fraction}"
            )
        if self.optimizer == "muon" and self.fsdp:
            raise ConfigError(
                "optimizer muon orthogonalizes whole matrices, and fsdp splits each across "
                "the ranks: use DDP (no --fsdp) or optimizer adamw"
            )


C = TypeVar("C", ModelConfig, TrainConfig)


def _coerce(cls: type, name: str, value: Any) -> Any:
    """Check (and for strings from a command line, convert) one value for a field."""
    kind = {f.name: f.type for f in fields(cls)}[name]
    # Annotations are strings under `from __future__ import annotations`.
    expected = {"int": int, "float": float, "bool": bool, "str": str}[str(kind)]
    if isinstance(value, str) and expected is not str:
        try:
            if expected is bool:
                if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError
                return value.lower() in ("true", "1", "yes")
            return expected(value)
        except ValueError:
            raise ConfigError(f"{name} expects {expected.__name__}; got {value!r}") from None
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
        raise ConfigError(f"{name} expects {expected.__name__}; got {value!r}")
    return value


def override(config: C, changes: dict[str, Any]) -> C:
    """A copy of `config` with `changes` applied, each checked against the field's type.

    >>> override(ModelConfig(), {"n_layer": "6"}).n_layer
    6
    """
    names = [f.name for f in fields(config)]
    checked = {}
    for name, value in changes.items():
        if name not in names:
            hint = difflib.get_close_matches(name, names, n=1)
            extra = f"; did you mean {hint[0]!r}?" if hint else ""
            raise ConfigError(f"unknown {type(config).__name__} key {name!r}{extra}")
        checked[name] = _coerce(type(config), name, value)
    return dataclasses.replace(config, **checked)


def split_overrides(changes: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Route each key to the model or the train config; an unknown key is an error."""
    model_keys = {f.name for f in fields(ModelConfig)}
    train_keys = {f.name for f in fields(TrainConfig)}
    model, train = {}, {}
    for key, value in changes.items():
        if key in model_keys:
            model[key] = value
        elif key in train_keys:
            train[key] = value
        else:
            hint = difflib.get_close_matches(key, sorted(model_keys | train_keys), n=1)
            extra = f"; did you mean {hint[0]!r}?" if hint else ""
            raise ConfigError(f"unknown config key {key!r}{extra}")
    return model, train


def default_preset(arch: str | None = None, task: str | None = None) -> str:
    """The preset `glassbox train` starts from when none is named: the preset of the
    same name for a decoder task, seq2seq for the others, encoder for an encoder,
    char-small otherwise.

    >>> default_preset(task="reverse"), default_preset(arch="encoder")
    ('seq2seq', 'encoder')
    """
    if task:
        return task if task in DECODER_TASKS else "seq2seq"
    return "encoder" if arch == "encoder" else "char-small"


def from_preset(name: str = "char-small", **changes: Any) -> tuple[ModelConfig, TrainConfig]:
    """The model and train configs of preset `name`, with keyword overrides applied.

    >>> model, train = from_preset("char-small", n_layer=2, max_iters=10)
    >>> (model.n_layer, train.max_iters)
    (2, 10)
    """
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    preset = PRESETS[name]
    model_changes, train_changes = split_overrides(changes)
    model = override(ModelConfig(), {**preset.model, **model_changes})
    train = override(TrainConfig(), {**preset.train, **train_changes})
    return model, train
