"""Looking at models: counting (parameters, FLOPs, memory, from a config alone) and
interpretability (what the activations of a trained model do)."""

from glassbox.analysis.attention_page import attention_html, write_attention_html
from glassbox.analysis.count import count_report, flops_per_token, kv_cache_bytes, param_table

__all__ = [
    "attention_html",
    "count_report",
    "flops_per_token",
    "kv_cache_bytes",
    "param_table",
    "write_attention_html",
]
