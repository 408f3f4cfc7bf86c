"""A model and data of your own, named in a spec (`runs/custom.toml`): a small 1-D CNN on MNIST-1D.

Run it from the repository root (the current directory is importable, as ``python -m`` makes it)::

    nas search --spec runs/custom.toml --run runs/custom --budget 24
    nas export runs/custom --pick knee --format pt,onnx --trust

and load the exported model in a new process::

    import nas
    net = nas.load_run("runs/custom", trust=True).net          # the supernet, rebuilt through space.source
    model = nas.load_model("runs/custom/export/knee", net=net)   # your SmallCNN class, narrower
    model(torch.zeros(1, 1, 40)).shape                           # torch.Size([1, 10])

``--trust`` (``trust=True``) is needed because opening a run imports the code its spec names;
``NAS_TRUSTED_SOURCES=examples`` trusts this package for every run instead.
"""

from __future__ import annotations

import torch
from torch import nn

import nas


class SmallCNN(nn.Module):
    """Two conv blocks, global average pooling and a linear classifier, for (N, 1, 40) signals."""

    def __init__(self, width: int = 16, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv1d(1, width, 5, padding=2, bias=False)
        self.bn1 = nn.BatchNorm1d(width)
        self.conv2 = nn.Conv1d(width, 2 * width, 5, stride=2, padding=2, bias=False)
        self.bn2 = nn.BatchNorm1d(2 * width)
        self.pool = nn.AdaptiveAvgPool1d(1)
        self.fc = nn.Linear(2 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        return self.fc(self.pool(x).flatten(1))


def model(width: int = 16) -> tuple[nn.Module, torch.Tensor]:
    """The model to search (`space.source`), and an example input batch.

    Example:
        >>> net, x = model(width=8)
        >>> net(x).shape
        torch.Size([2, 10])
    """
    return SmallCNN(width), torch.zeros(2, 1, 40)


def data(samples: int = 1000, seed: int = 0) -> nas.data.Data:
    """The data to train and evaluate on (`data.source`): MNIST-1D signals of shape (1, 40).

    Example:
        >>> tuple(data(samples=200).train[0][0].shape)
        (1, 40)
    """
    return nas.data.mnist1d("signal", samples=samples, seed=seed)
