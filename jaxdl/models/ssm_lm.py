"""A token language model of stacked SSM blocks, registered as ``ssm_lm``.

``tokens int [batch, seq] -> logits [batch, seq, vocab]``: embedding, ``num_layers``
:class:`jaxdl.models.ssm.SSMBlock` (diagonal S4D-style or selective Mamba-style), RMSNorm,
linear head. Training uses the parallel scan; :meth:`SSMLanguageModel.step_logits` and
:meth:`SSMLanguageModel.generate` run the same weights recurrently, one token at a time.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxdl.models.registry import MODELS
from jaxdl.models.ssm import MODES, SSMBlock


class SSMLanguageModel(nnx.Module):
    def __init__(self, vocab: int, *, rngs: nnx.Rngs, d_model: int = 128, num_layers: int = 2,
                 kind: str = "selective", state_dim: int = 16, expand: int = 2,
                 conv_kernel: int = 4, scan_mode: str = "parallel"):
        if scan_mode not in MODES:
            raise ValueError(f"model.scan_mode={scan_mode!r}: expected one of {MODES}.")
        if num_layers < 1:
            raise ValueError(f"model.num_layers={num_layers}: expected >= 1.")
        self.scan_mode = scan_mode
        self.embed = nnx.Embed(vocab, d_model, rngs=rngs)
        self.blocks = nnx.List([
            SSMBlock(d_model, rngs=rngs, kind=kind, state_dim=state_dim, expand=expand,
                     conv_kernel=conv_kernel) for _ in range(num_layers)])
        self.norm = nnx.RMSNorm(d_model, rngs=rngs)
        self.head = nnx.Linear(d_model, vocab, rngs=rngs)

    def __call__(self, tokens: jax.Array, *, train: bool = False,
                 rngs: nnx.Rngs | None = None) -> jax.Array:
        del train, rngs
        x = self.embed(tokens)
        for block in self.blocks:
            x = block(x, mode=self.scan_mode)
        return self.head(self.norm(x))

    def initial_carry(self, batch: int):
        return [block.initial_carry(batch) for block in self.blocks]

    def step(self, carries, token: jax.Array):
        """Recurrent mode: ``token int [batch]`` -> ``(carries, logits [batch, vocab])``."""
        x = self.embed(token)
        new = []
        for block, carry in zip(self.blocks, carries):
            carry, x = block.step(carry, x)
            new.append(carry)
        return new, self.head(self.norm(x))

    def step_logits(self, tokens: jax.Array) -> jax.Array:
        """The logits of ``tokens [batch, seq]`` computed recurrently (equal to ``self(tokens)``
        up to rounding); returns ``[batch, seq, vocab]``."""
        _, logits = jax.lax.scan(self.step, self.initial_carry(tokens.shape[0]), tokens.T)
        return jnp.swapaxes(logits, 0, 1)

    def generate(self, prompt: jax.Array, num_tokens: int, key: jax.Array, *,
                 temperature: float = 1.0) -> jax.Array:
        """Sample ``num_tokens`` after ``prompt int [batch, p]``; returns int32
        ``[batch, num_tokens]``. Constant memory per token: only the carries are kept."""
        carries, logits = jax.lax.scan(self.step, self.initial_carry(prompt.shape[0]), prompt.T)

        def body(state, step_key):
            carries, last = state
            token = jax.random.categorical(step_key, last / temperature).astype(jnp.int32)
            carries, logits = self.step(carries, token)
            return (carries, logits), token

        _, tokens = jax.lax.scan(body, (carries, logits[-1]), jax.random.split(key, num_tokens))
        return tokens.T


@MODELS.register("ssm_lm")
def make_ssm_lm(*, input_shape: tuple[int, ...], num_classes: int, rngs: nnx.Rngs,
                d_model: int = 128, num_layers: int = 2, kind: str = "selective",
                state_dim: int = 16, expand: int = 2, conv_kernel: int = 4,
                scan_mode: str = "parallel") -> SSMLanguageModel:
    """Options: ``kind`` ("diagonal" | "selective"), ``d_model``, ``num_layers``,
    ``state_dim`` (N), ``expand`` (d_inner = expand * d_model), ``conv_kernel``,
    ``scan_mode`` ("parallel" | "sequential")."""
    if len(input_shape) != 1:
        raise ValueError(f"model.name='ssm_lm' expects token sequences, input_shape (seq,); "
                         f"got {tuple(input_shape)}.")
    return SSMLanguageModel(num_classes, rngs=rngs, d_model=d_model, num_layers=num_layers,
                            kind=kind, state_dim=state_dim, expand=expand,
                            conv_kernel=conv_kernel, scan_mode=scan_mode)
