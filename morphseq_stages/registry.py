"""What the loaded plugins registered, and which plugins failed to load."""

from __future__ import annotations

import contextlib
from typing import Any, Generic, TypeVar

import attrs

from .embedders import Embedder, EmbedderRequest, EmbedderSpec, ModelInfo, check_embedder
from .errors import PluginError, UserError
from .files import check_safe_id
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

    @property
    def label(self) -> str:
        """``plugin NAME, distribution DIST VERSION`` for messages."""
        if not self.distribution:
            return f"plugin {self.plugin}, not from a distribution"
        return f"plugin {self.plugin}, distribution {self.distribution} {self.version or ''}".rstrip()


@attrs.frozen(kw_only=True)
class Registered(Generic[T]):
    """A registered item with the plugin (and distribution) that provided it."""

    item: T
    provider: Provider


@attrs.frozen(kw_only=True)
class PluginFailure:
    """A plugin that could not be loaded, validated or registered; ``group`` is the
    entry-point group or the hook it failed in."""

    name: str
    group: str
    distribution: str | None
    error: str


@attrs.define
class Registry:
    """Stages and embedders by name, with the plugin behind each, and the plugins that failed."""

    stages: dict[str, Registered[Stage]] = attrs.Factory(dict)
    embedders: dict[str, Registered[EmbedderSpec]] = attrs.Factory(dict)
    failures: list[PluginFailure] = attrs.Factory(list)

    def add_stage(self, stage: Stage, provider: Provider) -> None:
        """Register ``stage``; a name already taken raises ValueError naming both providers."""
        _add(self.stages, "stage", stage.name, Registered(item=stage, provider=provider))

    def add_embedder(self, spec: EmbedderSpec, provider: Provider) -> None:
        """Register ``spec``; a name already taken raises ValueError naming both providers."""
        _add(self.embedders, "embedder", spec.name, Registered(item=spec, provider=provider))

    def stage(self, name: str) -> Stage:
        """The stage called ``name``; an unknown name is a :class:`UserError` naming the known ones."""
        return _get(self.stages, "stage", name).item

    def embedder(self, name: str) -> EmbedderSpec:
        """The embedder called ``name``; an unknown name is a :class:`UserError` naming the known ones."""
        return _get(self.embedders, "embedder", name).item

    def embedder_origin(self, name: str) -> str:
        """``embedder NAME (plugin ..., distribution ...)``, for messages about a plugin's mistake."""
        return f"embedder {name!r} ({_get(self.embedders, 'embedder', name).provider.label})"

    def describe_model(self, name: str, request: EmbedderRequest) -> ModelInfo:
        """The embedder's ``describe``, guarded: a plugin's own mistake names the plugin.

        An embedder without ``describe`` is loaded to learn its fingerprint."""
        if self.embedder(name).describe is None:
            loaded = self.load_embedder(name, attrs.evolve(request, device="cpu"))
            return ModelInfo(name=name, fingerprint=loaded.fingerprint, location=type(loaded).__module__,
                             mu_columns=loaded.mu_columns, sigma_columns=loaded.sigma_columns)
        info = self._call(name, "describe", request)
        if not isinstance(info, ModelInfo):
            raise PluginError(f"{self.embedder_origin(name)}: describe returned {type(info).__name__}, "
                              "not a ModelInfo(name=..., fingerprint=...)")
        try:
            check_safe_id(info.name, "model name")
        except UserError as exc:
            raise PluginError(f"{self.embedder_origin(name)}: describe gave an {exc}") from None
        return info

    def load_embedder(self, name: str, request: EmbedderRequest, expected: ModelInfo | None = None) -> Embedder:
        """The embedder's ``load``, guarded, with its declared sizes, columns and fingerprint
        checked (against ``expected``, the model ``describe`` gave, when known)."""
        embedder = self._call(name, "load", request)
        origin = self.embedder_origin(name)
        check_embedder(embedder, origin, expected)
        with contextlib.suppress(AttributeError):  # an object with __slots__ keeps its class name in messages
            embedder.origin = origin
        return embedder

    def _call(self, name: str, what: str, request: EmbedderRequest) -> Any:
        spec = self.embedder(name)
        try:
            return getattr(spec, what)(request)
        except UserError:
            raise
        except Exception as exc:  # the plugin's mistake, not the user's: name the plugin
            raise PluginError(f"{self.embedder_origin(name)}: {what} failed: {type(exc).__name__}: {exc}") from exc


def _add(table: dict[str, Registered[T]], kind: str, name: str, entry: Registered[T]) -> None:
    if name in table:
        raise ValueError(
            f"{kind} {name!r} is registered twice: by {table[name].provider} and by {entry.provider}"
        )
    table[name] = entry


def _get(table: dict[str, Registered[T]], kind: str, name: str) -> Registered[T]:
    try:
        return table[name]
    except KeyError:
        known = ", ".join(sorted(table)) or "none"
        raise UserError(f"unknown {kind} {name!r} (installed: {known}; see 'morphseq-stages list')") from None
