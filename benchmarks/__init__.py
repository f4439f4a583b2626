"""Serving benchmarks: seldon-river against Seldon's stock wrapper, MLServer and in-process river.

``python -m benchmarks.run`` (or ``make bench``) runs them and writes ``benchmarks/results.json``.
"""
