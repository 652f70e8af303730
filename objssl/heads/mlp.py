"""MLP projector/predictor heads, on vectors (1-d) or on maps with 1x1 convolutions (2-d)."""

from __future__ import annotations

from torch import Tensor, nn

from objssl.registry import HEADS

__all__ = ["MLPHead", "MLPHead2d", "make_norm", "make_act"]

_ACTS = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU}


def make_act(name: str) -> nn.Module:
    try:
        return _ACTS[name](inplace=True) if name == "relu" else _ACTS[name]()
    except KeyError:
        raise ValueError(f"act={name!r}: choose one of {sorted(_ACTS)}") from None


def make_norm(name: str | None, dim: int, spatial: bool) -> nn.Module:
    """``bn`` (BatchNorm, converted to SyncBN by the trainer under DDP), ``ln``, ``gn`` or none."""
    if name in (None, "none", ""):
        return nn.Identity()
    if name == "bn":
        return nn.BatchNorm2d(dim) if spatial else nn.BatchNorm1d(dim)
    if name == "ln":
        return nn.GroupNorm(1, dim) if spatial else nn.LayerNorm(dim)
    if name == "gn":
        return nn.GroupNorm(32 if dim % 32 == 0 else 1, dim)
    raise ValueError(f"norm={name!r}: choose 'bn', 'ln', 'gn' or 'none'")


class _MLP(nn.Module):
    spatial = False

    def __init__(
        self,
        in_dim: int,
        hidden_dim: int = 4096,
        out_dim: int = 256,
        num_layers: int = 2,
        norm: str | None = "bn",
        act: str = "relu",
        bias_last: bool = True,
        norm_last: bool = False,
        init: str = "default",
    ) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        self.in_dim, self.out_dim = in_dim, out_dim
        dims = [in_dim] + [hidden_dim] * (num_layers - 1) + [out_dim]
        layers: list[nn.Module] = []
        for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:])):
            last = i == num_layers - 1
            # a bias before a BatchNorm is redundant but kept: the official heads keep it and it
            # makes transferred weights line up
            layers.append(self._linear(d_in, d_out, bias=bias_last if last else True))
            if not last:
                layers += [make_norm(norm, d_out, self.spatial), make_act(act)]
            elif norm_last:
                layers.append(make_norm(norm, d_out, self.spatial))
        self.layers = nn.Sequential(*layers)
        if init == "trunc_normal":  # DINO-style heads (SlotCon): N(0, 0.02) truncated, zero bias
            for m in self.layers:
                if isinstance(m, (nn.Linear, nn.Conv2d)):
                    nn.init.trunc_normal_(m.weight, std=0.02)
                    if m.bias is not None:
                        nn.init.zeros_(m.bias)
        elif init != "default":
            raise ValueError(f"init={init!r}: choose 'default' or 'trunc_normal'")

    def _linear(self, d_in: int, d_out: int, bias: bool) -> nn.Module:
        return nn.Linear(d_in, d_out, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


@HEADS.register("mlp")
class MLPHead(_MLP):
    """Linear → norm → act → ... → Linear. BYOL's projector/predictor by default (→4096→256).

    Shapes: ``x [B, in_dim]`` → ``[B, out_dim]``.
    """


@HEADS.register("mlp2d")
class MLPHead2d(_MLP):
    """The same MLP on every pixel with 1x1 convolutions (dense heads: SlotCon).

    Shapes: ``x [B, in_dim, H, W]`` → ``[B, out_dim, H, W]``.
    """

    spatial = True

    def _linear(self, d_in: int, d_out: int, bias: bool) -> nn.Module:
        return nn.Conv2d(d_in, d_out, kernel_size=1, bias=bias)
