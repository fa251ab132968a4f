"""xembed benchmark suite (run ``python -m benchmarks --help`` from the repository root)."""
