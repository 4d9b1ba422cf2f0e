"""Where one service's files live on a host: every path the deploy agent, the modules and the role use.

::

    ROOT/NAME/artifacts/DIGEST.tar.gz         a release's files as shipped (cached by content)
    ROOT/NAME/releases/F/                     files of release F, unpacked (marker .moorage-unpacked)
    ROOT/NAME/current/ID -> ../releases/F     the files instance ID runs (its unit's WorkingDirectory)
    CONFIG/NAME/                              0700
    CONFIG/NAME/releases/N/ID.json            instance ID as release N defines it (0600: env with secrets)
    CONFIG/NAME/ID.env                        the env the instance runs with (0600), from its definition
    CONFIG/NAME/ID.state                      the release the instance runs (written once it is healthy)
    CONFIG/NAME/consul.token                  the service's Consul ACL token (0600)
    UNITS/moorage-ID.service                  its systemd unit (the same for every release)

The unit names neither a release nor its files: it starts whatever ``current/ID`` and ``ID.env``
say, so switching an instance rewrites no unit and needs no ``systemctl daemon-reload``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .consul import DEFAULT_ADDRESS

ROOT = "/opt/moorage"
CONFIG_ROOT = "/etc/moorage"
UNITS_DIR = "/etc/systemd/system"
UNPACKED_MARKER = ".moorage-unpacked"
# The deploy agent as shipped by the service role: AGENT_DIR/agent-DIGEST.pyz (a zipapp of this package).
AGENT_DIR = "/usr/local/lib/moorage/deploy"

# The Ansible modules' options for where a service lives and how Consul is reached (their docs:
# plugins/doc_fragments/host_agent.py).
HOST_AGENT_ARGUMENTS: dict[str, dict[str, str]] = {
    "root": {"type": "str", "default": ROOT},
    "config_root": {"type": "str", "default": CONFIG_ROOT},
    "consul_addr": {"type": "str", "default": DEFAULT_ADDRESS},
    "host": {"type": "str", "default": ""},
}


def agent_path(digest: str, agent_dir: str = AGENT_DIR) -> str:
    """The deploy agent zipapp of content ``digest`` (its first 16 hex digits name it)."""
    return f"{agent_dir}/agent-{digest[:16]}.pyz"


@dataclass(frozen=True)
class ServiceLayout:
    service: str
    root: str = ROOT
    config_root: str = CONFIG_ROOT
    units_dir: str = UNITS_DIR

    @property
    def service_dir(self) -> Path:
        return Path(self.root) / self.service

    @property
    def artifacts_dir(self) -> Path:
        return self.service_dir / "artifacts"

    def artifact(self, digest: str, suffix: str) -> Path:
        return self.artifacts_dir / f"{digest}{suffix}"

    @property
    def releases_dir(self) -> Path:
        return self.service_dir / "releases"

    def release_dir(self, files_release: int) -> Path:
        return self.releases_dir / str(files_release)

    @property
    def current_dir(self) -> Path:
        return self.service_dir / "current"

    def current_link(self, instance: str) -> Path:
        return self.current_dir / instance

    @property
    def config_dir(self) -> Path:
        return Path(self.config_root) / self.service

    @property
    def definitions_root(self) -> Path:
        return self.config_dir / "releases"

    def definitions_dir(self, release: int) -> Path:
        return self.definitions_root / str(release)

    def definition_file(self, release: int, instance: str) -> Path:
        return self.definitions_dir(release) / f"{instance}.json"

    def env_file(self, instance: str) -> Path:
        return self.config_dir / f"{instance}.env"

    def state_file(self, instance: str) -> Path:
        return self.config_dir / f"{instance}.state"

    def lock_file(self, instance: str) -> Path:
        return self.config_dir / f".{instance}.lock"

    @property
    def token_file(self) -> Path:
        return self.config_dir / "consul.token"

    @staticmethod
    def unit_name(instance: str) -> str:
        return f"moorage-{instance}.service"

    def unit_file(self, instance: str) -> Path:
        return Path(self.units_dir) / self.unit_name(instance)

    def wants_link(self, instance: str) -> Path:
        return Path(self.units_dir) / "multi-user.target.wants" / self.unit_name(instance)

    @staticmethod
    def container_name(instance: str) -> str:
        return f"moorage-{instance}"

    def instances_with_state(self) -> list[str]:
        """The instances of this service that ran a release on this host (they have a state file)."""
        if not self.config_dir.is_dir():
            return []
        return sorted(path.name.removesuffix(".state") for path in self.config_dir.glob("*.state"))
