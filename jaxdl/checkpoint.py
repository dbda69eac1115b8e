"""Checkpoints: one orbax ``CheckpointManager`` holding the TrainState and the data position.

Saves are asynchronous (arrays are copied off the device before ``save`` returns, then
written in the background) and atomic: orbax writes into a temporary directory and renames
it only once complete, so a run killed mid-save leaves the previous checkpoint as the latest
valid one. ``restore`` places arrays with the shardings of the abstract state it is given,
so a checkpoint can be restored onto another mesh.
"""

from __future__ import annotations

import pathlib
from typing import Any

import jax
import orbax.checkpoint as ocp


def abstract_like(tree: Any) -> Any:
    """``ShapeDtypeStruct`` s (with shardings) for every array in ``tree``."""
    return jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None)),
        tree,
    )


def abstract_with_shardings(abstract: Any, shardings: Any) -> Any:
    """ShapeDtypeStructs of ``abstract`` (e.g. ``jax.eval_shape(init, key)``) placed by the
    matching pytree ``shardings`` (e.g. ``jaxdl.parallel.sharded_init.state_shardings`` for
    any preset and mesh): the restore target for loading a checkpoint onto another mesh."""
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                        abstract, shardings)


class Checkpointer:
    """Save and restore ``(TrainState, data-iterator state)`` pairs by step.

    Args:
      directory: where checkpoints live (one sub-directory per step).
      max_to_keep: how many recent checkpoints to keep.
      async_save: write in a background thread.
    """

    def __init__(self, directory: str | pathlib.Path, *, max_to_keep: int = 2,
                 async_save: bool = True):
        self.directory = pathlib.Path(directory).absolute()
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep,
            enable_async_checkpointing=async_save,
            cleanup_tmp_directories=True,
            create=True,
        )
        self.manager = ocp.CheckpointManager(self.directory, options=options)

    def latest_step(self) -> int | None:
        """The newest complete checkpoint's step, or None."""
        return self.manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self.manager.all_steps())

    def save(self, step: int, state: Any, data_state: dict[str, Any] | None = None) -> bool:
        """Start saving ``state`` (any pytree of arrays) and the JSON-able ``data_state``."""
        args = {"state": ocp.args.StandardSave(state)}
        if data_state is not None:
            args["data"] = ocp.args.JsonSave(data_state)
        return self.manager.save(step, args=ocp.args.Composite(**args), force=True)

    def restore(self, step: int | None, target: Any) -> tuple[Any, dict[str, Any] | None]:
        """Restore step ``step`` (None: the latest) into the structure of ``target``.

        ``target`` is a pytree of arrays or ShapeDtypeStructs; its shardings decide where the
        restored arrays go. Returns ``(state, data_state or None)``.
        """
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        abstract = abstract_like(target)
        args = {"state": ocp.args.StandardRestore(abstract)}
        has_data = (self.directory / str(step) / "data").is_dir()
        if has_data:
            args["data"] = ocp.args.JsonRestore()
        try:
            restored = self.manager.restore(step, args=ocp.args.Composite(**args))
        except ValueError as error:
            raise ValueError(
                f"checkpoint {self.directory / str(step)} does not match the state built from "
                f"the current config (was the model or optimizer changed since it was "
                f"written? use a fresh workdir). Details: {error}"
            ) from error
        return restored["state"], (restored["data"] if has_data else None)

    def wait(self) -> None:
        """Block until background saves are committed."""
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
