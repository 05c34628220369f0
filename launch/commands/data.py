"""`ttabench data download | synthetic`: get CIFAR-10, or write the synthetic data set in its format."""

from __future__ import annotations

import re

from ttabench import UserError
from ttabench.launch.usage import add_command


def _cmd_download(args) -> int:
    # Imported here: the download code pulls in numpy and torch, which `ttabench` starts without.
    from ttabench.reference_impls import download

    if args.md5 is not None and not re.fullmatch(r"[0-9a-fA-F]{32}", args.md5):
        raise UserError(f"--md5 must be 32 hexadecimal digits, got {args.md5!r}")
    path = download.download(args.dir, url=args.url or download.URL, md5=args.md5 or download.MD5)
    print(f"CIFAR-10 ready: {path}")
    return 0


def _cmd_synthetic(args) -> int:
    # Imported here: the data set code needs torch, which `ttabench` starts without.
    from ttabench.reference_impls import cifar10

    data = cifar10.synthetic(train_size=args.train_size, test_size=args.test_size, seed=args.seed)
    cifar10.write(data, args.dir)
    print(f"synthetic data set ({args.train_size} train / {args.test_size} test) written to {args.dir}")
    return 0


def add_commands(sub) -> None:
    d = sub.add_parser("data", help="get or make data sets")
    dsub = d.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    dl = add_command(dsub, "download", _cmd_download, help="download and verify CIFAR-10 (python version)")
    dl.add_argument("--dir", default="data", help="where to put cifar-10-batches-py (default: data)")
    dl.add_argument("--url", help="a mirror of cifar-10-python.tar.gz (default: the official site)")
    dl.add_argument("--md5", help="the archive's md5 (default: the official archive's)")
    sy = add_command(
        dsub, "synthetic", _cmd_synthetic, help="write the synthetic data set in CIFAR-10's format"
    )
    sy.add_argument("--dir", required=True)
    sy.add_argument("--train-size", type=int, default=5000)
    sy.add_argument("--test-size", type=int, default=1000)
    sy.add_argument("--seed", type=int, default=0)
