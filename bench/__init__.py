"""Benchmarks, side by side against the naive way; results in BENCHMARKS.md.

    make bench                  quick mode: CI-sized, a few minutes on a 2-core machine
    make bench-full             the issue's sizes (BENCH_MODE=full make bench does the same)
    python -m bench.run --mode quick|full [--only memory,warehouse,rows,listing]

Every benchmark prints one JSON line per result on stdout (logs go to stderr). Benchmarks are not
tests: they assert nothing about time; tests/ asserts behaviour.
"""
