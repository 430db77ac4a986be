"""Plugin manager factory: entry-point discovery, one plugin at a time.

A plugin that fails to import or register is recorded (name, distribution, error) and
logged; the others still work. ``MORPHSEQ_STAGES_DISABLE_PLUGINS=a,b`` blocks plugins
by entry-point name; ``MORPHSEQ_STAGES_STRICT_PLUGINS=1`` (for plugin authors) turns
load failures into errors.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import attrs
import pluggy
import structlog

from . import hookspecs
from .embedders import EmbedderSpec
from .errors import UserError
from .markers import PROJECT_NAME
from .registry import PluginFailure, Provider, Registry
from .stages import Stage, StageContext, StageOutcome, StagePlan

GROUPS = ("morphseq_stages.stages", "morphseq_stages.embedders")
DISABLE_ENV = "MORPHSEQ_STAGES_DISABLE_PLUGINS"
STRICT_ENV = "MORPHSEQ_STAGES_STRICT_PLUGINS"

log = structlog.get_logger()


def _blocked_names() -> set[str]:
    return {n.strip() for n in os.environ.get(DISABLE_ENV, "").split(",") if n.strip()}


def _strict_default() -> bool:
    return os.environ.get(STRICT_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


@attrs.define
class Host:
    """The plugin manager, what its plugins registered, and a typed facade over phases."""

    pm: pluggy.PluginManager
    registry: Registry

    def plan(self, stage: str, context: StageContext) -> StagePlan | None:
        return self.pm.hook.morphseq_stage_plan(stage=stage, context=context)

    def generate(self, stage: str, context: StageContext, plan: StagePlan) -> Any:
        return self.pm.hook.morphseq_stage_generate(stage=stage, context=context, plan=plan)

    def merge(self, stage: str, context: StageContext, plan: StagePlan, generated: Any) -> Any:
        return self.pm.hook.morphseq_stage_merge(
            stage=stage, context=context, plan=plan, generated=generated
        )

    def export(self, stage: str, context: StageContext, plan: StagePlan, merged: Any) -> StageOutcome | None:
        return self.pm.hook.morphseq_stage_export(
            stage=stage, context=context, plan=plan, merged=merged
        )


def get_host(
    *,
    plugins: Iterable[tuple[str, object]] = (),
    load_entry_points: bool = True,
    strict: bool | None = None,
) -> Host:
    """Build the plugin manager: entry points first, then ``plugins`` as (name, object)."""
    strict = _strict_default() if strict is None else strict
    pm = pluggy.PluginManager(PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    registry = Registry()
    providers: dict[str, Provider] = {}
    blocked = _blocked_names()
    for name in blocked:
        pm.set_blocked(name)

    def fail(name: str, group: str, dist: str | None, error: BaseException) -> None:
        failure = PluginFailure(
            name=name, group=group, distribution=dist, error=f"{type(error).__name__}: {error}"
        )
        registry.failures.append(failure)
        log.warning("plugin.load_failed", plugin=name, group=group, distribution=dist, error=failure.error)
        if strict:
            raise UserError(f"plugin {name!r} ({dist or 'unknown distribution'}) failed: {failure.error}") from error

    if load_entry_points:
        for group in GROUPS:
            for ep in entry_points(group=group):
                if ep.name in blocked or pm.has_plugin(ep.name):
                    continue
                dist, version = _dist_of(ep)
                try:
                    plugin = ep.load()
                    pm.register(plugin, name=ep.name)
                except Exception as exc:  # a broken plugin must not break the host
                    fail(ep.name, group, dist, exc)
                    continue
                providers[ep.name] = Provider(plugin=ep.name, distribution=dist, version=version)

    for name, plugin in plugins:
        if name in blocked:
            continue
        pm.register(plugin, name=name)
        providers[name] = Provider(plugin=name)

    pm.check_pending()
    _collect(pm, registry, providers, fail)
    return Host(pm=pm, registry=registry)


def _dist_of(ep: EntryPoint) -> tuple[str | None, str | None]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return None, None
    return dist.metadata["Name"], dist.version


def _collect(pm: pluggy.PluginManager, registry: Registry, providers: dict[str, Provider], fail) -> None:
    """Call each plugin's registration hooks with a ``register`` bound to that plugin."""
    adders = (
        (pm.hook.morphseq_register_stages, Stage, registry.add_stage),
        (pm.hook.morphseq_register_embedders, EmbedderSpec, registry.add_embedder),
    )
    for hook, kind, add in adders:
        for impl in hook.get_hookimpls():  # registration order: entry points first
            provider = providers.get(impl.plugin_name, Provider(plugin=impl.plugin_name))

            def register(item, _add=add, _kind=kind, _provider=provider) -> None:
                if not isinstance(item, _kind):
                    raise TypeError(f"register() takes a {_kind.__name__}, got {type(item).__name__}")
                _add(item, _provider)

            try:
                impl.function(register=register)
            except Exception as exc:
                fail(impl.plugin_name, hook.name, provider.distribution, exc)
