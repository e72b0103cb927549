"""Handlers that ship with Lazarus: examples to copy and built-ins for demos and benchmarks."""
