"""The benchmark's own code (imported by bench/run.py and tests/test_bench.py): statistics, console parsing,
the busybox peer image, the report (RESULTS.md + SVG chart)."""
