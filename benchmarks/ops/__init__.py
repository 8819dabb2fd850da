"""Benchmark op modules, one per kernel algorithm, loaded by `benchmarks/bench_kernels.py --op NAME`.

Each module defines NAME, DEFAULT_SHAPES, make_inputs, implementations, reference, min_bytes
and flops (the interface is documented at the top of bench_kernels.py). Optional:
NOT_COMPARABLE, a set of implementation names whose output is a different function (e.g. the
SDPA reference point), skipped by --check.
"""
