"""vocabadapt's benchmarks, one module each, run from the repository root as `python -m benchmarks.NAME`.

benchmarks/harness.py holds what they share; benchmarks/README.md lists them and their results.
"""
