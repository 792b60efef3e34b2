"""Turning a trained model into text: sampling strategies and the decode loop."""

from glassbox.generate.sample import generate, generate_text, sample_next

__all__ = ["generate", "generate_text", "sample_next"]
