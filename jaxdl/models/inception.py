"""Inception modules (Szegedy et al., 2015, GoogLeNet): parallel 1x1, 3x3 and 5x5
convolutions and a pooled path, concatenated along channels, so each module sees several
scales at once; 1x1 "reduce" convolutions keep the 3x3 and 5x5 paths cheap.

``x: [batch, h, w, c] -> logits [batch, num_classes]``. Each module is given as
``(n1x1, n3x3_reduce, n3x3, n5x5_reduce, n5x5, pool_proj)`` (the columns of the paper's
Table 1); its output has ``n1x1 + n3x3 + n5x5 + pool_proj`` channels. ``"pool"`` between
modules is a 3x3/2 max-pool.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from jaxdl.models.conv import ConvNorm, global_avg_pool, max_pool
from jaxdl.models.dropout import Dropout
from jaxdl.models.registry import MODELS

# GoogLeNet's nine modules (Table 1), with the max-pools between groups.
GOOGLENET = ((64, 96, 128, 16, 32, 32), (128, 128, 192, 32, 96, 64), "pool",
             (192, 96, 208, 16, 48, 64), (160, 112, 224, 24, 64, 64),
             (128, 128, 256, 24, 64, 64), (112, 144, 288, 32, 64, 64),
             (256, 160, 320, 32, 128, 128), "pool", (256, 160, 320, 32, 128, 128),
             (384, 192, 384, 48, 128, 128))
SMALL = ((16, 16, 24, 4, 8, 8), "pool", (32, 24, 48, 8, 16, 16))


class InceptionModule(nnx.Module):
    """``x: [batch, h, w, in] -> [batch, h, w, n1x1 + n3x3 + n5x5 + pool_proj]``."""

    def __init__(self, in_features: int, spec: Sequence[int], *, norm: str, rngs: nnx.Rngs):
        n1, r3, n3, r5, n5, pp = spec
        kw = {"norm": norm, "rngs": rngs}
        self.branch1 = ConvNorm(in_features, n1, 1, **kw)
        self.branch3 = nnx.List([ConvNorm(in_features, r3, 1, **kw), ConvNorm(r3, n3, 3, **kw)])
        self.branch5 = nnx.List([ConvNorm(in_features, r5, 1, **kw), ConvNorm(r5, n5, 5, **kw)])
        self.pool_proj = ConvNorm(in_features, pp, 1, **kw)
        self.out_features = n1 + n3 + n5 + pp

    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        b3 = self.branch3[1](self.branch3[0](x, train=train), train=train)
        b5 = self.branch5[1](self.branch5[0](x, train=train), train=train)
        pooled = max_pool(x, 3, 1, "SAME")
        return jnp.concatenate([self.branch1(x, train=train), b3, b5,
                                self.pool_proj(pooled, train=train)], axis=-1)


class InceptionNet(nnx.Module):
    """A stem (1 or 3 convolutions), Inception modules, global pooling, dropout, head."""

    def __init__(self, in_channels: int, num_classes: int, *, modules: Sequence,
                 stem_features: Sequence[int], norm: str, dropout: float, rngs: nnx.Rngs):
        c, stem = in_channels, []
        for f in stem_features:
            stem.append(ConvNorm(c, f, 3, norm=norm, rngs=rngs))
            c = f
        self.stem = nnx.List(stem)
        layers = []
        for spec in modules:
            if spec == "pool":
                layers.append(None)
                continue
            module = InceptionModule(c, spec, norm=norm, rngs=rngs)
            layers.append(module)
            c = module.out_features
        self.layers = nnx.List([m for m in layers if m is not None])
        self.plan = tuple("pool" if m is None else "module" for m in layers)
        self.dropout = Dropout(dropout)
        self.head = nnx.Linear(c, num_classes, rngs=rngs)

    def __call__(self, x: jax.Array, *, train: bool = False, rngs=None) -> jax.Array:
        h = x
        for conv in self.stem:
            h = conv(h, train=train)
        modules = iter(self.layers)
        for kind in self.plan:
            h = max_pool(h, 3, 2, "SAME") if kind == "pool" else next(modules)(h, train=train)
        return self.head(self.dropout(global_avg_pool(h), train=train, rngs=rngs))


@MODELS.register("inception")
def make_inception(*, input_shape: tuple[int, ...], num_classes: int, rngs: nnx.Rngs,
                   modules: str | Sequence = "small", stem_features: Sequence[int] = (32,),
                   norm: str = "batch", dropout: float = 0.0) -> InceptionNet:
    """``modules``: ``"small"`` (2 modules), ``"googlenet"`` (the 9 of Table 1) or a list of
    6-tuples and ``"pool"`` markers."""
    if len(input_shape) != 3:
        raise ValueError(f"model 'inception' expects images [height, width, channels]; got "
                         f"input_shape {tuple(input_shape)}.")
    presets = {"small": SMALL, "googlenet": GOOGLENET}
    if isinstance(modules, str):
        if modules not in presets:
            raise ValueError(f"model.modules={modules!r}: expected one of {list(presets)} or "
                             "a list of 6-tuples and 'pool'.")
        modules = presets[modules]
    for spec in modules:
        if spec != "pool" and len(spec) != 6:
            raise ValueError(f"model.modules entry {spec!r}: expected 'pool' or (n1x1, "
                             "n3x3_reduce, n3x3, n5x5_reduce, n5x5, pool_proj).")
    return InceptionNet(input_shape[-1], num_classes, modules=tuple(modules),
                        stem_features=tuple(stem_features), norm=norm, dropout=dropout,
                        rngs=rngs)
