"""minigrad's benchmark suite: the workloads W1-W5, the NumPy floor, the PyTorch baselines
and the report (python -m benchmarks.report)."""
