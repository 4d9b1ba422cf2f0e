"""`moorage render`: what a spec becomes on a target, without touching anything.

kubernetes: a multi-document YAML stream (``kubectl apply -f -``), or one file per object.
classic: the placement plan and the deploy playbook's variables, as YAML.
compose: a Compose file for a developer's machine (docs/dev.md), with its image's build context.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import yaml
from rich.table import Table

from moorage.commands.options import chosen_inventory, inventory_option, output_option, site_passwords
from moorage.inventory import load_inventory
from moorage.output import OutputFormat, console, emit_document, err_console, is_structured
from moorage.plan import Instance
from moorage.spec.loader import SpecFile, load_spec
from moorage.spec.model import ServiceSpec
from moorage.targets import classic, compose, kubernetes


class _PlainDumper(yaml.SafeDumper):
    """YAML 1.1 quoting (what kubectl and Ansible read), no anchors or aliases."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def to_yaml(documents: list[Any]) -> str:
    return yaml.dump_all(documents, Dumper=_PlainDumper, sort_keys=False, default_flow_style=False, width=1000)


@click.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--target", required=True, type=click.Choice(["kubernetes", "classic", "compose"]), help="What to render for.")
@click.option(
    "--output-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write files into this directory (kubernetes: one per object) instead of printing.",
)
@inventory_option("classic: Ansible inventory to place instances on (default: $MOORAGE_INVENTORY, else the running lab's).")
@click.option(
    "--version",
    "release_version",
    help="kubernetes, compose: the release version (image tag NAME:VERSION for runtime systemd; MOORAGE_VERSION).",
)
@output_option
@click.pass_context
def render(
    context: click.Context,
    file: Path,
    target: str,
    output_dir: Path | None,
    inventory: Path | None,
    release_version: str | None,
    output_format: OutputFormat,
) -> None:
    """Render service spec FILE for a target: Kubernetes manifests or the classic plan."""
    spec = load_spec(file)
    if target == "kubernetes":
        if context.get_parameter_source("inventory") == click.core.ParameterSource.COMMANDLINE:
            raise click.UsageError("-i/--inventory is for --target classic (Kubernetes places pods itself)")
        _render_kubernetes(spec.model, release_version, output_dir, output_format)
    elif target == "compose":
        if context.get_parameter_source("inventory") == click.core.ParameterSource.COMMANDLINE:
            raise click.UsageError("-i/--inventory is for --target classic (Compose runs on this machine)")
        _render_compose(spec, release_version, output_dir, output_format)
    else:
        if release_version is not None:
            raise click.UsageError("--version is for --target kubernetes (the classic version comes with 'moorage deploy')")
        _render_classic(spec, chosen_inventory(inventory), output_dir, output_format)


def _render_kubernetes(service: ServiceSpec, release_version: str | None, output_dir: Path | None, output_format: OutputFormat) -> None:
    manifests = kubernetes.render(service, release_version)
    if output_dir is None:
        if is_structured(output_format):
            emit_document({"apiVersion": "v1", "kind": "List", "items": manifests})  # kubectl apply -f - takes it
        else:
            console.out(to_yaml(manifests), end="", highlight=False)
        return
    output_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for number, manifest in enumerate(manifests, start=1):
        path = output_dir / f"{number:02d}-{manifest['kind'].lower()}-{manifest['metadata']['name']}.yaml"
        path.write_text(to_yaml([manifest]))
        written.append(str(path))
    _report_files(written, output_format)


def _render_compose(spec: SpecFile, release_version: str | None, output_dir: Path | None, output_format: OutputFormat) -> None:
    service, spec_file = spec.model, spec.file
    artifact = compose.built_artifact(service, spec_file, say=lambda message: err_console.print(message, markup=False))
    version = release_version or compose.DEV_VERSION
    if output_dir is not None:
        project = compose.render(service, artifact, version=version, source_name=spec_file.name)
        _report_files([str(project.write(output_dir))], output_format)
        return
    # Printed: the image's build context goes to the build cache, named by its content.
    context = None if artifact is None else compose.context_cache_dir(artifact)
    project = compose.render(service, artifact, version=version, context=context, source_name=spec_file.name)
    if context is not None:
        project.write_context(context)
    if is_structured(output_format):
        emit_document(project.document)
    else:
        console.out(compose.to_yaml(project.document), end="", highlight=False)


def _render_classic(spec: SpecFile, inventory_path: Path, output_dir: Path | None, output_format: OutputFormat) -> None:
    plan, variables = classic.render(spec, load_inventory(inventory_path, site_passwords(inventory_path)))
    if output_format == "text":
        err_console.print(_plan_table(plan.instances, inventory_path))
    if output_dir is None:
        if is_structured(output_format):
            emit_document(variables)
        else:
            console.out(to_yaml([variables]), end="", highlight=False)
        return
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / f"{spec.name}.yml"
    path.write_text(to_yaml([variables]))
    _report_files([str(path)], output_format)


def _plan_table(instances: tuple[Instance, ...], inventory: Path) -> Table:
    table = Table(title=f"placement ({inventory})", title_justify="left")
    for column in ("instance", "host", "address", "port"):
        table.add_column(column)
    for instance in instances:
        table.add_row(instance.id, instance.host, instance.address, str(instance.port or "-"))
    return table


def _report_files(paths: list[str], output_format: OutputFormat) -> None:
    if is_structured(output_format):
        emit_document({"ok": True, "files": paths})
    else:
        for path in paths:
            console.print(f"wrote {path}", markup=False)


COMMANDS: list[click.Command] = [render]
