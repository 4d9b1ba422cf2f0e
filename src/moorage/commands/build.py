"""`moorage build`: the artifact of a systemd service with its Python dependencies, as one versioned tarball."""

from __future__ import annotations

import shutil
from pathlib import Path

import click

from moorage.build import DEBIAN_12, Artifact, HostPython, build_artifact
from moorage.commands.options import output_option
from moorage.errors import BadInput
from moorage.output import OutputFormat, console, emit_event, emit_result, err_console, is_structured
from moorage.spec.loader import artifact_path, load_spec
from moorage.spec.model import ServiceSpec


def artifact_source(service: ServiceSpec, spec_file: Path) -> Path:
    """The artifact directory a build starts from; one line naming the field when there is none to build."""
    source = artifact_path(service, spec_file)
    if service.spec.runtime != "systemd" or source is None:
        raise BadInput(f"{spec_file}: spec.runtime: {service.spec.runtime}: the image is the artifact (build it with docker build)")
    if not source.is_dir():
        raise BadInput(f"{spec_file}: spec.artifact: {service.spec.artifact} is a file, already built (moorage build takes a directory)")
    return source


@click.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--version", "release_version", help="Name the tarball NAME-VERSION.tar.gz (default: a hash of its inputs).")
@click.option(
    "--output-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Copy the tarball into this directory too (it is kept in the build cache either way).",
)
@click.option("--python-version", default=DEBIAN_12.version, show_default=True, help="The hosts' Python (X.Y).")
@click.option(
    "--platform", "platform_tag", default=DEBIAN_12.platform, show_default=True, help="The hosts' platform: manylinux_GLIBC_ARCH."
)
@output_option
def build(
    file: Path,
    release_version: str | None,
    output_dir: Path | None,
    python_version: str,
    platform_tag: str,
    output_format: OutputFormat,
) -> None:
    """Build the artifact of spec FILE: the directory and its requirements.txt installed for the hosts' Python.

    Prints the tarball's path and sha256 digest; a second build of the same inputs comes from the cache.
    """
    service = load_spec(file).model
    source = artifact_source(service, file)
    python = HostPython(python_version, platform_tag)

    def say(message: str) -> None:
        if is_structured(output_format):
            emit_event({"event": "progress", "message": message})
        else:
            err_console.print(message, markup=False)

    artifact = build_artifact(service.name, source, release_version, python, say)
    path = artifact.path
    if output_dir is not None:
        output_dir.mkdir(parents=True, exist_ok=True)
        path = Path(shutil.copyfile(artifact.path, output_dir / artifact.path.name))
    _report(artifact, path, output_format)


def _report(artifact: Artifact, path: Path, output_format: OutputFormat) -> None:
    if is_structured(output_format):
        emit_result({"ok": True, **artifact.as_json(), "path": str(path)})
        return
    how = "from the cache" if artifact.cached else "built"
    console.print(f"{artifact.service} {artifact.version}: {path} ({how})", markup=False)
    console.print(f"  sha256:{artifact.digest}, {artifact.size} bytes, for {artifact.python.describe()}", markup=False)
    for dependency in artifact.dependencies:
        console.print(f"  {dependency}", markup=False)


COMMANDS: list[click.Command] = [build]
