"""Pretrained GPT-2 in and out: a Hugging Face GPT-2 folder becomes a glassbox model or
run, and a run becomes a folder that `transformers.GPT2LMHeadModel.from_pretrained` loads.

A Hugging Face GPT-2 folder holds
  config.json        model_type gpt2 and the shape (n_layer, n_head, n_embd, ...)
  the weights        model.safetensors (or shards listed in model.safetensors.index.json),
                     or pytorch_model.bin, read with torch.load(weights_only=True)
  the tokenizer      vocab.json + merges.txt (OpenAI's names: encoder.json + vocab.bpe)
A model name ("gpt2", "openai-community/gpt2-medium") is looked up in the local Hugging
Face cache; nothing is downloaded. Names and layouts are translated by
glassbox.models.convert; everything is checked before a model is built or a file written.

>>> model, tokenizer = from_pretrained("gpt2")  # doctest: +SKIP
>>> import_gpt2("gpt2", "runs/gpt2")  # doctest: +SKIP
PosixPath('runs/gpt2')
>>> export_gpt2("runs/gpt2", "exported/gpt2")["files"]  # doctest: +SKIP
['model.safetensors', 'vocab.json', 'merges.txt', 'config.json']
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from glassbox import jsonfiles, runs
from glassbox.checkpoint import atomic_write, save_checkpoint
from glassbox.config import TrainConfig
from glassbox.errors import GlassboxError
from glassbox.models.convert import (
    from_gpt2_state_dict,
    gpt2_config,
    gpt2_hf_config,
    to_gpt2_state_dict,
)
from glassbox.models.gpt import GPT
from glassbox.tokenizers import BPETokenizer, Tokenizer, TokenizerError, load_gpt2
from glassbox.tokenizers.formats import find_gpt2_files, gpt2_vocabulary, open_tokenizer

# Where the weights may be, in the order Hugging Face prefers them.
WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
           "pytorch_model.bin.index.json")  # fmt: skip
# A tokenizer GPT-2's files cannot hold is exported as glassbox's own JSON under this name
# (not tokenizer.json, which Hugging Face would read as its own format).
GLASSBOX_TOKENIZER = "glassbox_tokenizer.json"
EXPORTED = ("config.json", "model.safetensors", "vocab.json", "merges.txt", GLASSBOX_TOKENIZER)
_REPO_ID = re.compile(r"[\w-][\w.-]*(/[\w-][\w.-]*)?")


class PretrainedError(GlassboxError):
    """A pretrained model that cannot be found or read, or a run that cannot be exported."""


# ---- finding and reading a folder ------------------------------------------------------


def hub_cache() -> Path:
    """Hugging Face's cache of downloaded models: $HF_HUB_CACHE, else $HF_HOME/hub, else
    ~/.cache/huggingface/hub (or $XDG_CACHE_HOME/huggingface/hub), as huggingface_hub
    resolves it."""
    env = os.environ
    if env.get("HF_HUB_CACHE"):
        return Path(env["HF_HUB_CACHE"]).expanduser()
    if env.get("HF_HOME"):
        return Path(env["HF_HOME"]).expanduser() / "hub"
    base = Path(env["XDG_CACHE_HOME"]).expanduser() if env.get("XDG_CACHE_HOME") else None
    return (base or Path.home() / ".cache") / "huggingface" / "hub"


def find_source(source: str | Path) -> Path:
    """The folder `source` names: itself if it is a folder, else the snapshot of model
    `source` in the Hugging Face cache (`models--ORG--NAME/snapshots/<refs/main>/`; a bare
    name is also looked for under openai-community, where the GPT-2 models now live)."""
    path = Path(source)
    if path.is_dir():
        return path
    name = str(source)
    if path.exists():
        raise PretrainedError(f"{name} is a file; give the folder that holds config.json")
    if not _REPO_ID.fullmatch(name):
        raise PretrainedError(f"no folder {name}")
    repos = [name] if "/" in name else [name, f"openai-community/{name}"]
    tried = [hub_cache() / f"models--{repo.replace('/', '--')}" / "snapshots" for repo in repos]
    for snapshots in tried:
        found = _snapshot(snapshots)
        if found:
            return found
    raise PretrainedError(
        f"no folder {name}, and no {name} in the Hugging Face cache (looked in "
        f"{' and '.join(map(str, tried))}): give a folder, or download it first "
        f"(hf download {name})"
    )


def _snapshot(snapshots: Path) -> Path | None:
    """The snapshot that refs/main points to, or the only one there is."""
    ref = snapshots.parent / "refs" / "main"
    if ref.is_file() and (snapshots / ref.read_text().strip()).is_dir():
        return snapshots / ref.read_text().strip()
    found = sorted(p for p in snapshots.iterdir() if p.is_dir()) if snapshots.is_dir() else []
    if len(found) > 1:
        raise PretrainedError(
            f"{snapshots} holds {len(found)} snapshots and no refs/main says which is "
            "current: give the snapshot folder itself"
        )
    return found[0] if found else None


def read_json(path: Path) -> Any:
    """A Hugging Face folder's JSON file (config, index, tokenizer or pooling config)."""
    return jsonfiles.read_json(path, "model folder's file", PretrainedError)


def read_hf_config(folder: Path) -> dict[str, Any]:
    path = folder / "config.json"
    if not path.is_file():
        raise PretrainedError(f"{folder} has no config.json: not a Hugging Face model folder")
    hf = read_json(path)
    if not isinstance(hf, dict):
        raise PretrainedError(f"{path} is not a JSON object")
    return hf


def first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


def _load_tensors(path: Path) -> dict[str, Tensor]:
    """One weights file: safetensors, or a .bin that must be a plain dict of tensors
    (torch.load with weights_only=True runs no code from the file)."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(path)
        except Exception as err:  # safetensors raises its own types for corrupt files
            raise PretrainedError(f"cannot read {path}: {first_line(err)}") from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # an unpickling refusal, a corrupt zip, a truncated file
        found = re.search(r"GLOBAL ([\w.]+)", str(err))  # torch's message is a page long
        why = f"it refers to {found[1]}" if found else "it is not a PyTorch tensor file"
        raise PretrainedError(
            f"{path} is not a plain dict of tensors: {why}, and torch.load(weights_only=True) "
            "refused it (nothing in it ran)"
        ) from None
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in state.items()
    ):
        inside = f"{type(state).__name__}" if not isinstance(state, dict) else "other values"
        raise PretrainedError(f"{path} is not a plain dict of tensors (it holds {inside})")
    return state


def read_weights(folder: Path) -> tuple[dict[str, Tensor], Path]:
    """The state dict of the folder's weights (all shards), and the file it came from."""
    path = next((folder / name for name in WEIGHTS if (folder / name).is_file()), None)
    if path is None:
        raise PretrainedError(f"{folder} holds no weights: none of {', '.join(WEIGHTS)}")
    if not path.name.endswith(".index.json"):
        return _load_tensors(path), path
    index = read_json(path)
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict):
        raise PretrainedError(f"{path} has no weight_map")
    state: dict[str, Tensor] = {}
    for shard in sorted(set(weight_map.values())):
        if not isinstance(shard, str) or Path(shard).name != shard:
            raise PretrainedError(f"{path} names a shard outside its folder: {shard!r}")
        state.update(_load_tensors(folder / shard))
    return state, path


def _read_tokenizer(folder: Path) -> Tokenizer:
    gpt2_files = find_gpt2_files(folder)
    if gpt2_files:
        return load_gpt2(*gpt2_files)
    if (folder / GLASSBOX_TOKENIZER).is_file():
        return open_tokenizer(str(folder / GLASSBOX_TOKENIZER))
    raise PretrainedError(
        f"{folder} has no tokenizer: expected vocab.json + merges.txt (or encoder.json + "
        f"vocab.bpe, or glassbox's {GLASSBOX_TOKENIZER})"
    )


def _load(folder: Path, tokenizer: bool) -> tuple[GPT, Tokenizer | None]:
    """Config, then tokenizer, then weights: the cheap checks fail first."""
    hf = read_hf_config(folder)
    try:
        config = gpt2_config(hf)
    except GlassboxError as err:
        raise PretrainedError(f"{folder}: {err}") from None
    tok = _read_tokenizer(folder) if tokenizer else None
    if tok is not None and tok.vocab_size != config.vocab_size:
        raise PretrainedError(
            f"{folder}: the tokenizer has {tok.vocab_size} ids but config.json's vocab_size "
            f"is {config.vocab_size}; glassbox needs them equal"
        )
    state, path = read_weights(folder)
    if hf.get("tie_word_embeddings", True) is False and "lm_head.weight" not in state:
        raise PretrainedError(
            f"{folder}: config.json unties lm_head from the embedding but {path.name} holds "
            "no lm_head.weight"
        )
    try:
        model = from_gpt2_state_dict(state, config)
    except GlassboxError as err:
        raise PretrainedError(f"{path}: {err}") from None
    return model.eval(), tok


def load_gpt2_model(source: str | Path) -> GPT:
    """The GPT of a Hugging Face GPT-2 folder or cached model name, without its tokenizer
    (for a folder that has none).

    >>> model = load_gpt2_model("gpt2")  # doctest: +SKIP
    """
    return _load(find_source(source), tokenizer=False)[0]


def from_pretrained(source: str | Path) -> tuple[GPT, Tokenizer]:
    """A GPT (in eval mode, on the CPU, float32) and its tokenizer from a Hugging Face
    GPT-2 folder or a model name in the local Hugging Face cache.

    >>> model, tokenizer = from_pretrained("gpt2")  # doctest: +SKIP
    >>> logits = model(torch.tensor([tokenizer.encode("Hello, my name is")]))  # doctest: +SKIP
    >>> logits.shape  # doctest: +SKIP
    torch.Size([1, 5, 50257])
    """
    model, tokenizer = _load(find_source(source), tokenizer=True)
    assert tokenizer is not None
    return model, tokenizer


# ---- a run from a pretrained model ------------------------------------------------------


def _is_run(folder: Path) -> bool:
    """Whether `folder`'s config.json is a glassbox run's (not, say, a model folder's)."""
    try:
        data = json.loads((folder / runs.CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("format") == runs.FORMAT


def _check_run_folder(run_dir: Path, overwrite: bool) -> None:
    if run_dir.exists() and not run_dir.is_dir():
        raise PretrainedError(f"{run_dir} is a file, not a folder")
    if not (run_dir / runs.CONFIG).exists():
        return
    if not _is_run(run_dir):  # overwriting would delete another tool's config.json
        raise PretrainedError(
            f"{run_dir} holds a config.json that is not a glassbox run's: pick another folder"
        )
    if not overwrite:
        raise PretrainedError(
            f"{run_dir} already holds a run: pick another folder, or pass --overwrite"
        )


def import_gpt2(source: str | Path, run_dir: str | Path, *, overwrite: bool = False) -> Path:
    """Write a glassbox run holding a pretrained GPT-2: config.json, tokenizer.json and
    checkpoint.safetensors (weights only, step 0), so that sample, eval --data, inspect and
    count work on it. Nothing is created or replaced until the source has been read and
    checked whole; a run already in `run_dir` is replaced only with overwrite.

    >>> import_gpt2("gpt2", "runs/gpt2")  # doctest: +SKIP
    PosixPath('runs/gpt2')
    """
    run_dir = Path(run_dir)
    _check_run_folder(run_dir, overwrite)
    folder = find_source(source)
    model, tokenizer = _load(folder, tokenizer=True)
    assert tokenizer is not None
    imported = {"format": "gpt2", "source": str(source), "folder": str(folder)}
    return write_imported_run(run_dir, model, tokenizer, imported, overwrite=overwrite)


def write_imported_run(
    run_dir: Path, model: nn.Module, tokenizer: Tokenizer, imported: dict[str, Any], *,
    overwrite: bool = False,
) -> Path:  # fmt: skip
    """Write a run holding a pretrained model: its weights (step 0), tokenizer and config,
    the config last, so that a folder left half-written is no run. `imported` says where
    the model came from; nothing is replaced unless overwrite."""
    run_dir = Path(run_dir)
    _check_run_folder(run_dir, overwrite)
    bpe = isinstance(tokenizer, BPETokenizer)
    train = TrainConfig(
        run_dir=str(run_dir), tokenizer="bpe" if bpe else "char",
        bpe_vocab_size=max(256, tokenizer.vocab_size) if bpe else TrainConfig.bpe_vocab_size,
    )  # fmt: skip
    created = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        with runs.RunLock(run_dir):
            _check_run_folder(run_dir, overwrite)  # again: another process may have written
            runs.remove_temp_files(run_dir)
            runs.remove_run_files(run_dir)
            meta = {"step": 0, "imported_from": imported["folder"]}
            save_checkpoint(run_dir / runs.CHECKPOINT, model, meta=meta)
            runs.write_json(run_dir / runs.TOKENIZER, tokenizer.to_dict())
            runs.save_config(run_dir, model.config, train, imported=imported)
    except BaseException:
        if created and {p.name for p in run_dir.iterdir()} <= {runs.LOCK}:
            (run_dir / runs.LOCK).unlink(missing_ok=True)
            run_dir.rmdir()
        raise
    return run_dir


def describe_import(run_dir: str | Path) -> str:
    """The line `glassbox import` prints about the run it wrote."""
    config, _ = runs.load_configs(run_dir)
    return (
        f"wrote {run_dir}: GPT-2 with {config.n_layer} layers, {config.n_head} heads, "
        f"{config.n_embd} wide, context {config.block_size}, {config.vocab_size:,} tokens\n"
        f'try: glassbox sample --run {run_dir} --prompt "Hello, my name is"'
    )


# ---- a run as a Hugging Face GPT-2 folder -----------------------------------------------


def export_gpt2(
    run_dir: str | Path,
    out_dir: str | Path,
    *,
    checkpoint: str = "best",
    overwrite: bool = False,
) -> dict[str, Any]:
    """Write run `run_dir` as a Hugging Face GPT-2 folder: config.json, model.safetensors
    (GPT2LMHeadModel's names; lm_head.weight left out, since it is the tied wte.weight,
    as save_pretrained leaves it out) and, when the run's tokenizer is byte-level BPE with
    GPT-2's split pattern, vocab.json + merges.txt. Any other tokenizer is written as
    glassbox's own JSON (GLASSBOX_TOKENIZER), which import_gpt2 reads back, and the
    report's `tokenizer_note` says why. A model GPT-2 cannot express (RoPE, RMSNorm, no
    biases, SwiGLU, grouped-query attention, post-norm, an encoder, ...) is refused.

    >>> export_gpt2("runs/gpt2", "exported/gpt2")["tokenizer"]  # doctest: +SKIP
    'gpt2'
    """
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    model_config, _ = runs.load_configs(run_dir)
    try:
        hf = gpt2_hf_config(model_config)
    except GlassboxError as err:
        raise PretrainedError(f"{run_dir} cannot be written as GPT-2: {err}") from None
    if out_dir.exists() and not out_dir.is_dir():
        raise PretrainedError(f"{out_dir} is a file, not a folder")
    if _is_run(out_dir):  # the export's config.json would replace the run's
        raise PretrainedError(f"{out_dir} holds a glassbox run: export to another folder")
    taken = [name for name in EXPORTED if (out_dir / name).exists()]
    if taken and not overwrite:
        raise PretrainedError(
            f"{out_dir} already holds {taken[0]}: pick another folder, or pass --overwrite"
        )
    model, tokenizer = runs.load_model(run_dir, checkpoint)
    state = to_gpt2_state_dict(model)
    del state["lm_head.weight"]  # tied: wte.weight
    tensors = {name: t.detach().contiguous() for name, t in state.items()}
    specials = getattr(tokenizer, "special_tokens", {})
    hf["bos_token_id"] = hf["eos_token_id"] = specials.get("<|endoftext|>")
    try:
        vocab, merges = gpt2_vocabulary(tokenizer)
        files = {
            "vocab.json": json.dumps(vocab, ensure_ascii=False) + "\n",
            "merges.txt": "\n".join(["#version: 0.2", *merges]) + "\n",
        }
        note = None
    except TokenizerError as err:
        files = {GLASSBOX_TOKENIZER: json.dumps(tokenizer.to_dict(), ensure_ascii=False)}
        note = str(err)
    from safetensors.torch import save

    out_dir.mkdir(parents=True, exist_ok=True)
    for name in EXPORTED:  # an earlier export's files that this one does not rewrite
        if name not in files and name not in ("config.json", "model.safetensors"):
            (out_dir / name).unlink(missing_ok=True)
    atomic_write(out_dir / "model.safetensors", save(tensors, metadata={"format": "pt"}))
    for name, text in files.items():
        atomic_write(out_dir / name, text.encode("utf-8"))
    runs.write_json(out_dir / "config.json", hf)
    return {
        "run": str(run_dir), "out_dir": str(out_dir),
        "files": ["model.safetensors", *files, "config.json"],
        "tokenizer": "glassbox" if note else "gpt2", "tokenizer_note": note,
    }  # fmt: skip


def describe_export(report: dict[str, Any]) -> str:
    """The lines `glassbox export` prints."""
    out = report["out_dir"]
    lines = [f"wrote {out}: {', '.join(report['files'])}"]
    if report["tokenizer_note"]:
        lines.append(
            f"the tokenizer is not in GPT-2's format ({report['tokenizer_note']}): it is in "
            f"{GLASSBOX_TOKENIZER}, which glassbox import gpt2 reads; transformers gets the "
            "weights only"
        )
    lines.append(f"load it with transformers.GPT2LMHeadModel.from_pretrained({out!r})")
    return "\n".join(lines)
