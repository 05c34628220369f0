"""Closed-division workloads: CIFAR-10 data, ResNet v1/v2, the reference recipe."""
