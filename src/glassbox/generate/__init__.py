"""Turning a trained model into text: sampling rules, the decode loop, text helpers."""

from glassbox.generate.decode import generate
from glassbox.generate.sampling import sample_next
from glassbox.generate.text import generate_batch, generate_text

__all__ = ["generate", "generate_batch", "generate_text", "sample_next"]
