"""Arithmetic about models: parameters, FLOPs and memory, from a config alone."""

from glassbox.analysis.count import count_report, flops_per_token, kv_cache_bytes, param_table

__all__ = ["count_report", "flops_per_token", "kv_cache_bytes", "param_table"]
