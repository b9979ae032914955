"""``python -m workloads <command>``: the one entry point that images, job specs and make targets call.

Each command is its own module, ``workloads/commands/<name>.py`` (dashes become underscores), listed
below by name. A command module defines:

- its docstring (the command's ``--help`` description) and ``HELP`` (one line for the command list);
- ``Config``: a frozen :class:`workloads.core.settings.CommandConfig` dataclass;
- ``run(config) -> int``: does the work. TensorFlow and PyTorch are imported inside ``run`` (or below
  it), never at module level, so building the parser stays cheap and framework-free.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from types import ModuleType

from workloads.core import logs, native_logs, settings
from workloads.core.errors import WorkloadError

# The commands, in the order of `--help`. Command ``a-b`` is the module ``workloads.commands.a_b``.
COMMANDS: tuple[str, ...] = (
    "ingest",
    "train",
    "search",
    "select",
    "export",
    "pipeline",
    "workflow",
    "verify-serving",
    "record-outcome",
    "tfs-config",
    "serve-dev",
    "mirror-models",
    "predict",
    "loadtest",
    "infer-worker",
    "stream-ingest",
)

log = logging.getLogger("workloads")


def load_command(name: str) -> ModuleType:
    return importlib.import_module(f"workloads.commands.{name.replace('-', '_')}")


def build_parser() -> argparse.ArgumentParser:
    """The full parser, every command and flag; imports no ML framework."""
    parser = argparse.ArgumentParser(
        prog="python -m workloads",
        description="mlstack workloads: data ingestion, distributed training, model selection and serving.",
        epilog="Every flag can also be set as an MLSTACK_<FLAG> environment variable or in a --config file.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="<command>")
    for name in COMMANDS:
        module = load_command(name)
        sub = subparsers.add_parser(
            name,
            help=module.HELP,
            description=module.__doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        settings.add_arguments(sub, module.Config)
        common = sub.add_argument_group("common options")
        common.add_argument(
            "--config", help="JSON or YAML file of settings (flags and MLSTACK_* override it)"
        )
        common.add_argument(
            "--log-format",
            choices=["auto", "json", "text"],
            default=os.environ.get("MLSTACK_LOG_FORMAT", "auto"),
            help="log line format; auto = text on a terminal, JSON otherwise [env MLSTACK_LOG_FORMAT]",
        )
        common.add_argument(
            "--log-level",
            choices=["DEBUG", "INFO", "WARNING", "ERROR"],
            default=os.environ.get("MLSTACK_LOG_LEVEL", "INFO"),
            help="least severe level that is logged; DEBUG also shows TensorFlow's C++ logs, otherwise "
            "quiet unless TF_CPP_MIN_LOG_LEVEL says otherwise [env MLSTACK_LOG_LEVEL]",
        )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help(sys.stderr)
        return 2
    module = load_command(args.command)
    flags = {k: v for k, v in vars(args).items() if k not in {"command", "config", "log_format", "log_level"}}
    try:
        config = settings.resolve(module.Config, flags, os.environ, args.config)
    except settings.ConfigError as error:
        print(f"python -m workloads {args.command}: error: {error}", file=sys.stderr)
        return 2
    logs.setup(args.log_format, args.log_level)
    native_logs.quiet_tensorflow(native_logs.configure(os.environ, verbose=args.log_level == "DEBUG"))
    log.debug(
        "starting %s", args.command, extra=logs.fields(command=args.command, config=config.public_dict())
    )
    try:
        return module.run(config)
    except WorkloadError as error:
        log.error("%s", error, extra=logs.fields(command=args.command, error=type(error).__name__))
        return error.exit_code
    except KeyboardInterrupt:
        log.warning("interrupted")
        return 130


def entry_point() -> None:
    sys.exit(main())
