"""The base of every model config: a frozen dataclass whose fields carry their bounds, checked on construction.

A model's config (``models.dcgan.DCGANConfig``, the search's ``models.latent_search.LatentSearchConfig``, ...) is
declared once, beside the code that uses it, as a dataclass of these. The pipeline validates params.yaml against the
very same classes: pydantic reads stdlib dataclasses (types, unknown keys refused, ``__post_init__`` checks run), so
an error names the dotted key. ``models/`` itself needs no pydantic, so it runs where only torch and numpy are.

    @dataclass(frozen=True)
    class TrainingConfig(Settings):
        epochs: int = setting(20, ge=1, le=10_000)   # the bound is declared here and nowhere else
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from functools import cache
from typing import Any, TypeVar

from .errors import GadflowError

S = TypeVar("S", bound="Settings")
_BOUNDS = {"ge": (lambda v, b: v >= b, "≥"), "gt": (lambda v, b: v > b, ">"), "le": (lambda v, b: v <= b, "≤"), "lt": (lambda v, b: v < b, "<")}


class SettingsError(GadflowError, ValueError):
    """A config value out of its bounds or against a rule; the message starts with the field's name.

    A ValueError too, so that pydantic reports it at the config's dotted key when params.yaml is validated."""


def setting(default: Any, **bounds: float) -> Any:
    """A dataclass field with a default and numeric bounds (ge, gt, le, lt), checked by ``Settings``."""
    unknown = set(bounds) - set(_BOUNDS)
    if unknown:
        raise TypeError(f"unknown bounds {sorted(unknown)}")
    return dataclasses.field(default=default, metadata={"bounds": bounds})


def nested(factory: type) -> Any:
    """A dataclass field holding a nested config, default-constructed."""
    return dataclasses.field(default_factory=factory)


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _nested_class(hint: Any) -> type | None:
    """The Settings class a field holds (also as ``X | None``), else None."""
    options = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    return next((o for o in options if isinstance(o, type) and issubclass(o, Settings)), None)


class Settings:
    """Mixin for frozen config dataclasses: bounds checked, lists turned into tuples, built from and dumped to dicts."""

    __pydantic_config__ = {"extra": "forbid"}  # read by pydantic when params.yaml is validated against a config class

    def __post_init__(self) -> None:
        hints = _hints(type(self))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, list) and typing.get_origin(hints[f.name]) is tuple:  # a JSON or YAML round trip
                object.__setattr__(self, f.name, value := tuple(value))
            if typing.get_origin(hints[f.name]) is typing.Literal and value not in typing.get_args(hints[f.name]):
                raise SettingsError(f"{f.name}: one of {', '.join(map(repr, typing.get_args(hints[f.name])))} (got {value!r})")
            for name, bound in f.metadata.get("bounds", {}).items():
                holds, sign = _BOUNDS[name]
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not holds(value, bound):
                    raise SettingsError(f"{f.name}: must be {sign} {bound:g} (got {value!r})")
        self.check()

    def check(self) -> None:
        """Rules across fields; raise ``SettingsError`` naming the field. Subclasses override."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls: type[S], data: dict[str, Any]) -> S:
        """Rebuild from ``to_dict`` output (nested configs too); an unknown key is a SettingsError."""
        if not isinstance(data, dict):
            raise SettingsError(f"{cls.__name__}: expected a mapping, got {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise SettingsError(f"{unknown[0]}: not a setting of {cls.__name__} (it has {', '.join(sorted(names))})")
        hints = _hints(cls)
        values = {}
        for key, value in data.items():
            inner = _nested_class(hints[key])
            values[key] = inner.from_dict(value) if inner is not None and isinstance(value, dict) else value
        return cls(**values)

    def replace(self: S, **changes: Any) -> S:
        return dataclasses.replace(self, **changes)
