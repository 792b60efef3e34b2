import pytest
import torch

from glassbox.device import autocast, resolve_device
from glassbox.errors import GlassboxError


def test_auto_is_fp32_on_the_cpu_and_bfloat16_can_be_asked_for():
    a = torch.randn(4, 4)
    with autocast("cpu"):
        assert (a @ a).dtype == torch.float32
    with autocast("cpu", "bfloat16"):
        assert (a @ a).dtype == torch.bfloat16
    with pytest.raises(GlassboxError, match="not mps"):
        autocast("mps", "bfloat16")


def test_devices_that_are_not_there_are_errors():
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") in ("cpu", "cuda", "mps")
    with pytest.raises(GlassboxError, match="unknown device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(GlassboxError, match="CUDA is not available"):
            resolve_device("cuda:0")
