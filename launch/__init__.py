"""CLI, launchers (torchrun / Horovod / in-process), the worker and its timed loop."""
