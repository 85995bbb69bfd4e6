"""The course's network and recipe in PyTorch, for the side-by-side training benchmark.

Only `kerasnets-bench --compare_torch` imports this module, and it imports only
where PyTorch is installed: PyTorch is not a dependency of kerasnets (install
the CPU build yourself: `.venv/bin/pip install torch==2.13.0`, or the `torch`
extra). The network mirrors
`kerasnets.models.convnets.seed_model` layer for layer (19,130 trainable parameters) and
the recipe is the course's: SGD lr 0.01, momentum 0.9, batch 32, no augmentation.
"""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def seed_network():
    """The course's PyTorch model (conv → ReLU → BatchNorm, as in the course)."""

    def block(cin, cout):
        return [nn.Conv2d(cin, cout, 3), nn.ReLU(), nn.BatchNorm2d(cout)]

    return nn.Sequential(
        *block(1, 16), *block(16, 16), nn.MaxPool2d(2), nn.Dropout(0.2),
        *block(16, 16), nn.Dropout(0.2),
        *block(16, 16), nn.Dropout(0.2),
        *block(16, 64), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.1),
        nn.Linear(64, 32), nn.ReLU(), nn.BatchNorm1d(32), nn.Dropout(0.1),
        nn.Linear(32, 10), nn.LogSoftmax(dim=1))


def trainable_params(model) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def images_per_second(images: np.ndarray, labels: np.ndarray, batch_size: int, steps: int,
                      warmup: int = 20, seed: int = 0) -> float:
    """Steady-state training throughput of the course's recipe, as the course ran it
    (tensors in memory, normalised, a shuffled permutation batched per step)."""

    torch.manual_seed(seed)
    x = (torch.from_numpy(images).float().div_(255.0).sub_(0.1307).div_(0.3081)).unsqueeze(1)
    y = torch.from_numpy(labels.astype(np.int64))
    model = seed_network().train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    order = torch.randperm(len(x))

    def step(i):
        idx = order[(i * batch_size) % (len(x) - batch_size):][:batch_size]
        optimizer.zero_grad(set_to_none=True)
        loss = F.nll_loss(model(x[idx]), y[idx])
        loss.backward()
        optimizer.step()
        return loss

    for i in range(warmup):
        step(i)
    start = time.perf_counter()
    for i in range(warmup, warmup + steps):
        loss = step(i)
    float(loss.detach())  # wait for the last step
    return steps * batch_size / (time.perf_counter() - start)


def seconds_to_accuracy(mnist, target: float, max_epochs: int = 19, seed: int = 0,
                        batch_size: int = 32) -> dict:
    """Trains the course's recipe epoch by epoch, testing after each, until the test
    accuracy first reaches `target` (or `max_epochs`, the course's 19). Returns the
    epoch, the seconds of training and test passes up to it, and each epoch's accuracy."""

    torch.manual_seed(seed)
    (x_train, y_train), (x_test, y_test) = mnist

    def tensors(images, labels):
        x = torch.from_numpy(images).float().div_(255.0).sub_(0.1307).div_(0.3081).unsqueeze(1)
        return x, torch.from_numpy(labels.astype(np.int64))

    x, y = tensors(x_train, y_train)
    xt, yt = tensors(x_test, y_test)
    model = seed_network()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    accuracies, elapsed = [], 0.0
    for epoch in range(1, max_epochs + 1):
        start = time.perf_counter()
        model.train()
        for idx in torch.randperm(len(x)).split(batch_size):
            optimizer.zero_grad(set_to_none=True)
            F.nll_loss(model(x[idx]), y[idx]).backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            correct = sum(int((model(xt[i:i + 1000]).argmax(1) == yt[i:i + 1000]).sum())
                          for i in range(0, len(xt), 1000))
        elapsed += time.perf_counter() - start
        accuracies.append(correct / len(xt))
        if accuracies[-1] >= target:
            return dict(epoch=epoch, seconds=elapsed, test_accuracy=accuracies)
    return dict(epoch=None, seconds=elapsed, test_accuracy=accuracies)
