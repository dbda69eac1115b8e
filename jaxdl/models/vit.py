"""Vision Transformer (Dosovitskiy et al., 2021), registered as ``vit``.

``x: [batch, height, width, channels] -> logits [batch, num_classes]``: the image is cut
into non-overlapping ``patch_size x patch_size`` patches, each flattened and linearly
embedded; a learned class token is prepended, learned positions added, a bidirectional
pre-norm encoder runs over the ``1 + patches`` tokens, and the head reads the class token
(``pool="cls"``) or the mean of the patch tokens (``pool="mean"``).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import nnx

from jaxdl.models.positional import LearnedPositions
from jaxdl.models.registry import MODELS
from jaxdl.models.transformer import (
    LayerStack,
    TransformerBlock,
    check_choice,
    dropout,
    make_norm,
)
from jaxdl.models.transformer_models import DTYPES, _dropout_keys, _head


def patchify(x: jax.Array, patch_size: int) -> jax.Array:
    """``[b, H, W, C] -> [b, (H/p) * (W/p), p * p * C]``, patches in row-major order."""
    b, height, width, channels = x.shape
    p = patch_size
    x = x.reshape(b, height // p, p, width // p, p, channels)
    return x.transpose(0, 1, 3, 2, 4, 5).reshape(b, (height // p) * (width // p), p * p * channels)


class ViT(nnx.Module):
    def __init__(self, input_shape: tuple[int, int, int], num_classes: int, *,
                 patch_size: int = 7, d_model: int = 64, num_layers: int = 4,
                 num_heads: int = 4, mlp_ratio: int = 2, pool: str = "cls",
                 norm: str = "layernorm", attention: str = "naive", dropout: float = 0.0,
                 scan_layers: bool = False, remat: str = "none", dtype: str = "float32",
                 rngs: nnx.Rngs):
        if len(input_shape) != 3:
            raise ValueError(f"model 'vit' expects images [height, width, channels]; got "
                             f"input_shape {tuple(input_shape)}.")
        height, width, channels = input_shape
        if patch_size < 1 or height % patch_size or width % patch_size:
            raise ValueError(f"model.patch_size={patch_size}: expected a divisor of the image "
                             f"height {height} and width {width}.")
        check_choice(pool, ("cls", "mean"), "model.pool")
        check_choice(dtype, DTYPES, "model.dtype")
        self.patch_size, self.pool, self.dropout_rate = patch_size, pool, dropout
        num_patches = (height // patch_size) * (width // patch_size)
        self.patch_embedding = nnx.Linear(patch_size * patch_size * channels, d_model, rngs=rngs)
        self.cls_token = nnx.Param(jnp.zeros((1, 1, d_model)))
        self.positions = LearnedPositions(num_patches + 1, d_model, rngs=rngs)
        block = functools.partial(TransformerBlock, d_model, num_heads, mlp_ratio=mlp_ratio,
                                  norm=norm, attention=attention, dropout_rate=dropout,
                                  compute_dtype=DTYPES[dtype])
        self.layers = LayerStack(block, num_layers, scan_layers=scan_layers, remat=remat,
                                 rngs=rngs)
        self.final_norm = make_norm(norm, d_model, rngs)
        self.head = _head(d_model, num_classes, dtype, rngs)

    def tokens(self, x: jax.Array) -> jax.Array:
        """Class token + patch embeddings + positions: ``[b, 1 + patches, d_model]``."""
        h = self.patch_embedding(patchify(x, self.patch_size))
        cls = jnp.broadcast_to(self.cls_token[...], (h.shape[0], 1, h.shape[-1]))
        h = jnp.concatenate([cls, h], axis=1)
        return h + self.positions(jnp.arange(h.shape[1]))

    def __call__(self, x: jax.Array, *, train: bool = False, rngs: nnx.Rngs | None = None):
        keys = _dropout_keys(rngs, train, self.dropout_rate, 2)
        h = dropout(self.tokens(x), self.dropout_rate, keys[0])
        h = self.final_norm(self.layers(h, dropout_key=keys[1]))
        pooled = h[:, 0] if self.pool == "cls" else h[:, 1:].mean(1)
        return self.head(pooled).astype(jnp.float32)

    def attention_weights(self, x: jax.Array) -> jax.Array:
        """``[layers, batch, heads, 1 + patches, 1 + patches]`` (token 0 is the class token)."""
        return self.layers(self.tokens(x), return_weights=True)[1]


@MODELS.register("vit")
def make_vit(*, input_shape, num_classes: int, rngs: nnx.Rngs, patch_size: int = 7,
             d_model: int = 64, num_layers: int = 4, num_heads: int = 4, mlp_ratio: int = 2,
             pool: str = "cls", norm: str = "layernorm", attention: str = "naive",
             dropout: float = 0.0, scan_layers: bool = False, remat: str = "none",
             dtype: str = "float32") -> ViT:
    return ViT(tuple(input_shape), num_classes, patch_size=patch_size, d_model=d_model,
               num_layers=num_layers, num_heads=num_heads, mlp_ratio=mlp_ratio, pool=pool,
               norm=norm, attention=attention, dropout=dropout, scan_layers=scan_layers,
               remat=remat, dtype=dtype, rngs=rngs)
