"""Cluster schedulers: Slurm (sbatch + srun) and TorchX start one `ttabench run` per node."""
