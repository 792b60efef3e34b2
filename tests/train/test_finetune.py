"""Fine-tuning: --init-from, --freeze and LoRA runs, as a user of `glassbox train` meets them."""

import json
import re
import sys
import types

import pytest
import torch
from conftest import TEXT

from glassbox import runs
from glassbox.checkpoint import load_model_state
from glassbox.cli import main
from glassbox.config import from_preset, override
from glassbox.errors import GlassboxError
from glassbox.models import GPT, build_model
from glassbox.nn.lora import lora_layers
from glassbox.tokenizers import CharTokenizer
from glassbox.train.finetune import export_peft
from glassbox.train.trainer import resume, train

# New text in the source's alphabet (every character of it occurs in TEXT)
NEW_TEXT = "Speak, citizen, we proceed: hear all, and famish rather than die.\n" * 20


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A trained tiny GPT to start from (far enough from its random init that adapters
    have features to work with), with tiny_configs' settings, shared by the module's
    tests, which only read it."""
    folder = tmp_path_factory.mktemp("source")
    (folder / "corpus.txt").write_text(TEXT, encoding="utf-8")
    configs = from_preset(
        "char-small", data=str(folder / "corpus.txt"), run_dir=str(folder / "run"), n_layer=2,
        n_head=2, n_embd=16, block_size=16, batch_size=4, max_iters=30, warmup_iters=2,
        lr_decay_iters=12, eval_interval=4, eval_iters=2, device="cpu", lr=1e-2,
    )  # fmt: skip
    return train(*configs, progress=False)


@pytest.fixture
def new_text(tmp_path):
    path = tmp_path / "new.txt"
    path.write_text(NEW_TEXT, encoding="utf-8")
    return path


def train_rows(run_dir):
    """(iter, loss) of every training step and (iter, val_loss) of every evaluation."""
    rows = [json.loads(line) for line in (run_dir / runs.METRICS).read_text().splitlines()]
    steps = [(r["iter"], r["loss"]) for r in rows if r["kind"] == "train"]
    return steps, [(r["iter"], r["val_loss"]) for r in rows if r["kind"] == "eval"]


def weights(run_dir, which="last"):
    """A run's weights as trained (LoRA adapters kept apart), by name."""
    model = runs.load_model(run_dir, which, keep_lora=True)[0]
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_a_fine_tuning_run_starts_from_the_source_and_keeps_its_tokenizer(
    source, tiny_configs, tmp_path
):
    # dropout may differ from the source's; the shape comes from the source
    result = train(
        *tiny_configs(
            run_dir=str(tmp_path / "ft"), init_from=str(source.run_dir), dropout=0.1,
            max_iters=4,
        ),
        progress=False,
    )  # fmt: skip
    # the same data and evaluation batches: iteration 0 scores exactly the source's best
    _, evals = train_rows(result.run_dir)
    assert evals[0] == (0, source.best_val_loss)
    assert (result.run_dir / runs.TOKENIZER).read_bytes() == (
        source.run_dir / runs.TOKENIZER
    ).read_bytes()
    config = json.loads((result.run_dir / runs.CONFIG).read_text())
    assert config["train"]["init_from"] == str(source.run_dir)
    model, _ = runs.load_configs(result.run_dir)
    assert (model.n_layer, model.n_embd, model.dropout) == (2, 16, 0.1)
    # a fresh optimizer and schedule: warmup starts again
    rows = [json.loads(line) for line in (result.run_dir / runs.METRICS).read_text().splitlines()]
    assert rows[1]["kind"] == "train" and rows[1]["lr"] == pytest.approx(1e-3 / 2)


def test_a_char_source_cannot_encode_characters_it_never_saw(source, tiny_configs, tmp_path):
    new = tmp_path / "zebra.txt"
    new.write_text(NEW_TEXT + "Zebra ☃\n", encoding="utf-8")
    ft = tmp_path / "ft"
    with pytest.raises(GlassboxError, match=r"cannot encode: 'Z', 'b', '☃'"):
        train(*tiny_configs(run_dir=str(ft), init_from=str(source.run_dir), data=str(new)))
    assert not ft.exists()


def test_frozen_parts_keep_their_weights(source, tiny_configs, tmp_path, new_text, capsys):
    result = train(
        *tiny_configs(
            run_dir=str(tmp_path / "ft"), init_from=str(source.run_dir), data=str(new_text),
            freeze="embeddings, blocks.0", lr=1e-2,
        )
    )  # fmt: skip
    before, after = weights(source.run_dir, "best"), weights(result.run_dir)
    frozen = [k for k in after if k.startswith(("tok_emb.", "pos_emb.", "blocks.0."))]
    assert len(frozen) > 5
    for name in after:
        assert torch.equal(after[name], before[name]) == (name in frozen), name
    # tok_emb 65 x 16 (also the tied head), pos_emb 16 x 16, and block 0 are left out
    model = build_model(runs.load_configs(result.run_dir)[0])
    total = model.num_params()
    trainable = total - sum(after[k].numel() for k in frozen)
    assert f"trainable parameters: {trainable:,} of {total:,} " in capsys.readouterr().out


def test_the_trainable_count_is_printed_when_nothing_is_frozen(tiny_configs, capsys):
    result = train(*tiny_configs(max_iters=1))
    total = build_model(runs.load_configs(result.run_dir)[0]).num_params()
    assert f"trainable parameters: {total:,} of {total:,} (100.0%)" in capsys.readouterr().out


def test_a_lora_run_learns_and_leaves_the_source_weights_alone(
    source, tiny_configs, tmp_path, new_text
):
    result = train(
        *tiny_configs(
            run_dir=str(tmp_path / "lora"), init_from=str(source.run_dir), data=str(new_text),
            lora_rank=4, lora_alpha=16.0, lr=1e-2, batch_size=8, max_iters=30,
            lr_decay_iters=30, eval_interval=10, eval_iters=4,
        ),
        progress=False,
    )  # fmt: skip
    _, evals = train_rows(result.run_dir)
    assert evals[-1][1] < evals[0][1] - 0.05  # it learned the new text
    before, after = weights(source.run_dir, "best"), weights(result.run_dir)
    adapters = [k for k in after if k.endswith(("lora_A", "lora_B"))]
    assert len(adapters) == 2 * 4 * 2  # A and B, four Linears a block, two blocks
    for name, value in after.items():
        if name not in adapters:  # base weights live under `.base.` now
            assert torch.equal(value, before[name.replace(".base.", ".")]), name

    # load_model folds the adapters in: a plain model with the adapted model's logits
    adapted, tokenizer = runs.load_model(result.run_dir, keep_lora=True)
    plain, _ = runs.load_model(result.run_dir)
    assert lora_layers(adapted) and not lora_layers(plain)
    x = torch.tensor([tokenizer.encode("Speak, citizen")])
    with torch.no_grad():
        assert (adapted(x) - plain(x)).abs().max() < 1e-5
        assert (plain(x) - runs.load_model(source.run_dir)[0](x)).abs().max() > 1e-3


def test_a_lora_run_resumes_exactly(source, tiny_configs, tmp_path, new_text):
    def configs(name):
        return tiny_configs(
            run_dir=str(tmp_path / name), init_from=str(source.run_dir), data=str(new_text),
            lora_rank=2, lora_alpha=4.0, freeze="blocks.0.mlp", dropout=0.1, lr=1e-2,
        )  # fmt: skip

    train(*configs("full"), progress=False)

    def crash_after_iteration_6(row):
        if row["kind"] == "train" and row["iter"] == 6:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(*configs("crash"), progress=False, callback=crash_after_iteration_6)
    resume(tmp_path / "crash", progress=False)
    assert train_rows(tmp_path / "crash") == train_rows(tmp_path / "full")
    # blocks.0.mlp's adapters stayed at their start (B = 0), the others moved
    trained = weights(tmp_path / "full")
    assert not trained["blocks.0.mlp.fc.lora_B"].any()
    assert trained["blocks.0.attn.qkv.lora_B"].any()


def test_a_lora_run_killed_before_its_first_checkpoint_starts_from_the_source_again(
    source, tiny_configs, tmp_path, new_text
):
    model_config, train_config = tiny_configs(
        run_dir=str(tmp_path / "ft"), init_from=str(source.run_dir), data=str(new_text),
        lora_rank=2, max_iters=4,
    )  # fmt: skip
    full = train(model_config, train_config, progress=False)
    (full.run_dir / runs.CHECKPOINT).unlink()  # as if killed before iteration 0 was saved
    (full.run_dir / runs.BEST).unlink()
    assert resume(full.run_dir, progress=False).val_loss == full.val_loss


def test_a_lora_run_on_a_hugging_face_folder_exports_to_transformers_and_peft(
    tiny_configs, tmp_path
):
    """From a GPT-2 folder (written by glassbox export) through a LoRA run and back out:
    transformers' GPT-2 computes what the LoRA run's merged model computes, and peft's
    adapters on the base folder what the adapted model computes."""
    pretrained = pytest.importorskip("glassbox.pretrained")
    transformers = pytest.importorskip("transformers")
    gpt2_like = {"bias": True, "activation": "gelu_tanh"}
    base = train(*tiny_configs(run_dir=str(tmp_path / "base"), **gpt2_like), progress=False)
    pretrained.export_gpt2(base.run_dir, tmp_path / "hf")
    result = train(
        *tiny_configs(run_dir=str(tmp_path / "lora"), init_from=str(tmp_path / "hf"),
                      lora_rank=2, lr=1e-2),
        progress=False,
    )  # fmt: skip
    _, evals = train_rows(result.run_dir)  # the same data, and the same weights at first
    assert evals[0][1] == pytest.approx(base.best_val_loss, abs=1e-6)
    pretrained.export_gpt2(result.run_dir, tmp_path / "hf-lora")
    hf = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "hf-lora").eval()
    model, tokenizer = runs.load_model(result.run_dir)
    x = torch.tensor([tokenizer.encode("Speak, citizen")])
    with torch.no_grad():
        assert (hf(x).logits - model(x)).abs().max() < 1e-5
        assert (model(x) - runs.load_model(base.run_dir)[0](x)).abs().max() > 1e-3

    # the adapters alone, in peft's layout, on the base folder the run started from
    peft = pytest.importorskip("peft")
    assert export_peft(result.run_dir, tmp_path / "adapter") == [
        "adapter_config.json", "adapter_model.safetensors"
    ]  # fmt: skip
    base_hf = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "hf")
    adapted = peft.PeftModel.from_pretrained(base_hf, tmp_path / "adapter").eval()
    with torch.no_grad():
        assert (adapted(x).logits - model(x)).abs().max() < 1e-5


def test_a_hugging_face_folder_is_read_through_glassbox_pretrained(
    tiny_configs, tmp_path, monkeypatch
):
    """The folder branch of --init-from (glassbox.pretrained is stubbed here: only the
    routing is under test, not the conversion)."""
    model_config, _ = tiny_configs()
    tokenizer = CharTokenizer.train(TEXT)
    torch.manual_seed(5)
    gpt = GPT(override(model_config, {"vocab_size": tokenizer.vocab_size}))
    seen = []

    def from_pretrained(path):
        seen.append(path)
        return gpt, tokenizer

    monkeypatch.setitem(
        sys.modules, "glassbox.pretrained", types.SimpleNamespace(from_pretrained=from_pretrained)
    )
    folder = tmp_path / "gpt2"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "gpt2"}')
    result = train(
        *tiny_configs(run_dir=str(tmp_path / "ft"), init_from=str(folder), max_iters=1),
        progress=False,
    )
    assert seen == [str(folder)]
    model = build_model(runs.load_configs(result.run_dir)[0])
    load_model_state(result.run_dir / runs.CHECKPOINT, model)
    # one AdamW step from the given weights: close to them, and not a fresh init
    assert (model.tok_emb.weight - gpt.tok_emb.weight).abs().max() < 0.01


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--init-from", "{tmp}/nowhere"], r"--init-from \S*nowhere\b.* no folder"),
        (["--init-from", "{tmp}/plain"], "neither a glassbox run nor a Hugging Face"),
        (["--init-from", "{tmp}/other"], r"--init-from \S*other\b"),
        (["--init-from", "{source}", "--n-layer", "6"], "--n-layer 6 contradicts --init-from"),
        (["--init-from", "{source}", "--n-head", "8"], "--n-head 8 contradicts"),
        # typed at ModelConfig's default value, and still not the source's: refused too
        (["--init-from", "{source}", "--n-layer", "4"], "--n-layer 4 contradicts"),
        (
            ["--init-from", "{source}", "--tokenizer", "char", "--block-size", "64"],
            "--block-size 64",
        ),
        (["--init-from", "{source}", "--bias"], "--bias contradicts --init-from .*bias False"),
        (["--init-from", "{source}", "--pos-encoding", "rope"], "--pos-encoding rope contra"),
        (["--init-from", "{source}", "--tokenizer", "bpe"], "--tokenizer bpe contradicts"),
        (["--init-from", "{source}", "--task", "reverse"], "cannot be used with --task"),
        (["--init-from", "{source}", "--freeze", "blocks.2"], "block 2 is out of range"),
        (["--init-from", "{source}", "--freeze", "blocks.1-7.attn"], "block 7 is out of range"),
        (["--init-from", "{source}", "--freeze", "encoder"], "unknown part 'encoder'"),
        (["--init-from", "{source}", "--lora-rank", "-1"], "lora_rank and lora_alpha must be"),
        (["--init-from", "{source}", "--lora-rank", "2", "--freeze", "blocks"], "nothing would"),
        (["--freeze", "embeddings,blocks,ln_f"], "freezes every parameter: nothing would train"),
        (["--lora-rank", "4"], "--lora-rank trains adapters on a trained model"),
        (["--lora-alpha", "4"], "set lora_rank too"),
    ],
)
def test_bad_fine_tuning_input_is_one_line_and_makes_no_folder(
    source, tmp_path, text_file, capsys, flags, message
):
    (tmp_path / "plain").mkdir()
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.json").write_text('{"model_type": "bert"}')
    flags = [f.format(tmp=tmp_path, source=source.run_dir) for f in flags]
    run = tmp_path / "ft"
    capsys.readouterr()
    code = main(["train", "--data", str(text_file), "--run", str(run), "--no-progress", *flags])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("glassbox: error: "), err
    assert re.search(message, err), err
    assert not run.exists()


def test_a_presets_shape_is_not_taken_for_a_flag_that_contradicts(source, tmp_path, new_text):
    """char-tiny's shape (2 layers, 32 wide) is not the source's (16 wide), but only typed
    flags are checked: the run takes the source's shape and the preset's schedule."""
    run = tmp_path / "ft"
    argv = ["train", "--preset", "char-tiny", "--init-from", str(source.run_dir), "--data",
            str(new_text), "--run", str(run), "--max-iters", "1", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    model_config, train_config = runs.load_configs(run)
    assert (model_config.n_embd, model_config.block_size) == (16, 16)
    assert train_config.warmup_iters == 20  # from char-tiny


def test_the_command_line_fine_tunes_with_lora(source, tmp_path, new_text, capsys):
    run = tmp_path / "ft"
    flags = ["--init-from", str(source.run_dir), "--lora-rank", "2", "--max-iters", "2"]
    assert (
        main(["train", "--data", str(new_text), "--run", str(run), *flags, "--device", "cpu"]) == 0
    )
    # rank 2 on C = 16: 2 * (64 + 32 + 80 + 80) per block, in two blocks
    total = runs.load_model(source.run_dir)[0].num_params() + 1024
    assert f"trainable parameters: 1,024 of {total:,} (" in capsys.readouterr().out
    assert len(lora_layers(runs.load_model(run, keep_lora=True)[0])) == 8


def test_only_a_lora_run_has_adapters_to_export(source, tmp_path):
    with pytest.raises(GlassboxError, match="is not a LoRA run"):
        export_peft(source.run_dir, tmp_path / "adapter")
    assert not (tmp_path / "adapter").exists()
