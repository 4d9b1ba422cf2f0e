"""`moorage validate` and `moorage schema`: check spec files, and describe the spec for editors."""

from __future__ import annotations

from pathlib import Path

import click

from moorage.commands.options import output_option
from moorage.errors import EXIT_BAD_INPUT
from moorage.output import OutputFormat, console, emit_document, err_console, is_structured
from moorage.spec.loader import Diagnostic, SpecInvalid, load_spec
from moorage.spec.schema import spec_json_schema


def _problems(file: Path) -> list[Diagnostic]:
    try:
        load_spec(file)
    except SpecInvalid as invalid:
        return invalid.diagnostics
    return []


@click.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@output_option
@click.pass_context
def validate(context: click.Context, files: tuple[Path, ...], output_format: OutputFormat) -> None:
    """Check service spec FILEs; every problem is one FILE:LINE:COL line (exit 2 if any)."""
    results = [(file, _problems(file)) for file in files]
    all_valid = not any(problems for _, problems in results)
    if is_structured(output_format):
        emit_document(
            {
                "ok": all_valid,
                "files": [
                    {"file": str(file), "ok": not problems, "errors": [problem.as_json() for problem in problems]}
                    for file, problems in results
                ],
            }
        )
    else:
        for file, problems in results:
            if not problems:
                console.print(f"{file}: ok", markup=False)
            for problem in problems:
                err_console.print(str(problem), markup=False)
    if not all_valid:
        context.exit(EXIT_BAD_INPUT)


@click.command()
@output_option
def schema(output_format: OutputFormat) -> None:
    """Print the JSON Schema of the service spec (point your editor's YAML plugin at it).

    The schema is JSON whatever --output says; the option is there like on every command.
    """
    emit_document(spec_json_schema())


COMMANDS: list[click.Command] = [validate, schema]
