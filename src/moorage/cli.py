"""The ``moorage`` command: a thin root that gathers the command groups."""

from __future__ import annotations

import itertools
import signal
import sys

import click

from moorage import __version__
from moorage.commands import build, deploy, dev, drill, lab, platform, remote, remove, render, spec
from moorage.errors import MoorageError
from moorage.output import OutputFormat, emit_document, err_console, is_structured, use_format


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="moorage")
def cli() -> None:
    """Services on VMs with one file and one command: systemd or Docker, Consul, NGINX, Prometheus."""


for module in (spec, render, build, dev, lab, drill, platform, deploy, remote, remove):
    for command in module.COMMANDS:
        cli.add_command(command)


def _asked_format(arguments: list[str]) -> OutputFormat:
    """The ``-o/--output`` asked for, read before the command runs, so errors raised before it (bad options) honour it too."""
    asked = "text"
    for flag, value in itertools.pairwise(arguments):
        if flag in ("-o", "--output"):
            asked = value
    for argument in arguments:
        if argument.startswith(("--output=", "-o=")):
            asked = argument.split("=", 1)[1]
    return asked if asked in ("json", "yaml") else "text"  # type: ignore[return-value]


def main() -> None:
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `moorage logs -f | head` ends quietly, as Unix tools do
    asked_format = _asked_format(sys.argv[1:])
    use_format(asked_format)
    try:
        exit_code = cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        err_console.print("moorage: aborted")
        sys.exit(130)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except MoorageError as error:
        if is_structured(asked_format):
            emit_document(error.as_json())
        else:
            for line in error.report_lines():
                err_console.print(line, markup=False)
        sys.exit(error.exit_code)
    except click.exceptions.Exit as done:
        sys.exit(done.exit_code)
    sys.exit(exit_code if isinstance(exit_code, int) else 0)
