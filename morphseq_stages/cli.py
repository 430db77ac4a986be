"""The command line: ``morphseq-stages list | demo | <stage> ...``, its flags generated from each stage's option schema.

Bad input ends with one line on stderr and a non-zero exit; ``--debug`` shows the
traceback instead.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import signal
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from . import __version__, logs
from .errors import UserError
from .options import add_arguments, options_of

if TYPE_CHECKING:  # the manager loads plugins: imported when a command runs
    from .manager import Host
    from .registry import Registered
    from .runner import RunResult


def _common(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("logging")
    g.add_argument("--log-format", choices=("auto", "json", "console"), default="auto",
                   help="JSON lines or console rendering on stderr (default: console on a terminal, else JSON)")
    g.add_argument("--log-file", help="also append every event as a JSON line to this file")
    g.add_argument("--quiet", action="store_true", help="only warnings and errors on stderr (--log-file still gets every event)")
    g.add_argument("--debug", action="store_true", help="show tracebacks and debug events")


def build_parser(host: Host) -> argparse.ArgumentParser:
    """The ``morphseq-stages`` parser: ``list``, ``demo`` and one subcommand per registered stage, its flags made from the stage's option schema."""
    parser = argparse.ArgumentParser(
        prog="morphseq-stages",
        description="Run morphseq pipeline stages provided by plugins.",
    )
    parser.add_argument("--version", action="version", version=f"morphseq-stages {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("list", help="show stages and embedders found, and plugins that failed to load")
    p.add_argument("--json", action="store_true", help="print JSON")
    _common(p)

    demos = sorted(n for n, e in host.registry.stages.items() if e.item.demo is not None)
    p = sub.add_parser("demo", help="lay out a small built-in example of a stage (one that registers a demo: "
                                    f"{', '.join(demos) or 'none installed'}) and run the stage on it")
    p.add_argument("dir", nargs="?", default="morphseq-demo", help="folder to create (default: ./morphseq-demo)")
    p.add_argument("--stage", choices=demos or None, default=demos[0] if demos else None,
                   help="the stage whose demo to run (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print the run summary as JSON")
    _common(p)

    for name, entry in sorted(host.registry.stages.items()):
        stage = entry.item
        p = sub.add_parser(name, help=stage.help, description=stage.help)
        if stage.options is not None:
            add_arguments(p, stage.options)
        g = p.add_argument_group("run")
        g.add_argument("--dry-run", action="store_true", help="print the plan and write nothing at all")
        g.add_argument("--json", action="store_true", help="print the plan or summary as JSON")
        _common(p)
        p.set_defaults(_stage=name)
    return parser


def _print_list(host: Host, as_json: bool) -> None:
    reg = host.registry

    def row(kind: str, name: str, entry: Registered[Any]) -> dict[str, Any]:
        prov = entry.provider
        return {"kind": kind, "name": name, "plugin": prov.plugin, "distribution": prov.distribution,
                "version": prov.version, "help": entry.item.help}

    rows = [row("stage", n, e) for n, e in sorted(reg.stages.items())]
    rows += [row("embedder", n, e) for n, e in sorted(reg.embedders.items())]
    failures = [{"plugin": f.name, "group": f.group, "distribution": f.distribution, "error": f.error} for f in reg.failures]
    if as_json:
        print(json.dumps({"plugins": rows, "failed": failures}, indent=2))
        return
    for kind in ("stage", "embedder"):
        print(f"{kind}s:")
        found = [r for r in rows if r["kind"] == kind]
        for r in found:
            dist = f"{r['distribution']} {r['version']}" if r["distribution"] else "not from a distribution"
            print(f"  {r['name']:<12} {r['help']}  [plugin {r['plugin']}, {dist}]")
        if not found:
            print("  (none)")
    if failures:
        print("failed to load:")
        for f in failures:
            print(f"  {f['plugin']} ({f['distribution'] or 'unknown distribution'}, {f['group']}): {f['error']}")


def _print_result(result: RunResult, as_json: bool, dry_run: bool) -> None:
    if dry_run:
        print(json.dumps(result.plan.as_dict(), indent=2, default=str) if as_json else result.plan.render())
    elif as_json:
        print(json.dumps(result.summary, indent=2, default=str))
    elif result.outcome.text:
        print(result.outcome.text)


def _run_demo(host: Host, args: argparse.Namespace) -> int:
    if args.stage is None:
        raise UserError("no installed stage provides a demo")
    demo = host.registry.stage(args.stage).demo
    if demo is None:  # argparse offers only stages with a demo
        raise UserError(f"stage {args.stage!r} provides no demo")
    argv = [args.stage, *demo(Path(args.dir))]
    argv += ["--log-format", args.log_format] + (["--log-file", args.log_file] if args.log_file else [])
    argv += ["--json"] if args.json else []
    argv += ["--quiet"] if args.quiet else []
    print(f"demo folder: {args.dir}\nrunning: morphseq-stages {' '.join(argv)}\n", flush=True)
    return main(argv)


#: what a user can cause or meet (a full or read-only disk, no permission, a name too
#: long, a folder or file in the wrong place): one line and exit 2, like bad input
USER_ERRNOS = frozenset({
    errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENAMETOOLONG, errno.EISDIR,
    errno.ENOTDIR, errno.ENOENT, errno.EEXIST, errno.ELOOP, errno.EIO, errno.EFBIG, errno.EMFILE, errno.ENXIO,
})


def _os_error(exc: OSError) -> str:
    where = " -> ".join(str(f) for f in (exc.filename, exc.filename2) if f is not None)
    return f"{exc.strerror or exc}" + (f": {where}" if where else "")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 done, 2 bad input, 3 a ``--strict`` warning, 75 busy, 70 a bug)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    run_id = uuid.uuid4().hex[:12]
    try:
        code = _main(argv, run_id)
        sys.stdout.flush()  # a reader gone (`| head`) is met here, not in the flush at exit (exit 120)
        return code
    except UserError as exc:
        return _failed(argv, run_id, str(exc), exc.exit_code, "error")
    except KeyboardInterrupt:
        return _failed(argv, run_id, "interrupted; outputs are either unchanged or complete", 130, None)
    except BrokenPipeError:
        _stdout_gone()
        print("morphseq-stages: standard output closed by its reader; outputs are either unchanged or complete",
              file=sys.stderr)
        return 128 + signal.SIGPIPE
    except Exception as exc:
        if debug:
            raise
        if isinstance(exc, OSError) and exc.errno in USER_ERRNOS:
            return _failed(argv, run_id, _os_error(exc), 2, "error")
        message = f"{type(exc).__name__}: {exc} (rerun with --debug for the traceback)"
        return _failed(argv, run_id, message, 70, "internal error")


def run() -> None:
    """The ``morphseq-stages`` program: :func:`main`, then the process ends at once.

    Its work is done and flushed when ``main`` returns; what the interpreter would still do
    at exit is tear down native libraries, and that has been seen to abort (SIGABRT,
    "terminate called without an active exception", about one run in ten on a loaded
    machine, with pyarrow loaded), turning a finished run's exit code into 134.
    """
    code = main()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass  # a reader gone: main said so already
    os._exit(code)


def _stdout_gone() -> None:
    """stdout's reader left (`| head`): nothing more can be printed there, nor flushed at exit."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _failed(argv: list[str], run_id: str, message: str, code: int, kind: str | None) -> int:
    """One line on stderr; with --json also ``{"error", "exit_code"}`` on stdout.

    The ``run.failed`` event goes to the log file, and to stderr only with --json (a
    person reading stderr gets the one line)."""
    as_json = "--json" in argv
    logs.library_default()  # set-up itself may have failed (a bad --log-file): never stdout
    structlog.get_logger().error("run.failed", run_id=run_id, error=message, exit_code=code,
                                 **({} if as_json else {logs.FILE_ONLY: True}))
    print(f"morphseq-stages: {kind + ': ' if kind else ''}{message}", file=sys.stderr)
    if as_json:
        try:
            print(json.dumps({"error": message, "exit_code": code, "run_id": run_id}, indent=2), flush=True)
        except BrokenPipeError:  # the reader left: the line on stderr says it all
            _stdout_gone()
    return code


def _main(argv: list[str], run_id: str) -> int:
    from .manager import get_host

    # logging must exist before plugins load, so that load failures are reported
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--log-format", default="auto")
    pre.add_argument("--log-file")
    pre.add_argument("--debug", action="store_true")
    pre.add_argument("--quiet", action="store_true")
    early, _ = pre.parse_known_args(argv)
    if early.log_format not in ("auto", "json", "console"):
        early.log_format = "auto"  # argparse reports it properly below
    logs.configure(early.log_format, early.log_file, "debug" if early.debug else "info", quiet=early.quiet)

    host = get_host()
    args = build_parser(host).parse_args(argv)
    if args.command == "list":
        _print_list(host, args.json)
        return 0
    if args.command == "demo":
        return _run_demo(host, args)
    from .runner import run_stage

    schema = host.registry.stage(args._stage).options
    names = {o.name for o in options_of(schema)} if schema is not None else set()
    options = {k: v for k, v in vars(args).items() if k in names and v is not None}
    result = run_stage(host, args._stage, options, dry_run=args.dry_run, run_id=run_id)
    _print_result(result, args.json, args.dry_run)
    return result.outcome.exit_code
