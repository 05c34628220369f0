"""The throughput benchmark's ``baseline`` mode: what a typical PyTorch script does, written here.

A per-image Dataset whose __getitem__ pads, crops, flips and normalises one image in Python, a
DataLoader with worker processes (shuffle, drop_last), fp32 eager, NCHW; the same model, recipe,
epochs and initial weights as ttabench's path, so the two are compared on equal terms.
"""

from __future__ import annotations

import resource
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from benchmarks import rusage
from benchmarks.modes import BATCH, EVAL_BATCH
from ttabench.reference_impls import cifar10
from ttabench.reference_impls.recipe import CLOSED
from ttabench.reference_impls.resnet import resnet


class PerImageCifar10(Dataset):
    """CIFAR-10 the way torchvision's dataset + transforms serve it: one image per call,
    HWC uint8 storage, RandomCrop(32, padding=4), RandomHorizontalFlip, ToTensor, Normalize."""

    def __init__(self, images, labels, train: bool):
        self.data = np.ascontiguousarray(images.numpy().transpose(0, 2, 3, 1))  # N x 32 x 32 x 3
        self.targets = labels.tolist()
        self.train = train
        self.mean = torch.tensor(cifar10.MEAN).view(3, 1, 1)
        self.std = torch.tensor(cifar10.STD).view(3, 1, 1)

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, i):
        img = torch.from_numpy(self.data[i]).permute(2, 0, 1)  # CHW uint8
        if self.train:
            img = F.pad(img, (4, 4, 4, 4))
            dy, dx = torch.randint(0, 9, (2,)).tolist()
            img = img[:, dy : dy + 32, dx : dx + 32]
            if torch.rand(1).item() < 0.5:
                img = img.flip(-1)
        x = img.float().div_(255)
        return (x - self.mean) / self.std, self.targets[i]


def _load_data(args):
    return cifar10.synthetic() if args.synthetic else cifar10.load(args.data_dir)


def run_baseline(args, seed: int) -> dict:
    device = torch.device(args.device)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    data = _load_data(args)
    train_ds = PerImageCifar10(data.train_images, data.train_labels, train=True)
    test_ds = PerImageCifar10(data.test_images, data.test_labels, train=False)
    workers = args.num_workers
    loader = DataLoader(
        train_ds,
        batch_size=BATCH,
        shuffle=True,
        drop_last=True,
        num_workers=workers,
        generator=torch.Generator().manual_seed(seed),
        pin_memory=device.type == "cuda",
    )
    test_loader = DataLoader(test_ds, batch_size=EVAL_BATCH, num_workers=workers)
    torch.manual_seed(seed)  # the same initial weights as ttabench's build()
    model = resnet(20).to(device)
    opt = CLOSED.sgd(model.parameters())
    steps_per_epoch = len(loader)
    step, train_s, cpu_s = 0, 0.0, 0.0
    for _ in range(args.epochs):
        if step == args.max_steps:
            break
        model.train()
        t0, c0 = time.perf_counter(), rusage.cpu_s() + rusage.cpu_s(resource.RUSAGE_CHILDREN)
        for x, y in loader:  # worker start-up and shutdown are part of a conventional epoch
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            for group in opt.param_groups:
                group["lr"] = CLOSED.lr_at(step / steps_per_epoch, BATCH)
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            loss.item()
            step += 1
            if step == args.max_steps:
                break
        sync()
        train_s += time.perf_counter() - t0
        # the loader's workers were reaped at the end of the epoch: their CPU time is in CHILDREN
        cpu_s += rusage.cpu_s() + rusage.cpu_s(resource.RUSAGE_CHILDREN) - c0
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for x, y in test_loader:
            x, y = x.to(device), y.to(device)
            correct += int((model(x).argmax(1) == y).sum())
            total += len(y)
    return {
        "steps": step,
        "samples": step * BATCH,
        "train_s": train_s,
        "accuracy": correct / total,
        "cpu_s": cpu_s,
        "warmup_s": None,
        "workers_peak_rss_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    }
