"""The ``moorage`` command: a thin root that gathers the command groups."""

from __future__ import annotations

import itertools
import sys

import click

from moorage import __version__
from moorage.commands import build, deploy, dev, drill, lab, platform, render, spec
from moorage.errors import MoorageError
from moorage.output import emit_json, err_console


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="moorage")
def cli() -> None:
    """Services on VMs with one file and one command: systemd or Docker, Consul, NGINX, Prometheus."""


for module in (spec, render, build, dev, lab, drill, platform, deploy):
    for command in module.COMMANDS:
        cli.add_command(command)


def _wants_json(arguments: list[str]) -> bool:
    """Whether ``--output json`` was asked for (errors raised before a command runs honour it too)."""
    return "--output=json" in arguments or any(flag == "--output" and value == "json" for flag, value in itertools.pairwise(arguments))


def main() -> None:
    wants_json = _wants_json(sys.argv[1:])
    try:
        exit_code = cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        err_console.print("moorage: aborted")
        sys.exit(130)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except MoorageError as error:
        if wants_json:
            emit_json(error.as_json())
        else:
            for line in error.report_lines():
                err_console.print(line, markup=False)
        sys.exit(error.exit_code)
    except click.exceptions.Exit as done:
        sys.exit(done.exit_code)
    sys.exit(exit_code if isinstance(exit_code, int) else 0)
