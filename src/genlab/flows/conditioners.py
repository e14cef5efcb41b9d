"""Networks that output a transform's parameters, (B, *shape, P); their last layer starts at zero
so that every coupling layer starts as the identity."""

from __future__ import annotations

from torch import Tensor, nn


def _zero(layer: nn.Module) -> nn.Module:
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


class MLPConditioner(nn.Module):
    """``depth`` ReLU layers of ``hidden`` units: (B, D) -> (B, D, P)."""

    def __init__(self, dim: int, hidden: int, depth: int, params: int) -> None:
        super().__init__()
        sizes = [dim] + [hidden] * depth
        layers: list[nn.Module] = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        self.net = nn.Sequential(*layers, _zero(nn.Linear(sizes[-1], dim * params)))
        self.dim, self.params = dim, params

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).view(len(x), self.dim, self.params)


class ConvConditioner(nn.Module):
    """Glow's coupling network, 3x3 conv - ReLU - 1x1 conv - ReLU - zero 3x3 conv:
    (B, C_in, H, W) -> (B, C_out, H, W, P)."""

    def __init__(self, in_channels: int, out_channels: int, hidden: int, params: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(in_channels, hidden, 3, padding=1), nn.ReLU(),
                                 nn.Conv2d(hidden, hidden, 1), nn.ReLU(),
                                 _zero(nn.Conv2d(hidden, out_channels * params, 3, padding=1)))
        self.out_channels, self.params = out_channels, params

    def forward(self, x: Tensor) -> Tensor:
        b, _, h, w = x.shape
        return self.net(x).view(b, self.out_channels, self.params, h, w).permute(0, 1, 3, 4, 2)
