import os

import pytest
import torch
from hypothesis import HealthCheck, settings

from glassbox.config import from_preset

# Property tests draw the same examples on every run, so a fresh install passes (or fails)
# the same way each time; HYPOTHESIS_PROFILE=explore draws new ones, to hunt for bugs.
settings.register_profile(
    "deterministic",
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("explore", deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "deterministic"))

TEXT = (
    "First Citizen:\nBefore we proceed any further, hear me speak.\n\n"
    "All:\nSpeak, speak.\n\nFirst Citizen:\nYou are all resolved rather to die than to famish?\n"
) * 12


@pytest.fixture(autouse=True)
def _few_threads():
    torch.set_num_threads(1)  # tests are small; threads only add contention on CI


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


@pytest.fixture
def tiny_configs(tmp_path, text_file):
    """A model and a run small enough to train in well under a second."""

    def make(**changes):
        settings = dict(
            data=str(text_file),
            run_dir=str(tmp_path / "run"),
            n_layer=2,
            n_head=2,
            n_embd=16,
            block_size=16,
            batch_size=4,
            max_iters=12,
            warmup_iters=2,
            lr_decay_iters=12,
            eval_interval=4,
            eval_iters=2,
            device="cpu",
        )
        settings.update(changes)
        return from_preset("char-small", **settings)

    return make


@pytest.fixture
def text(tmp_path):
    """A short file of repeated English, as the path string the CLI takes (--data)."""
    path = tmp_path / "text.txt"
    path.write_text("the quick brown fox jumps over the lazy dog. " * 200, encoding="utf-8")
    return str(path)
