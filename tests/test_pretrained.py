"""Pretrained GPT-2 in and out, checked against Hugging Face's own GPT2LMHeadModel and
GPT2Tokenizer on random weights saved with save_pretrained (offline: nothing downloads)."""

import json
import os
import re
import shutil
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from helpers import scramble

from glassbox import runs
from glassbox.checkpoint import save_checkpoint
from glassbox.cli import main
from glassbox.config import ModelConfig, TrainConfig
from glassbox.errors import GlassboxError
from glassbox.generate import generate
from glassbox.models import build_model
from glassbox.pretrained import (
    GLASSBOX_TOKENIZER,
    export_gpt2,
    from_pretrained,
    import_gpt2,
    load_gpt2_model,
)
from glassbox.tokenizers import BPETokenizer, CharTokenizer, load_gpt2, open_tokenizer
from glassbox.tokenizers.formats import gpt2_vocabulary, save_gpt2

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

TEXT = (
    "First Citizen:\nBefore we proceed any further, hear me speak.\n\n"
    "All:\nSpeak, speak.\n\nFirst Citizen:\nYou are all resolved rather to die than to famish?\n"
) * 4
V, T, EOT = 300, 32, 299  # ids 0..298 are BPE tokens, 299 is <|endoftext|>
SMALL = dict(vocab_size=V, n_positions=T, n_embd=64, n_layer=2, n_head=4, bos_token_id=EOT,
             eos_token_id=EOT)  # fmt: skip


@pytest.fixture(scope="module")
def tokenizer():
    tok = BPETokenizer.train(TEXT, V, pattern="gpt2", special_tokens=["<|endoftext|>"])
    assert tok.vocab_size == V and tok.special_tokens == {"<|endoftext|>": EOT}
    return tok


def hf_gpt2(seed=0, **changes):
    """A random GPT2LMHeadModel, weights spread wide enough that greedy tokens vary."""
    torch.manual_seed(seed)
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(**{**SMALL, **changes}))
    return scramble(model.eval(), std=0.1, seed=seed)


@pytest.fixture(scope="module")
def hf():
    return hf_gpt2()


@pytest.fixture
def folder(tmp_path, hf, tokenizer):
    """What save_pretrained writes, with vocab.json + merges.txt beside it."""
    path = tmp_path / "hf"
    hf.save_pretrained(path)
    save_gpt2(tokenizer, path)
    return path


def hf_logits(model, idx):
    with torch.no_grad():
        return model(idx).logits


def hf_greedy(model, prompt, n):
    out = model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=n,
                         do_sample=False, pad_token_id=EOT)  # fmt: skip
    return out[0, prompt.size(1) :].tolist()


def greedy(model, prompt, n):
    return [int(t) for t in generate(model, prompt, n, temperature=0)]


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


# ---- reading Hugging Face folders ----------------------------------------------------


def as_bin(folder, hf, openai_names=False):
    """The weights as pytorch_model.bin instead: as older transformers saved them
    (lm_head.weight included), or as OpenAI's files name them (GPT2Model names, no
    lm_head, the per-block causal-mask buffers that older versions saved)."""
    state = hf.state_dict()
    if openai_names:
        state = {k.removeprefix("transformer."): v for k, v in state.items() if "lm_head" not in k}
        for i in range(SMALL["n_layer"]):
            state[f"h.{i}.attn.bias"] = torch.tril(torch.ones(T, T)).view(1, 1, T, T)
            state[f"h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
    (folder / "model.safetensors").unlink()
    torch.save(state, folder / "pytorch_model.bin")


@pytest.mark.parametrize("layout", ["safetensors", "shards", "bin", "bin with OpenAI's names"])
def test_logits_and_greedy_tokens_match_hugging_face(folder, hf, tokenizer, layout):
    if layout == "shards":
        (folder / "model.safetensors").unlink()
        hf.save_pretrained(folder, max_shard_size="100KB")
        assert len(list(folder.glob("model-*.safetensors"))) > 1
    elif layout != "safetensors":
        as_bin(folder, hf, openai_names="OpenAI" in layout)
    model, tok = from_pretrained(folder)
    idx = torch.randint(0, V, (3, T), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert (model(idx) - hf_logits(hf, idx)).abs().max() < 1e-5
    prompt = torch.tensor([tok.encode("First Citizen:")])
    tokens = greedy(model, prompt, 16)
    assert tokens == hf_greedy(hf, prompt, 16)
    assert len(set(tokens)) > 3  # the weights are random enough to make a real check


def test_glassbox_from_pretrained_is_importable_without_loading_torch_first(folder):
    import glassbox
    import glassbox.pretrained

    assert glassbox.from_pretrained is glassbox.pretrained.from_pretrained
    code = "import sys, glassbox; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "False"


def test_our_vocabulary_files_encode_like_hugging_faces_gpt2_tokenizer(folder, tokenizer):
    theirs = transformers.GPT2Tokenizer.from_pretrained(folder)
    (folder / "tokenizer.json").write_text('{"model": {"type": "BPE"}}')  # HF's, not ours
    ours = open_tokenizer(str(folder))  # reads vocab.json + merges.txt
    assert ours.ranks == tokenizer.ranks and ours.special_tokens == tokenizer.special_tokens
    for text in ["First Citizen: hear me speak!", "  Speak,\n\nspeak.  ", "héllo wörld 12 it's"]:
        assert ours.encode(text) == theirs.encode(text) == tokenizer.encode(text)


def test_real_gpt2_merges_are_recovered_from_the_ranks_alone(tokenizer, tmp_path):
    """The merge list is derived from the ranks, so it must be the learned one."""
    encoder, merges = gpt2_vocabulary(tokenizer)
    assert len(merges) == V - 1 - 256 and encoder["<|endoftext|>"] == EOT
    save_gpt2(tokenizer, tmp_path, names=("encoder.json", "vocab.bpe"))
    assert load_gpt2(tmp_path / "encoder.json", tmp_path / "vocab.bpe").ranks == tokenizer.ranks


def test_vocabularies_gpt2_files_cannot_hold_are_refused(tokenizer):
    with pytest.raises(GlassboxError, match="split pattern"):
        gpt2_vocabulary(BPETokenizer(tokenizer.ranks, "cl100k"))
    with pytest.raises(GlassboxError, match="CharTokenizer"):
        gpt2_vocabulary(CharTokenizer("ab"))
    ranks = {bytes([b]): b for b in range(256)} | {b"abc": 256}  # no 'ab' or 'bc' to merge
    with pytest.raises(GlassboxError, match="not a merge of two tokens"):
        gpt2_vocabulary(BPETokenizer(ranks, "gpt2"))


def test_model_names_are_found_in_the_hugging_face_cache(folder, tmp_path, monkeypatch):
    def cache(root, repo):
        snapshot = root / f"models--{repo}" / "snapshots" / "abc123"
        shutil.copytree(folder, snapshot)
        (root / f"models--{repo}" / "refs").mkdir()
        (root / f"models--{repo}" / "refs" / "main").write_text("abc123")

    cache(tmp_path / "hub", "org--tiny")
    cache(tmp_path / "home" / "hub", "openai-community--tiny")
    expected = load_gpt2_model(folder).state_dict()
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    for name, value in from_pretrained("org/tiny")[0].state_dict().items():
        assert torch.equal(value, expected[name])
    with pytest.raises(GlassboxError, match=f"looked in {tmp_path / 'hub'}.*models--nope"):
        from_pretrained("nope")
    monkeypatch.delenv("HF_HUB_CACHE")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    assert from_pretrained("tiny")[1].vocab_size == V  # a bare name: openai-community's


def config_change(**changes):
    def mutate(folder, hf):
        path = folder / "config.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))

    return mutate


def weights_change(edit):
    def mutate(folder, hf):
        state = {k: v.clone() for k, v in hf.state_dict().items() if k != "lm_head.weight"}
        edit(state)
        (folder / "model.safetensors").unlink()
        torch.save(state, folder / "pytorch_model.bin")

    return mutate


def bin_holding(obj):
    def mutate(folder, hf):
        (folder / "model.safetensors").unlink()
        torch.save(obj(folder), folder / "pytorch_model.bin")

    return mutate


class MakesAFolder:
    """Unpickling this runs os.mkdir: a file that weights_only loading must refuse."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def remove(*names):
    def mutate(folder, hf):
        for name in names:
            (folder / name).unlink()

    return mutate


def fewer_ids(folder, hf):
    save_gpt2(BPETokenizer.train(TEXT, 290, pattern="gpt2"), folder)


BAD_SOURCES = {
    "model type": (config_change(model_type="gpt_neox"), "model_type 'gpt_neox', not 'gpt2'"),
    "layer-index scaling": (
        config_change(scale_attn_by_inverse_layer_idx=True),
        "scale_attn_by_inverse_layer_idx=true",
    ),
    "upcast attention": (config_change(reorder_and_upcast_attn=True), "reorder_and_upcast_attn"),
    "unscaled attention": (config_change(scale_attn_weights=False), "scale_attn_weights=false"),
    "cross-attention": (config_change(add_cross_attention=True), "add_cross_attention=true"),
    "activation": (config_change(activation_function="silu"), "activation_function 'silu'"),
    "MLP width": (config_change(n_inner=100), "n_inner 100, not a multiple of n_embd 64"),
    "untied lm_head": (
        weights_change(lambda s: s.update({"lm_head.weight": torch.randn(V, 64)})),
        "untied lm_head cannot load",
    ),
    "untied, no lm_head": (config_change(tie_word_embeddings=False), "holds no lm_head.weight"),
    "missing tensor": (
        weights_change(lambda s: s.pop("transformer.h.1.mlp.c_fc.bias")),
        "transformer.h.1.mlp.c_fc.bias is missing",
    ),
    "extra tensor": (
        weights_change(lambda s: s.update({"transformer.h.0.attn.q_norm.weight": torch.ones(64)})),
        "transformer.h.0.attn.q_norm.weight is not part of GPT-2's layout",
    ),
    "shape": (
        config_change(n_positions=16),
        r"transformer.wpe.weight has shape \(32, 64\), but the config calls for \(16, 64\)",
    ),
    "vocabulary": (fewer_ids, "the tokenizer has 290 ids but config.json's vocab_size is 300"),
    "no tokenizer": (remove("vocab.json", "merges.txt"), "has no tokenizer"),
    "no weights": (remove("model.safetensors"), "holds no weights"),
    "no config": (remove("config.json"), "no config.json: not a Hugging Face model folder"),
    "checkpoint dict": (
        bin_holding(lambda folder: {"model": {}, "step": 3}),
        "not a plain dict of tensors",
    ),
    "pickled code": (
        bin_holding(lambda folder: {"w": MakesAFolder(folder / "pwned")}),
        r"not a plain dict of tensors: it refers to \w+\.mkdir",
    ),
    "corrupt safetensors": (
        lambda folder, hf: (folder / "model.safetensors").write_bytes(b"\x08" + b"\0" * 20),
        "cannot read .*model.safetensors",
    ),
}


@pytest.mark.parametrize("case", list(BAD_SOURCES))
def test_bad_sources_are_one_line_and_write_nothing(folder, hf, tmp_path, capsys, case):
    mutate, message = BAD_SOURCES[case]
    mutate(folder, hf)
    run = tmp_path / "runs" / "gpt2"
    code, out, err = run_cli(capsys, "import", "gpt2", folder, "--run", run)
    assert code == 2 and out == ""
    assert err.count("\n") == 1, err
    assert re.search(message, err), err
    assert not (tmp_path / "runs").exists()
    assert not (folder / "pwned").exists()  # nothing from the file ran


# ---- runs made from them ---------------------------------------------------------------


def test_an_imported_run_samples_scores_counts_and_inspects_like_gpt2(
    folder, hf, tokenizer, tmp_path, capsys
):
    run = tmp_path / "run"
    code, out, _ = run_cli(capsys, "import", "gpt2", folder, "--run", run)
    assert code == 0 and f"wrote {run}" in out
    prompt = "First Citizen:"
    ids = hf_greedy(hf, torch.tensor([tokenizer.encode(prompt)]), 10)
    code, out, _ = run_cli(capsys, "sample", "--run", run, "--prompt", prompt,
                           "--temperature", 0, "--max-new-tokens", 10)  # fmt: skip
    assert code == 0 and out == prompt + tokenizer.decode(ids) + "\n"

    text = tmp_path / "text.txt"
    text.write_text(TEXT)
    code, out, _ = run_cli(capsys, "eval", "--run", run, "--data", text, "--json")
    assert code == 0
    tokens = torch.tensor(tokenizer.encode(TEXT))
    n = (len(tokens) - 1) // T  # eval's windows: consecutive, non-overlapping
    x = torch.stack([tokens[i * T : i * T + T] for i in range(n)])
    y = torch.stack([tokens[i * T + 1 : i * T + T + 1] for i in range(n)])
    loss = F.cross_entropy(hf_logits(hf, x).flatten(0, 1), y.flatten()).item()
    assert json.loads(out)["loss"] == pytest.approx(loss, abs=1e-5)

    code, out, _ = run_cli(capsys, "count", "--run", run)
    assert code == 0 and f"{hf.num_parameters():,}" in out
    code, out, _ = run_cli(capsys, "inspect", run, "--prompt", prompt, "--lens", "--json")
    assert code == 0 and json.loads(out)["lens"]


def test_an_existing_run_is_replaced_only_with_overwrite(folder, tokenizer, tmp_path, capsys):
    run = tmp_path / "run"
    import_gpt2(folder, run)
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    other = tmp_path / "other"
    hf_gpt2(seed=1).save_pretrained(other)
    save_gpt2(tokenizer, other)
    code, _, err = run_cli(capsys, "import", "gpt2", other, "--run", run)
    assert code == 2 and "already holds a run" in err
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before
    code, _, err = run_cli(capsys, "import", "gpt2", other, "--run", other, "--overwrite")
    assert code == 2 and "not a glassbox run's" in err  # the source's own config.json stays
    code, _, _ = run_cli(capsys, "import", "gpt2", other, "--run", run, "--overwrite")
    assert code == 0
    model, _ = runs.load_model(run)
    expected = load_gpt2_model(other).state_dict()
    assert all(torch.equal(v, expected[k]) for k, v in model.state_dict().items())


# ---- writing runs out --------------------------------------------------------------


def assert_same_run(a, b):
    (model_a, tok_a), (model_b, tok_b) = runs.load_model(a), runs.load_model(b)
    assert model_a.config == model_b.config
    assert tok_a.to_dict() == tok_b.to_dict()
    state_b = model_b.state_dict()
    assert all(torch.equal(v, state_b[k]) for k, v in model_a.state_dict().items())


def test_export_loads_in_transformers_and_imports_back_identical(folder, hf, tmp_path, capsys):
    run, out_dir = tmp_path / "run", tmp_path / "exported"
    import_gpt2(folder, run)
    code, out, _ = run_cli(capsys, "export", run, out_dir)
    assert code == 0 and "not in GPT-2's format" not in out
    assert sorted(p.name for p in out_dir.iterdir()) == [
        "config.json", "merges.txt", "model.safetensors", "vocab.json"
    ]  # fmt: skip
    assert json.loads((out_dir / "vocab.json").read_text()) == json.loads(
        (folder / "vocab.json").read_text()
    )
    assert (out_dir / "merges.txt").read_text() == (folder / "merges.txt").read_text()
    theirs = transformers.GPT2LMHeadModel.from_pretrained(out_dir).eval()
    model, _ = runs.load_model(run)
    idx = torch.randint(0, V, (2, T), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert (hf_logits(theirs, idx) - model(idx)).abs().max() < 1e-5
    assert theirs.config.eos_token_id == EOT
    import_gpt2(out_dir, tmp_path / "again")
    assert_same_run(run, tmp_path / "again")


def write_run(run_dir, config, tokenizer, seed=0):
    """A run folder as training writes it, holding an untrained (scrambled) model."""
    vocab_size = runs.model_vocab_size(tokenizer, config.arch)
    config = ModelConfig(**{**vars(config), "vocab_size": vocab_size})
    torch.manual_seed(seed)
    model = scramble(build_model(config), std=0.1, seed=seed)
    run_dir.mkdir(parents=True)
    runs.write_json(run_dir / runs.TOKENIZER, tokenizer.to_dict())
    runs.save_config(run_dir, config, TrainConfig(run_dir=str(run_dir)))
    save_checkpoint(run_dir / runs.CHECKPOINT, model, meta={"step": 0})
    return run_dir


def test_a_char_run_exports_its_weights_and_keeps_its_tokenizer_for_glassbox(tmp_path, capsys):
    # exact GELU and a 2x MLP have GPT2Config names too (activation_function, n_inner)
    config = ModelConfig(block_size=T, n_layer=2, n_head=2, n_embd=32, bias=True,
                         activation="gelu", mlp_ratio=2, norm_eps=1e-6)  # fmt: skip
    run = write_run(tmp_path / "run", config, CharTokenizer.train(TEXT))
    out_dir = tmp_path / "exported"
    code, out, _ = run_cli(capsys, "export", run, out_dir)
    assert code == 0
    assert "not in GPT-2's format (GPT-2's vocabulary files hold byte-level BPE" in out
    assert not (out_dir / "vocab.json").exists() and (out_dir / GLASSBOX_TOKENIZER).is_file()
    hf_config = json.loads((out_dir / "config.json").read_text())
    assert hf_config["n_inner"] == 64 and hf_config["activation_function"] == "gelu"
    assert hf_config["eos_token_id"] is None  # a char vocabulary has no <|endoftext|>
    theirs = transformers.GPT2LMHeadModel.from_pretrained(out_dir).eval()
    model, _ = runs.load_model(run)
    idx = torch.randint(0, model.config.vocab_size, (2, T))
    with torch.no_grad():
        assert (hf_logits(theirs, idx) - model(idx)).abs().max() < 1e-5
    import_gpt2(out_dir, tmp_path / "again")
    assert_same_run(run, tmp_path / "again")


@pytest.mark.parametrize(
    "change, reason",
    [
        ({"pos_encoding": "rope"}, "pos_encoding='learned' (this model has pos_encoding='rope')"),
        ({"norm": "rmsnorm"}, "norm='layernorm' (this model has norm='rmsnorm')"),
        ({"bias": False}, "bias=True (this model has bias=False)"),
        ({"activation": "swiglu"}, "this model has activation='swiglu'"),
        ({"n_kv_head": 1}, "one key/value head per query head (this model has n_kv_head=1)"),
        ({"norm_placement": "post"}, "this model has norm_placement='post'"),
        ({"arch": "encoder"}, "arch='decoder' (this model has arch='encoder')"),
        ({"attn_only": True}, "an MLP in every block (this model has attn_only=True)"),
    ],
)
def test_models_gpt2_cannot_express_are_refused(tmp_path, capsys, change, reason):
    config = ModelConfig(
        **{**dict(block_size=T, n_layer=1, n_head=2, n_embd=16, bias=True), **change}
    )
    run = write_run(tmp_path / "run", config, CharTokenizer.train(TEXT))
    code, out, err = run_cli(capsys, "export", run, tmp_path / "exported")
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "cannot be written as GPT-2" in err and reason in err
    assert not (tmp_path / "exported").exists()


def test_export_replaces_an_earlier_export_only_with_overwrite(folder, tmp_path):
    run, out_dir = import_gpt2(folder, tmp_path / "run"), tmp_path / "exported"
    export_gpt2(run, out_dir)
    with pytest.raises(GlassboxError, match="already holds config.json"):
        export_gpt2(run, out_dir)
    with pytest.raises(GlassboxError, match="holds a glassbox run"):
        export_gpt2(run, run, overwrite=True)
    assert runs.load_model(run)  # the run is intact
    char_run = write_run(tmp_path / "char", ModelConfig(bias=True), CharTokenizer.train(TEXT))
    export_gpt2(char_run, out_dir, overwrite=True)
    # the GPT-2 vocabulary of the earlier export is gone: it would not fit these weights
    assert not (out_dir / "vocab.json").exists() and (out_dir / GLASSBOX_TOKENIZER).exists()


@pytest.mark.slow
def test_gpt2_124m_shape_matches_hugging_face(tmp_path):
    """GPT-2 small's shape (12 layers, 768 wide, 50,257 tokens) with random weights; no
    tokenizer (it would need GPT-2's 50,000 merges), so the weights load on their own."""
    torch.manual_seed(0)
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config()).eval()
    hf.save_pretrained(tmp_path)
    model = load_gpt2_model(tmp_path)
    assert model.num_params() == hf.num_parameters() == 124_439_808
    idx = torch.randint(0, 50257, (2, 64), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        diff = (model(idx) - hf_logits(hf, idx)).abs().max().item()
    print(f"GPT-2 124M shape: max abs logit difference {diff:.3g}")
    assert diff < 1e-5
    prompt = idx[:1, :8]
    assert greedy(model, prompt, 12) == hf_greedy(hf, prompt, 12)
