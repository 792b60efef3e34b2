import json

import pytest
import torch

from glassbox.data.tasks import (
    BOS,
    EOS,
    PAD,
    SPECIALS,
    TASKS,
    Seq2SeqTask,
    TaskError,
    TaskTokenizer,
)
from glassbox.errors import GlassboxError


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


# --- solve ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, source, target",
    [
        ("copy", "3141", "3141"),
        ("reverse", "3141", "1413"),
        ("sort", "3141", "1134"),
        ("addition", "57+68", "125"),
        ("addition", "0+0", "0"),
        ("addition", "99999999999999999999+1", "100000000000000000000"),  # past int64
    ],
)
def test_solve_gives_the_known_answer(name, source, target):
    assert Seq2SeqTask(name, min_len=1).solve(source) == target


def test_sort_follows_the_alphabet_order_not_unicode_order():
    assert Seq2SeqTask("sort", alphabet="cba", min_len=1).solve("abcab") == "cbbaa"


def test_solve_rejects_sources_the_task_cannot_have():
    with pytest.raises(TaskError, match="outside the alphabet 'ab': 'x'"):
        Seq2SeqTask("copy", alphabet="ab", min_len=1).solve("abx")
    with pytest.raises(TaskError, match="looks like '12\\+345'"):
        Seq2SeqTask("addition", min_len=1).solve("12-3")


# --- batches -------------------------------------------------------------------------


@pytest.mark.parametrize("name", TASKS)
def test_batch_layout_and_targets_are_the_solutions(name):
    task = Seq2SeqTask(name, min_len=2, max_len=6)
    src, tgt_in, tgt_out = task.batch(32, gen())
    assert src.dtype == tgt_in.dtype == tgt_out.dtype == torch.int64
    assert src.shape[0] == tgt_in.shape[0] == tgt_out.shape[0] == 32
    assert tgt_in.shape == tgt_out.shape
    assert src.shape[1] <= task.max_source_len and tgt_out.shape[1] <= task.max_target_len
    # padded to this batch's longest row, not to the maximum
    assert (src[:, -1] != PAD).any() and (tgt_out[:, -1] != PAD).any()
    assert (tgt_in[:, 0] == BOS).all()
    assert not (src == BOS).any() and not (src == EOS).any()
    tok = task.tokenizer
    for s, ti, to in zip(src, tgt_in, tgt_out, strict=True):
        n = int((to != PAD).sum())  # target length + EOS
        assert to[n - 1] == EOS and (to[n:] == PAD).all() and (ti[n:] == PAD).all()
        assert torch.equal(ti[1:n], to[: n - 1])  # tgt_in is tgt_out shifted right
        assert tok.decode(to) == task.solve(tok.decode(s))


def test_batch_pads_right_to_the_longest_row():
    task = Seq2SeqTask("copy", alphabet="ab", min_len=1, max_len=3)
    src, tgt_in, tgt_out = task.encode_pairs([("a", "a"), ("abb", "abb")])
    a, b = 3, 4
    assert src.tolist() == [[a, PAD, PAD], [a, b, b]]
    assert tgt_in.tolist() == [[BOS, a, PAD, PAD], [BOS, a, b, b]]
    assert tgt_out.tolist() == [[a, EOS, PAD, PAD], [a, b, b, EOS]]


@pytest.mark.parametrize("name", ["copy", "sort"])
def test_source_lengths_stay_in_range_and_cover_it(name):
    task = Seq2SeqTask(name, alphabet="abc", min_len=3, max_len=5)
    src, _, _ = task.batch(200, gen())
    lengths = (src != PAD).sum(1)
    assert set(lengths.tolist()) == {3, 4, 5}


def test_addition_operands_have_the_digit_counts_asked_and_no_leading_zeros():
    task = Seq2SeqTask("addition", min_len=1, max_len=3)
    src, _, _ = task.batch(300, gen())
    operands = [x for row in src for x in task.tokenizer.decode(row).split("+")]
    assert {len(x) for x in operands} == {1, 2, 3}
    assert all(x == "0" or not x.startswith("0") for x in operands)
    assert "0" in operands  # zero is a one-digit number too


def test_same_seed_gives_the_same_batch_and_a_different_seed_does_not():
    task = Seq2SeqTask("addition", min_len=2, max_len=4)
    first, again, other = task.batch(8, gen(1)), task.batch(8, gen(1)), task.batch(8, gen(2))
    assert all(torch.equal(x, y) for x, y in zip(first, again, strict=True))
    assert not torch.equal(first[0], other[0])


def test_a_saved_generator_state_replays_the_next_batch():
    task = Seq2SeqTask("reverse")
    g = gen(3)
    task.batch(4, g)
    state = g.get_state()
    expected = task.batch(4, g)
    g.set_state(state)
    assert all(torch.equal(x, y) for x, y in zip(task.batch(4, g), expected, strict=True))


def test_excluded_sources_never_appear():
    task = Seq2SeqTask("copy", alphabet="ab", min_len=1, max_len=3)
    every = {a + b + c for a in "ab" for b in ["", *"ab"] for c in ["", *"ab"] if b or not c}
    assert len(every) == task.num_sources == 14
    src, _, _ = task.batch(64, gen(), exclude=every - {"ba"})
    assert {task.tokenizer.decode(row) for row in src} == {"ba"}


def test_excluding_every_source_is_an_error_not_a_hang():
    task = Seq2SeqTask("copy", alphabet="a", min_len=1, max_len=2)
    with pytest.raises(TaskError, match="holds 2 of the 2 sources"):
        task.batch(4, gen(), exclude={"a", "aa"})


def test_held_out_is_deterministic_distinct_and_solved():
    task = Seq2SeqTask("sort", alphabet="abc", min_len=1, max_len=3)
    pairs = task.held_out(30, seed=7)
    assert pairs == task.held_out(30, seed=7)
    assert pairs != task.held_out(30, seed=8)
    assert len({s for s, _ in pairs}) == 30
    assert all(t == task.solve(s) for s, t in pairs)
    assert len(task.held_out(task.num_sources, seed=0)) == 39  # every source can be held out


def test_held_out_plus_exclude_keeps_evaluation_out_of_training():
    task = Seq2SeqTask("copy", alphabet="ab", min_len=1, max_len=3)
    held = {s for s, _ in task.held_out(10, seed=0)}
    src, _, _ = task.batch(64, gen(), exclude=held)
    assert not {task.tokenizer.decode(row) for row in src} & held


def test_sample_returns_a_solved_pair():
    task = Seq2SeqTask("reverse", min_len=4, max_len=4)
    source, target = task.sample(gen())
    assert len(source) == 4 and target == source[::-1]


# --- tokenizer -----------------------------------------------------------------------


def test_tokenizer_ids_are_specials_then_symbols():
    tok = TaskTokenizer("xyz")
    assert tok.vocab_size == 6
    assert [tok.token_str(i) for i in range(6)] == [*SPECIALS, "x", "y", "z"]
    assert tok.encode("zx") == [5, 3]


def test_tokenizer_round_trip_and_decode_stops_at_eos():
    tok = Seq2SeqTask("addition").tokenizer
    assert tok.symbols == "0123456789+"
    assert tok.decode(tok.encode("12+90")) == "12+90"
    assert tok.decode([BOS, 4, PAD, 5, EOS, 6]) == "12"
    assert tok.decode(torch.tensor([4, 5, EOS, PAD])) == "12"
    assert tok.decode_bytes([4, 5]) == b"12"


def test_tokenizer_to_dict_round_trips_through_json():
    tok = TaskTokenizer("ab+")
    data = json.loads(json.dumps(tok.to_dict()))
    assert data == {
        "format": "glassbox-task-tokenizer",
        "version": 1,
        "type": "task",
        "symbols": ["a", "b", "+"],
    }
    assert TaskTokenizer.from_dict(data).symbols == "ab+"


def test_task_to_dict_round_trips():
    task = Seq2SeqTask("sort", alphabet="xyz", min_len=2, max_len=9)
    again = Seq2SeqTask.from_dict(json.loads(json.dumps(task.to_dict())))
    assert again.to_dict() == task.to_dict()
    assert again.tokenizer.symbols == "xyz"


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: TaskTokenizer(""), "non-empty"),
        (lambda: TaskTokenizer("aba"), "repeat 'a'"),
        (lambda: TaskTokenizer("ab").encode("abc"), "outside the alphabet 'ab': 'c'"),
        (
            lambda: TaskTokenizer("ab").decode([0, 5, 9]),
            "outside the vocabulary of 5 tokens: \\[5, 9\\]",
        ),
        (lambda: TaskTokenizer("ab").token_str(5), "id 5 is outside"),
        (lambda: TaskTokenizer.from_dict({"format": "other"}), "not a glassbox task tokenizer"),
        (
            lambda: TaskTokenizer.from_dict({**TaskTokenizer("a").to_dict(), "version": 9}),
            "unsupported task tokenizer version 9",
        ),
        (
            lambda: TaskTokenizer.from_dict({**TaskTokenizer("a").to_dict(), "symbols": ["ab"]}),
            "single characters",
        ),
    ],
)
def test_bad_tokenizer_input_is_a_one_line_task_error(make, message):
    with pytest.raises(TaskError, match=message) as err:
        make()
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            dict(name="revers"),
            "unknown task 'revers'; did you mean 'reverse'\\? choices: copy, rev",
        ),
        (dict(name="zzz"), "unknown task 'zzz'; choices: copy, reverse, sort, addition"),
        (dict(name="reverse", alphabet=""), "task reverse needs a non-empty alphabet"),
        (dict(name="copy", alphabet="abca"), "alphabet of task copy repeats 'a'"),
        (dict(name="copy", min_len=0), "1 <= min_len <= max_len, got min_len=0"),
        (dict(name="copy", min_len=5, max_len=4), "got min_len=5, max_len=4"),
        (dict(name="copy", min_len=2.5), "min_len of task copy must be an integer"),
        (dict(name="addition", alphabet="abc"), "task addition needs the ten digits"),
    ],
)
def test_bad_task_settings_are_one_line_task_errors(kwargs, message):
    with pytest.raises(TaskError, match=message) as err:
        Seq2SeqTask(**kwargs)
    assert "\n" not in str(err.value)
    assert isinstance(err.value, GlassboxError) and isinstance(err.value, ValueError)


def test_bad_batch_and_held_out_requests_are_task_errors():
    task = Seq2SeqTask("copy", alphabet="ab", min_len=1, max_len=2)
    with pytest.raises(TaskError, match="batch_size must be at least 1"):
        task.batch(0, gen())
    with pytest.raises(TaskError, match="only 6 distinct sources; cannot hold out 7"):
        task.held_out(7, seed=0)
    with pytest.raises(TaskError, match="no \\(source, target\\) pairs"):
        task.encode_pairs([])
    with pytest.raises(TaskError, match="unknown \\['extra'\\], missing \\[\\]"):
        Seq2SeqTask.from_dict({**task.to_dict(), "extra": 1})


def test_the_task_tokenizer_refuses_ids_that_are_not_integers():
    from glassbox.data.tasks import TaskTokenizer
    from glassbox.tokenizers import TokenizerError

    tokenizer = TaskTokenizer("0123456789")
    with pytest.raises(TokenizerError, match="1.7"):
        tokenizer.decode([1.7])
    with pytest.raises(TokenizerError):
        tokenizer.decode(torch.tensor([3.0, 4.0]))
