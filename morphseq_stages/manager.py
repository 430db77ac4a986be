"""Plugin manager factory: entry-point discovery, one plugin at a time, and a typed facade.

Each plugin is loaded, registered and validated (``check_pending``, as tox does) on its
own; one that fails is unregistered, recorded as a :class:`~.registry.PluginFailure`
(name, distribution, error) and logged, and the others still work. The host's own
distribution loads first, so an entry point of another distribution that takes one of
its plugins' names is a recorded collision, not a silent replacement.
``MORPHSEQ_STAGES_DISABLE_PLUGINS=a,b`` blocks plugins by entry-point name;
``MORPHSEQ_STAGES_STRICT_PLUGINS=1`` (for plugin authors) turns failures into errors.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable, Iterable
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import attrs
import pluggy
import structlog

from . import hookspecs
from .context import StageContext
from .embedders import EmbedderSpec
from .errors import UserError
from .markers import PROJECT_NAME
from .registry import PluginFailure, Provider, Registry
from .stages import Stage, StageOutcome, StagePlan

GROUPS = ("morphseq_stages.stages", "morphseq_stages.embedders")
#: the host's own distribution, whose first-party plugins load before any other
HOST_DISTRIBUTION = "morphseq-stages"
HOOK_PREFIX = "morphseq_"
DISABLE_ENV = "MORPHSEQ_STAGES_DISABLE_PLUGINS"
STRICT_ENV = "MORPHSEQ_STAGES_STRICT_PLUGINS"

log = structlog.get_logger()


def _blocked_names() -> set[str]:
    return {n.strip() for n in os.environ.get(DISABLE_ENV, "").split(",") if n.strip()}


def _strict_default() -> bool:
    return os.environ.get(STRICT_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


@attrs.define
class Host:
    """The plugin manager, what its plugins registered, and a typed facade over phases.

    A phase call reaches the plugin that registered the stage (and every wrapper): see
    :mod:`.hookspecs`.
    """

    pm: pluggy.PluginManager
    registry: Registry

    def plan(self, stage: str, context: StageContext) -> StagePlan | None:
        """Call the stage's plan hook (its owner answers; wrappers observe)."""
        return self._phase("morphseq_stage_plan", stage)(stage=stage, context=context)

    def generate(self, stage: str, context: StageContext, plan: StagePlan) -> Any:
        """Call the stage's generate hook, with the plan's locks held."""
        return self._phase("morphseq_stage_generate", stage)(stage=stage, context=context, plan=plan)

    def merge(self, stage: str, context: StageContext, plan: StagePlan, generated: Any) -> Any:
        """Call the stage's merge hook with what generate returned."""
        return self._phase("morphseq_stage_merge", stage)(
            stage=stage, context=context, plan=plan, generated=generated
        )

    def export(self, stage: str, context: StageContext, plan: StagePlan, merged: Any) -> StageOutcome | None:
        """Call the stage's export hook; returns its :class:`StageOutcome`."""
        return self._phase("morphseq_stage_export", stage)(
            stage=stage, context=context, plan=plan, merged=merged
        )

    def _phase(self, name: str, stage: str) -> pluggy.HookCaller:
        """The phase hook without other plugins' plain implementations: the owner answers."""
        owner = self.registry.stages[stage].provider.plugin
        hook: pluggy.HookCaller = getattr(self.pm.hook, name)
        others = [impl.plugin for impl in hook.get_hookimpls()
                  if impl.plugin_name != owner and not (impl.wrapper or impl.hookwrapper)]
        return self.pm.subset_hook_caller(name, others) if others else hook


@attrs.define
class _Loader:
    """Registers plugins one at a time, each inside its own guard."""

    pm: pluggy.PluginManager
    registry: Registry
    strict: bool
    providers: dict[str, Provider] = attrs.Factory(dict)
    values: dict[str, tuple[str | None, str]] = attrs.Factory(dict)  # name -> (distribution, value)

    def fail(self, name: str, group: str, dist: str | None, error: BaseException) -> None:
        failure = PluginFailure(name=name, group=group, distribution=dist, error=f"{type(error).__name__}: {error}")
        self.registry.failures.append(failure)
        log.warning("plugin.load_failed", plugin=name, group=group, distribution=dist, error=failure.error)
        if self.strict:
            raise UserError(f"plugin {name!r} ({dist or 'unknown distribution'}) failed: {failure.error}") from error

    def add(self, name: str, plugin: object, provider: Provider, group: str) -> None:
        """Register and validate one plugin; on any error, leave no trace of it but the failure."""
        registered = False
        try:
            self.pm.register(plugin, name=name)
            registered = True
            _check_hook_names(plugin)
            self.pm.check_pending()  # only this plugin can fail it: the others passed
        except Exception as exc:  # a broken plugin must not break the host
            if registered:
                self.pm.unregister(plugin)
            self.fail(name, group, provider.distribution, exc)
            return
        self.providers[name] = provider

    def entry_point(self, ep: EntryPoint) -> None:
        dist, version = _dist_of(ep)
        taken = self.values.get(ep.name)
        if taken == (dist, ep.value):
            return  # one plugin declared in both groups: loaded once
        if taken is not None:
            owner = self.providers.get(ep.name)
            self.fail(ep.name, ep.group, dist, NameCollision(
                f"entry point name {ep.name!r} ({ep.value}) is already taken by "
                f"{owner.label if owner else taken[0] or 'another plugin'}; rename it"))
            return
        self.values[ep.name] = (dist, ep.value)
        try:
            plugin = ep.load()
        except Exception as exc:  # a plugin that cannot be imported must not break the host
            self.fail(ep.name, ep.group, dist, exc)
            return
        self.add(ep.name, plugin, Provider(plugin=ep.name, distribution=dist, version=version), ep.group)


class NameCollision(Exception):
    """Two distributions' entry points share a plugin name."""


class UnknownHook(Exception):
    """A plugin function named like a hook that the host does not have."""


def _check_hook_names(plugin: object) -> None:
    """Refuse ``morphseq_*`` functions that are no hook, marked or not: a misspelling
    would otherwise leave the plugin silently doing nothing."""
    hooks = [n for n in vars(hookspecs) if n.startswith(HOOK_PREFIX)]
    for name in sorted(dir(plugin)):
        if name.startswith(HOOK_PREFIX) and name not in hooks and callable(getattr(plugin, name, None)):
            close = difflib.get_close_matches(name, hooks, n=1)
            raise UnknownHook(f"{name!r} is not a hook" + (f" (did you mean {close[0]!r}?)" if close else ""))


def get_host(
    *,
    plugins: Iterable[tuple[str, object]] = (),
    load_entry_points: bool = True,
    strict: bool | None = None,
) -> Host:
    """Build the plugin manager: entry points first, then ``plugins`` as (name, object)."""
    pm = pluggy.PluginManager(PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    blocked = _blocked_names()
    for name in blocked:
        pm.set_blocked(name)
    loader = _Loader(pm=pm, registry=Registry(), strict=_strict_default() if strict is None else strict)
    if load_entry_points:
        for ep in _entry_points():
            if ep.name not in blocked:
                loader.entry_point(ep)
    for name, plugin in plugins:
        if name not in blocked:
            loader.add(name, plugin, Provider(plugin=name), "get_host(plugins=...)")
    _collect(loader)
    return Host(pm=pm, registry=loader.registry)


def _entry_points() -> list[EntryPoint]:
    """Every entry point of our groups, the host distribution's first (a stable sort)."""
    found = [ep for group in GROUPS for ep in entry_points(group=group)]
    return sorted(found, key=lambda ep: _normalised(_dist_of(ep)[0]) != HOST_DISTRIBUTION)


def _normalised(dist: str | None) -> str | None:
    """A distribution name as PEP 503 compares them (``Morphseq_Stages`` is ``morphseq-stages``)."""
    return None if dist is None else re.sub(r"[-_.]+", "-", dist).lower()


def _dist_of(ep: EntryPoint) -> tuple[str | None, str | None]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return None, None
    return dist.metadata["Name"], dist.version


def _collect(loader: _Loader) -> None:
    """Call each plugin's registration hooks with a ``register`` bound to that plugin."""
    pm, registry = loader.pm, loader.registry
    adders: tuple[tuple[pluggy.HookCaller, type, Callable[[Any, Provider], None]], ...] = (
        (pm.hook.morphseq_register_stages, Stage, registry.add_stage),
        (pm.hook.morphseq_register_embedders, EmbedderSpec, registry.add_embedder),
    )
    for hook, kind, add in adders:
        for impl in hook.get_hookimpls():  # registration order: entry points first
            provider = loader.providers.get(impl.plugin_name, Provider(plugin=impl.plugin_name))
            try:
                impl.function(register=_register_for(kind, add, provider))
            except Exception as exc:
                loader.fail(impl.plugin_name, hook.name, provider.distribution, exc)


def _register_for(kind: type, add: Callable[[Any, Provider], None], provider: Provider) -> Callable[[Any], None]:
    def register(item: Any) -> None:
        if not isinstance(item, kind):
            raise TypeError(f"register() takes a {kind.__name__}, got {type(item).__name__}")
        add(item, provider)

    return register
