"""Fine-tuning: a run that starts from a trained model instead of random weights.

Three settings of TrainConfig, each a flag of `glassbox train` (docs/training.md):

- `init_from`: a run folder or a Hugging Face GPT-2 folder. The new run takes the
  source's weights, its model config and its tokenizer (the new `--data` is encoded with
  it), and a fresh optimizer and learning-rate schedule. Only settings that leave the
  model's function alone may differ from the source's: `dropout` and the attention
  implementation (`attention`).
- `freeze`: parts that keep their weights (requires_grad False, left out of AdamW).
- `lora_rank`, `lora_alpha`: LoRA adapters (glassbox.nn.lora) on every block's attention
  and MLP Linears; only the adapters train, less whatever `freeze` names.

Everything a user can get wrong is checked here before the trainer creates a folder.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass, fields
from pathlib import Path

import torch
from torch import Tensor, nn

from glassbox import runs
from glassbox.checkpoint import atomic_write
from glassbox.config import ModelConfig, TrainConfig, override
from glassbox.data import iter_text, load_text
from glassbox.errors import GlassboxError
from glassbox.jsonfiles import read_json
from glassbox.models import build_model
from glassbox.models.convert import check_gpt2_compatible
from glassbox.nn.lora import add_lora, lora_layers
from glassbox.tokenizers import BPETokenizer, CharTokenizer, Tokenizer

# Model settings a fine-tuning run may set differently from its source: neither changes
# a weight's shape nor what the trained weights compute (dropout is off at evaluation).
ADJUSTABLE = ("dropout", "attention")


class FinetuneError(GlassboxError, ValueError):
    """An --init-from, --freeze or LoRA setting that cannot work with the model."""


@dataclass
class Source:
    """A trained model a run starts from."""

    spec: str  # as the user gave it
    kind: str  # "run" (a glassbox run folder) or "huggingface" (a GPT-2 folder)
    model_config: ModelConfig
    tokenizer: Tokenizer
    state: dict[str, Tensor]  # the model's state dict, without adapters


def load_source(spec: str) -> Source:
    """The weights, model config and tokenizer of a run folder (its best checkpoint, any
    LoRA adapters merged) or of a Hugging Face GPT-2 folder or model name in the local
    Hugging Face cache (glassbox.pretrained)."""
    path = Path(spec)
    if path.exists() and not path.is_dir():
        raise FinetuneError(
            f"--init-from {spec} is a file; give a run folder or a Hugging Face GPT-2 folder"
        )
    if path.is_dir() and _is_run(path):
        try:
            model, tokenizer = runs.load_model(path)
        except GlassboxError as err:
            raise FinetuneError(f"--init-from {spec}: {err}") from None
        kind = "run"
    else:
        model, tokenizer = _from_huggingface(path, spec)
        kind = "huggingface"
    return Source(spec, kind, model.config, tokenizer, model.state_dict())


def _is_run(path: Path) -> bool:
    """Whether the folder's config.json is a glassbox run's (a Hugging Face folder has a
    config.json too, without our format tag)."""
    config = path / runs.CONFIG
    if not config.is_file():
        raise FinetuneError(
            f"--init-from {path} is neither a glassbox run nor a Hugging Face GPT-2 folder "
            f"(it has no {runs.CONFIG})"
        )
    data = read_json(config, "--init-from run's config", FinetuneError)
    return isinstance(data, dict) and data.get("format") == runs.FORMAT


def _from_huggingface(path: Path, spec: str) -> tuple[nn.Module, Tokenizer]:
    from glassbox.pretrained import from_pretrained  # only a Hugging Face source needs it

    try:
        return from_pretrained(spec)  # a folder, or a model name in the local HF cache
    except GlassboxError as err:  # its messages often start with the folder's name
        message = str(err).removeprefix(f"{spec}: ")
        raise FinetuneError(f"--init-from {spec}: {message}") from None


def _flag(name: str, value: object) -> str:
    if isinstance(value, bool):
        return f"--{'' if value else 'no-'}{name.replace('_', '-')}"
    return f"--{name.replace('_', '-')} {value}"


def adopt(
    source: Source, mc: ModelConfig, tc: TrainConfig, given: Collection[str] | None = None
) -> tuple[ModelConfig, TrainConfig]:
    """The new run's configs: the source's model config (with dropout and attention from
    `mc`) and `tc` with the source's tokenizer kind.

    `given` names the settings the user chose (the CLI passes the flags typed, so that a
    preset's values are not mistaken for choices); without it, a setting counts as given
    when it differs from ModelConfig's (or TrainConfig's) default. A given setting that
    differs from the source's value, other than ADJUSTABLE ones, is an error.
    """

    def chose(name: str, value: object, default: object) -> bool:
        return name in given if given is not None else value != default

    theirs, default = source.model_config, ModelConfig()
    if theirs.arch == "encoder-decoder":
        raise FinetuneError(
            f"--init-from {source.spec} is an encoder-decoder, which trains on a --task; "
            "fine-tuning starts from decoder and encoder models"
        )
    if tc.task:
        raise FinetuneError(
            "--init-from fine-tunes on text (--data); it cannot be used with --task"
        )
    changes = {}
    for f in fields(ModelConfig):
        value, source_value = getattr(mc, f.name), getattr(theirs, f.name)
        if f.name == "vocab_size" or value == source_value:
            continue
        if not chose(f.name, value, getattr(default, f.name)):
            continue
        if f.name not in ADJUSTABLE:
            raise FinetuneError(
                f"{_flag(f.name, value)} contradicts --init-from {source.spec}, whose model "
                f"has {f.name} {source_value}: a fine-tuned model keeps the shape it starts "
                "from (leave the flag out)"
            )
        changes[f.name] = value
    tokenizer = source.tokenizer
    if not isinstance(tokenizer, (CharTokenizer, BPETokenizer)):
        raise FinetuneError(
            f"--init-from {source.spec} has a task's tokenizer; only a model trained on text "
            "(char or bpe) can be fine-tuned on --data"
        )
    kind = "char" if isinstance(tokenizer, CharTokenizer) else "bpe"
    if tc.tokenizer != kind and chose("tokenizer", tc.tokenizer, TrainConfig.tokenizer):
        raise FinetuneError(
            f"--tokenizer {tc.tokenizer} contradicts --init-from {source.spec}, whose "
            f"tokenizer is {kind}: a fine-tuned run encodes its data with the source's"
        )
    train_changes: dict[str, object] = {"tokenizer": kind}
    if kind == "bpe":
        size = tc.bpe_vocab_size
        if size != tokenizer.vocab_size and chose(
            "bpe_vocab_size", size, TrainConfig.bpe_vocab_size
        ):
            raise FinetuneError(
                f"--bpe-vocab-size {tc.bpe_vocab_size} contradicts --init-from "
                f"{source.spec}, whose tokenizer has {tokenizer.vocab_size} ids"
            )
        train_changes["bpe_vocab_size"] = tokenizer.vocab_size
    if runs.model_vocab_size(tokenizer, theirs.arch) != theirs.vocab_size:
        raise FinetuneError(
            f"--init-from {source.spec}: its tokenizer has {tokenizer.vocab_size} ids but "
            f"its model's vocabulary has {theirs.vocab_size}"
        )
    return override(theirs, changes), override(tc, train_changes)


def corpus_chunks(tokenizer: Tokenizer, tc: TrainConfig) -> Iterable[str]:
    """The text of tc.data to encode with the source's tokenizer, checked first: a
    character tokenizer cannot encode a character it has never seen (byte-level BPE
    encodes anything). BPE gets the text in one piece, as the trainer gives it."""
    if not isinstance(tokenizer, CharTokenizer):
        return [load_text(tc.data)]
    known = set(tokenizer.chars)
    for chunk in iter_text(tc.data):
        unknown = set(chunk) - known
        if unknown:
            first = [ch for ch in dict.fromkeys(chunk) if ch in unknown]  # in text order
            shown = ", ".join(repr(ch) for ch in first[:10])
            more = f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
            raise FinetuneError(
                f"--data {tc.data} has characters the character tokenizer of --init-from "
                f"{tc.init_from} cannot encode: {shown}{more}"
            )
    return iter_text(tc.data)


def _freeze_prefixes(part: str, n_layer: int, tied: bool = True) -> list[str]:
    """Parameter-name prefixes (each ending in ".") that one --freeze part names; `tied`:
    whether the output layer is the token table (ModelConfig.tie_embeddings)."""
    if part == "embeddings":  # token table (also the output layer if tied), positions
        return ["tok_emb.", "pos_emb.", "ln_embed."]
    if part == "head":  # tied: the token table, transposed; untied: lm_head
        return ["tok_emb.weight."] if tied else ["lm_head."]
    if part == "ln_f":
        return ["ln_f."]
    m = re.fullmatch(TrainConfig.FREEZE_PART, part)
    first = int(m["first"]) if m["first"] is not None else 0
    if m["last"] is not None:
        last = int(m["last"])
    else:
        last = first if m["first"] is not None else n_layer - 1
    if last >= n_layer:
        raise FinetuneError(
            f"--freeze {part}: block {last} is out of range; the model has {n_layer} blocks, "
            f"blocks.0 to blocks.{n_layer - 1}"
        )
    sub = f"{m['sub']}." if m["sub"] else ""
    return [f"blocks.{i}.{sub}" for i in range(first, last + 1)]


def freeze(model: nn.Module, spec: str) -> list[str]:
    """Set requires_grad False on the parameters the comma-separated parts of `spec` name
    (TrainConfig.freeze); returns their names. A part that names no parameter of this
    model (ln_f of a post-norm model, blocks.mlp of an attention-only one) is an error."""
    parts = [part.strip() for part in spec.split(",")] if spec else []
    names = dict(model.named_parameters())  # a tied weight once, under its first name
    frozen: list[str] = []
    for part in parts:
        prefixes = _freeze_prefixes(part, model.config.n_layer, model.config.tie_embeddings)
        hit = [n for n in names if any(f"{n}.".startswith(p) for p in prefixes)]
        if not hit:
            raise FinetuneError(f"--freeze {part} names no parameter of this model")
        frozen += [n for n in hit if n not in frozen]
    for name in frozen:
        names[name].requires_grad_(False)
    return frozen


def adapt(model: nn.Module, tc: TrainConfig, generator: torch.Generator | None = None) -> None:
    """Make `model` what tc trains, in place: LoRA adapters (which freeze everything
    else), then the parts tc.freeze names (adapters inside them included)."""
    if tc.lora_rank:
        add_lora(model, tc.lora_rank, tc.lora_alpha, generator=generator)
    freeze(model, tc.freeze)


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameters; a tied weight counts once."""
    params = list(model.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


def describe_trainable(model: nn.Module) -> str:
    """'trainable parameters: 12,345 of 804,096 (1.5%)'"""
    trainable, total = count_parameters(model)
    share = 100 * trainable / max(total, 1)
    shown = f"{share:.1f}" if share >= 0.1 or share == 0 else f"{share:.2g}"
    return f"trainable parameters: {trainable:,} of {total:,} ({shown}%)"


def check(mc: ModelConfig, tc: TrainConfig) -> None:
    """Fail before a run folder exists if tc.freeze or LoRA cannot work with mc: LoRA
    without --init-from, a part out of range or naming nothing, nothing left to train.
    The model is built on the meta device (shapes only, no memory, no RNG draws)."""
    if tc.lora_rank and not tc.init_from:
        raise FinetuneError(
            "--lora-rank trains adapters on a trained model: pass --init-from with a run "
            "folder or a Hugging Face GPT-2 folder"
        )
    if not (tc.freeze or tc.lora_rank):
        return
    if tc.freeze and mc.arch == "encoder-decoder":
        raise FinetuneError(
            "--freeze names the parts of a decoder or an encoder, not of an encoder-decoder"
        )
    with torch.device("meta"):
        model = build_model(mc)
        adapt(model, tc)
    if count_parameters(model)[0] == 0:
        what = "every LoRA adapter" if tc.lora_rank else "every parameter"
        raise FinetuneError(f"--freeze {tc.freeze} freezes {what}: nothing would train")


# Our adapted Linears and their GPT2LMHeadModel modules: both fuse q, k, v in one layer, in
# that order, and peft's lora_A (r, in) and lora_B (out, r) have our layouts.
PEFT_MODULES = {"attn.qkv": "attn.c_attn", "attn.proj": "attn.c_proj", "mlp.fc": "mlp.c_fc",
                "mlp.proj": "mlp.c_proj"}  # fmt: skip
PEFT_FILES = ("adapter_config.json", "adapter_model.safetensors")


def export_peft(
    run_dir: Path | str,
    out_dir: Path | str,
    *,
    which: str = "best",
    base_model: str = "",
    overwrite: bool = False,
) -> list[str]:
    """Write a LoRA run's adapters as a peft adapter folder (adapter_config.json and
    adapter_model.safetensors) for the Hugging Face GPT-2 its base is, such as the folder
    it was fine-tuned from or `glassbox export` of its source run; returns the files.
    base_model goes into adapter_config.json's base_model_name_or_path.

    >>> export_peft("runs/lora", "exported/lora", base_model="gpt2")  # doctest: +SKIP
    >>> model = PeftModel.from_pretrained(GPT2LMHeadModel.from_pretrained("gpt2"),
    ...                                   "exported/lora")  # doctest: +SKIP
    """
    from safetensors.torch import save  # here: the trainer never needs it

    run_dir, out_dir = Path(run_dir), Path(out_dir)
    model_config, train_config = runs.load_configs(run_dir)
    if not train_config.lora_rank:
        raise FinetuneError(f"{run_dir} is not a LoRA run (its lora_rank is 0): no adapters")
    try:
        check_gpt2_compatible(model_config)
    except GlassboxError as err:
        raise FinetuneError(f"{run_dir} has no GPT-2 base for peft: {err}") from None
    if out_dir.exists() and not out_dir.is_dir():
        raise FinetuneError(f"{out_dir} is a file, not a folder")
    taken = [name for name in PEFT_FILES if (out_dir / name).exists()]
    if taken and not overwrite:
        raise FinetuneError(f"{out_dir} already holds {taken[0]}: pick another folder")
    model, _ = runs.load_model(run_dir, which, keep_lora=True)
    tensors = {}
    for name, layer in lora_layers(model).items():
        _, index, target = name.split(".", 2)  # blocks.N.attn.qkv
        where = f"base_model.model.transformer.h.{index}.{PEFT_MODULES[target]}"
        tensors[f"{where}.lora_A.weight"] = layer.lora_A.detach().contiguous()
        tensors[f"{where}.lora_B.weight"] = layer.lora_B.detach().contiguous()
    config = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base_model or None,
        "r": train_config.lora_rank,
        "lora_alpha": train_config.lora_alpha or train_config.lora_rank,
        "lora_dropout": 0.0,
        "target_modules": sorted({module.split(".")[-1] for module in PEFT_MODULES.values()}),
        "fan_in_fan_out": True,  # GPT-2's Conv1D stores weights (in, out)
        "bias": "none",
        "inference_mode": True,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(out_dir / PEFT_FILES[1], save(tensors, metadata={"format": "pt"}))
    runs.write_json(out_dir / PEFT_FILES[0], config)
    return list(PEFT_FILES)
