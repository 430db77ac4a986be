"""What the loaded plugins registered, and which plugins failed to load."""

from __future__ import annotations

from typing import Generic, TypeVar

import attrs

from .embedders import EmbedderSpec
from .errors import UserError
from .stages import Stage

T = TypeVar("T")


@attrs.frozen(kw_only=True)
class Provider:
    """The plugin (and the distribution it came from) behind a stage or embedder."""

    plugin: str
    distribution: str | None = None
    version: str | None = None

    def __str__(self) -> str:
        if self.distribution:
            return f"{self.plugin} ({self.distribution} {self.version or ''})".replace(" )", ")")
        return self.plugin


@attrs.frozen(kw_only=True)
class Registered(Generic[T]):
    item: T
    provider: Provider


@attrs.frozen(kw_only=True)
class PluginFailure:
    """A plugin that could not be loaded or registered."""

    name: str
    group: str
    distribution: str | None
    error: str


@attrs.define
class Registry:
    stages: dict[str, Registered[Stage]] = attrs.Factory(dict)
    embedders: dict[str, Registered[EmbedderSpec]] = attrs.Factory(dict)
    failures: list[PluginFailure] = attrs.Factory(list)

    def add_stage(self, stage: Stage, provider: Provider) -> None:
        _add(self.stages, "stage", stage.name, Registered(item=stage, provider=provider))

    def add_embedder(self, spec: EmbedderSpec, provider: Provider) -> None:
        _add(self.embedders, "embedder", spec.name, Registered(item=spec, provider=provider))

    def stage(self, name: str) -> Stage:
        return _get(self.stages, "stage", name).item

    def embedder(self, name: str) -> EmbedderSpec:
        return _get(self.embedders, "embedder", name).item


def _add(table: dict, kind: str, name: str, entry: Registered) -> None:
    if name in table:
        raise ValueError(
            f"{kind} {name!r} is registered twice: by {table[name].provider} and by {entry.provider}"
        )
    table[name] = entry


def _get(table: dict, kind: str, name: str) -> Registered:
    try:
        return table[name]
    except KeyError:
        known = ", ".join(sorted(table)) or "none"
        raise UserError(f"unknown {kind} {name!r} (installed: {known}; see 'morphseq-stages list')") from None
