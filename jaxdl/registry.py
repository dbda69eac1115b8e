"""Name -> factory registries, so configs can pick models, optimizers and data sets by name.

A config section such as ``config.model = ConfigDict({"name": "cnn", "features": (16, 32)})``
is turned into an object by :func:`Registry.build`, which checks every key against the
factory's signature *before* anything is built or compiled, and names the offending key.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Mapping
from typing import Any


class ConfigError(ValueError):
    """A config key or value is wrong. The message names the key and what was expected."""


def _suggest(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    return f" Did you mean {close[0]!r}?" if close else ""


class Registry:
    """A named collection of factories.

    >>> MODELS = Registry("model")
    >>> @MODELS.register("mlp")
    ... def make_mlp(*, hidden=(64,), rngs=None): ...
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._factories: dict[str, Callable[..., Any]] = {}

    def register(self, name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def decorator(factory: Callable[..., Any]) -> Callable[..., Any]:
            if name in self._factories:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._factories[name] = factory
            return factory

        return decorator

    def names(self) -> list[str]:
        return sorted(self._factories)

    def __contains__(self, name: str) -> bool:
        return name in self._factories

    def get(self, name: str, *, field: str | None = None) -> Callable[..., Any]:
        """The factory called ``name``; a ConfigError lists the known names otherwise."""
        if name not in self._factories:
            where = f"config.{field}={name!r}" if field else repr(name)
            raise ConfigError(
                f"unknown {self.kind} {where}; expected one of {self.names()}."
                + _suggest(name, self.names())
            )
        return self._factories[name]

    def check_kwargs(self, name: str, kwargs: Mapping[str, Any], *, field: str) -> None:
        """Raise ConfigError if ``kwargs`` holds a key the factory does not accept."""
        factory = self.get(name, field=f"{field}.name")
        params = inspect.signature(factory).parameters
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            return
        accepted = [n for n, p in params.items() if p.kind is not inspect.Parameter.VAR_POSITIONAL]
        for key in kwargs:
            if key not in accepted:
                raise ConfigError(
                    f"config.{field}.{key} is not an option of {self.kind} {name!r}; "
                    f"its options are {sorted(accepted)}." + _suggest(key, accepted)
                )

    def build(self, section: Mapping[str, Any], *, field: str, **extra: Any) -> Any:
        """Call the factory named by ``section['name']`` with the section's other keys.

        Args:
          section: a mapping (e.g. a ConfigDict) with a ``name`` key and keyword arguments.
          field: the section's dotted path in the config, used in error messages.
          **extra: arguments the caller supplies (e.g. ``num_classes`` inferred from data).
        """
        section = dict(section)
        if "name" not in section:
            raise ConfigError(f"config.{field}.name is missing; expected one of {self.names()}.")
        name = section.pop("name")
        kwargs = {k: _plain(v) for k, v in section.items()}
        self.check_kwargs(name, kwargs, field=field)
        return self.get(name, field=f"{field}.name")(**kwargs, **extra)


def _plain(value: Any) -> Any:
    """ConfigDict -> dict and list -> tuple, so factories receive plain, hashable values."""
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, list):
        return tuple(value)
    return value
