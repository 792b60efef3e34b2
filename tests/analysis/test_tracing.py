"""Causal tracing: restoring everything gives the clean probability and restoring nothing
the corrupted one; states nothing downstream reads change nothing; on a small GPT that
has memorised a facts world, the states at the subject carry the fact; and the CLI
traces a prompt, draws the heatmaps, and refuses bad input in one line."""

from __future__ import annotations

import json

import pytest
import torch

from glassbox.analysis.tracing import (
    average_trace,
    categories,
    noise_std,
    restored_probability,
    trace,
)
from glassbox.cli import main
from glassbox.config import ModelConfig
from glassbox.data.facts import FactsTask, recall
from glassbox.errors import GlassboxError
from glassbox.models import GPT, EncoderDecoder
from glassbox.train.objectives import ProblemLM, lm_loss


@pytest.fixture(scope="module")
def memorised():
    """A 3-layer GPT trained until it recalls every training statement of a world of 24
    people (about 10 s on one CPU thread; seeded, so the same model every time)."""
    torch.set_num_threads(1)
    task = FactsTask(24, seed=0)
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=task.tokenizer.vocab_size, block_size=8, n_layer=3,
                         n_head=4, n_embd=64)  # fmt: skip
    model = GPT(config)
    objective = ProblemLM(task, 64, [])
    generator = torch.Generator().manual_seed(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    for _ in range(700):
        x, y = objective.batch("train", generator)
        loss = lm_loss(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval(), task


def fact(task: FactsTask, subject: int, template: int) -> tuple[torch.Tensor, range, int]:
    ids = task.prompts(torch.tensor([[subject, template]]))[0]  # (6,)
    span = range(*task.subject_span(task.templates[template][1]))
    return ids, span, task.tokenizer.encode(task.answer(subject, template))[0]


def test_the_model_has_memorised_its_facts(memorised):
    model, task = memorised
    assert recall(model, task)["train_templates"] == 1.0


def test_restoring_everything_is_clean_and_nothing_is_corrupted(memorised):
    model, task = memorised
    ids, subject, answer = fact(task, 3, 0)
    result = trace(model, ids, subject, answer)
    with torch.no_grad():
        clean = model(ids[None])[0, -1].softmax(-1)[answer].item()
    assert result.clean == pytest.approx(clean, abs=1e-6) and result.clean > 0.9
    assert result.corrupted < result.clean - 0.3  # the noise hides who is asked about
    nothing = restored_probability(model, ids, subject, answer)
    assert nothing == pytest.approx(result.corrupted, abs=1e-5)
    T, L = len(ids), model.config.n_layer
    for name in ("hook_embed", "blocks.0.hook_resid_post"):
        everything = [(name, t) for t in range(T)]
        assert restored_probability(model, ids, subject, answer, everything) == pytest.approx(
            result.clean, abs=1e-5
        )
    grid = result.maps["resid"]  # (L, T)
    assert grid.shape == (L, T) and set(result.maps) == {"resid", "mlp", "attn"}
    # the last layer's last position is what the logits read; nothing reads its others
    assert grid[L - 1, T - 1].item() == pytest.approx(result.clean, abs=1e-5)
    torch.testing.assert_close(grid[L - 1, : T - 1], torch.full((T - 1,), result.corrupted))


def test_positions_before_the_subject_change_nothing(memorised):
    model, task = memorised
    ids, subject, answer = fact(task, 5, 1)  # "The city of X Y is": subject at 3-4
    result = trace(model, ids, subject, answer, samples=4)
    for grid in result.maps.values():
        torch.testing.assert_close(
            grid[:, : subject.start], torch.full_like(grid[:, :3], result.corrupted)
        )


def test_the_fact_is_read_at_the_subject(memorised):
    """Averaged over facts, restoring a layer-0 state at the last subject token brings the
    answer back more than restoring it at any later position but the last (which the
    logits read directly), for the residual stream, the MLP and the attention output;
    and the MLP there restores a good part of the gap (the paper's early site)."""
    model, task = memorised
    facts = [fact(task, s, j) for s in range(24) for j in (0, 4, 8)]  # subject first
    avg = average_trace(model, facts, samples=10)
    rows = avg["categories"]
    assert rows == ["first subject token", "last subject token", "first subsequent token",
                    "further tokens", "last token"]  # fmt: skip
    for kind, grid in avg["maps"].items():  # (L, rows)
        layer0 = dict(zip(rows, grid[0].tolist(), strict=True))
        others = [layer0["first subsequent token"], layer0["further tokens"]]
        assert layer0["last subject token"] > max(others) + 0.04, (kind, layer0)
    gap = avg["clean"] - avg["corrupted"]
    assert avg["maps"]["mlp"][0, 1] - avg["corrupted"] > 0.15 * gap


def test_categories_of_positions():
    assert categories(6, (0, 2)) == {
        "first subject token": [0],
        "last subject token": [1],
        "first subsequent token": [2],
        "further tokens": [3, 4],
        "last token": [5],
    }
    assert categories(5, (1, 4))["middle subject tokens"] == [2]
    one_at_the_end = categories(3, (2, 3))
    assert one_at_the_end == {"first subject token": [2], "last subject token": [2],
                              "last token": [2]}  # fmt: skip


def test_noise_is_three_embedding_stds():
    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=11, block_size=8, n_layer=1, n_embd=16, n_head=2))
    assert noise_std(model) == pytest.approx(3 * model.tok_emb.weight.std().item())


def test_bad_arguments_fail_in_one_line():
    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=11, block_size=8, n_layer=1, n_embd=16, n_head=2))
    ids = torch.arange(5)
    with pytest.raises(GlassboxError, match="within the prompt"):
        trace(model, ids, [7], 1)
    with pytest.raises(GlassboxError, match="within the prompt"):
        trace(model, ids, [], 1)
    with pytest.raises(GlassboxError, match="consecutive"):
        trace(model, ids, [0, 2], 1)
    with pytest.raises(GlassboxError, match="outside the vocabulary"):
        trace(model, ids, [0], 11)
    with pytest.raises(GlassboxError, match="kinds"):
        trace(model, ids, [0], 1, kinds=["mlps"])
    with pytest.raises(GlassboxError, match="window"):
        trace(model, ids, [0], 1, window=0)
    with pytest.raises(GlassboxError, match="one prompt at a time"):
        trace(model, torch.zeros(2, 5, dtype=torch.long), [0], 1)
    with pytest.raises(GlassboxError, match="no hook point"):
        restored_probability(model, ids, [0], 1, [("blocks.0.hook_mlp", 1)])
    seq2seq = EncoderDecoder(ModelConfig(arch="encoder-decoder", vocab_size=11, n_layer=1,
                                         n_embd=16, n_head=2))  # fmt: skip
    with pytest.raises(GlassboxError, match="GPT or an Encoder"):
        trace(seq2seq, ids, [0], 1)


def test_window_and_attention_only():
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=11, block_size=8, n_layer=3, n_embd=16, n_head=2)
    model = GPT(config).eval()
    ids = torch.arange(1, 6)
    wide = trace(model, ids, [1, 2], 4, window=3, samples=2)
    assert wide.maps["mlp"].shape == (3, 5)
    attn_only = GPT(ModelConfig(**{**vars(config), "attn_only": True})).eval()
    assert set(trace(attn_only, ids, [1], 4, samples=2).maps) == {"resid", "attn"}


# ---- the command line ------------------------------------------------------------------


@pytest.fixture(scope="module")
def facts_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("facts") / "run"
    args = ["train", "--task", "facts", "--task-max-len", "4", "--n-layer", "2", "--n-embd",
            "32", "--n-head", "2", "--batch-size", "32", "--max-iters", "150",
            "--lr-decay-iters", "150", "--warmup-iters", "10", "--lr", "3e-3",
            "--eval-interval", "150", "--eval-iters", "1", "--device", "cpu",
            "--no-progress", "--run", str(run)]  # fmt: skip
    assert main(args) == 0
    return run


def test_cli_traces_a_prompt_of_a_facts_run(facts_run, tmp_path, capsys):
    task = FactsTask(4, seed=1337)  # the preset's seed names the world
    prompt = f"The city of {task.subjects[1]} is"
    capsys.readouterr()
    assert main(["inspect", str(facts_run), "--trace", prompt, "--png", str(tmp_path),
                 "--json"]) == 0  # fmt: skip
    report = json.loads(capsys.readouterr().out)["trace"]
    assert report["answer"] == task.solve(prompt) and report["subject"] == [3, 5]
    assert len(report["maps"]["mlp"]) == 2 and len(report["maps"]["mlp"][0]) == 6
    assert (tmp_path / "trace.png").stat().st_size > 0
    assert main(["inspect", str(facts_run), "--trace", prompt, "--answer", "Rome"]) == 0
    out = capsys.readouterr().out
    assert "-> 'Rome'" in out and "p(answer): clean" in out and "MLP output" in out
    assert main(["inspect", str(facts_run), "--trace-facts", "3", "--json"]) == 0
    averaged = json.loads(capsys.readouterr().out)["trace_facts"]
    assert averaged["facts"] <= 3 and "last subject token" in averaged["categories"]
    assert main(["eval", "--run", str(facts_run)]) == 0
    assert "through the held-out ones" in capsys.readouterr().out


@pytest.fixture(scope="module")
def char_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("char")
    text = folder / "corpus.txt"
    text.write_text("First Citizen: speak, speak. Paris is in France. " * 40, encoding="utf-8")
    run = folder / "run"
    args = ["train", "--data", str(text), "--run", str(run), "--n-layer", "1", "--n-head",
            "2", "--n-embd", "16", "--block-size", "32", "--batch-size", "4", "--max-iters",
            "4", "--warmup-iters", "1", "--lr-decay-iters", "4", "--eval-interval", "4",
            "--eval-iters", "1", "--device", "cpu", "--no-progress"]  # fmt: skip
    assert main(args) == 0
    return run


def test_cli_traces_any_run_with_a_subject(char_run, capsys):
    capsys.readouterr()
    assert main(["inspect", str(char_run), "--trace", "Paris is in", "--subject", "Paris",
                 "--answer", " ", "--json"]) == 0  # fmt: skip
    report = json.loads(capsys.readouterr().out)["trace"]
    assert report["subject"] == [0, 5] and report["answer"] == " "


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--trace", "The city of Arvel is", "--answer", "Paris"], "names no subject"),
        (["--trace", "{prompt}", "--answer", "Paris Rome"], "one token"),
        (["--trace", "{prompt}", "--answer", "New"], "outside this task's vocabulary"),
        (["--answer", "Paris"], "go with --trace"),
        (["--trace", "{prompt}", "--subject", "Tokyo"], "does not occur"),
        (["--trace-facts", "-1"], "number of facts"),
    ],
)
def test_cli_bad_trace_input_on_a_facts_run(facts_run, capsys, args, message):
    prompt = f"The city of {FactsTask(4, seed=1337).subjects[0]} is"
    args = [a.replace("{prompt}", prompt) for a in args]
    capsys.readouterr()
    assert main(["inspect", str(facts_run), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("glassbox: error: ") and message in err and err.count("\n") == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--trace", "Paris is in"], "--trace needs --subject"),
        (["--trace", "Paris is in", "--subject", "London"], "does not occur"),
        (["--trace", "Paris is in", "--subject", "Paris", "--answer", "in"], "one token"),
        (["--trace-facts", "5"], "facts run"),
    ],
)
def test_cli_bad_trace_input_on_a_corpus_run(char_run, capsys, args, message):
    capsys.readouterr()
    assert main(["inspect", str(char_run), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("glassbox: error: ") and message in err and err.count("\n") == 1


def test_heads_are_also_scored_on_the_runs_own_text_and_spectra_drawn(
    char_run, facts_run, tmp_path, capsys
):
    """Not tracing, but the same runs: --heads adds detector scores on the run's own val
    text (none for a task run), and --circuits --png needs no --prompt."""
    capsys.readouterr()
    assert main(["inspect", str(char_run), "--heads", "--json"]) == 0
    text = json.loads(capsys.readouterr().out)["heads"]["text"]
    assert text["length"] == 32 and len(text["scores"]["previous_token"]) == 1
    assert main(["inspect", str(char_run), "--heads"]) == 0
    assert "on the run's own text" in capsys.readouterr().out
    assert main(["inspect", str(facts_run), "--heads", "--json"]) == 0
    assert "text" not in json.loads(capsys.readouterr().out)["heads"]
    assert main(["inspect", str(char_run), "--circuits", "--png", str(tmp_path)]) == 0
    assert "W_OV rank per head" in capsys.readouterr().out
    assert (tmp_path / "circuit_spectra.png").stat().st_size > 0
    assert main(["inspect", str(char_run), "--png", str(tmp_path)]) == 2  # needs a --prompt
