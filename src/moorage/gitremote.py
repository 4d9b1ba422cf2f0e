"""A git remote whose push deploys a service: the way Heroku, Dokku and Kamal users ship with ``git push``.

``moorage remote add SERVICE`` makes a bare repository (``STATE_ROOT/remotes/SERVICE.git``, from
``state_paths``) and writes its ``pre-receive`` hook. What a push deploys is recorded in the
repository's own git config (``moorage.*``), so the hook needs nothing else: the service, the
deploy branch, the spec file's path in the repository, the inventory, the moorage executable, the
state root, how long to wait for another deploy's lock and, optionally, the secrets vault and the
vault password file that opens the site's secrets. A push over SSH runs the hook in a fresh login
session (no ``MOORAGE_*`` or ``ANSIBLE_VAULT_PASSWORD_FILE`` of the person who added the remote, a
minimal PATH), so what the deploy needs is recorded, not inherited.

The hook is a pre-receive hook, not a post-receive one: git runs it after the pushed objects
arrived but before it moves any ref, and a non-zero exit rejects the whole push. So a push whose
deploy fails leaves the branch where it was, the pusher sees ``! [remote rejected]`` and a
non-zero exit, and the previous release keeps serving (the rollout reverted it). What the hook
(and the deploy it runs) prints, git relays to the pusher as ``remote:`` lines while it runs.

:func:`receive` is what the hook runs (``moorage remote receive``): for the deploy branch it
extracts the pushed commit (``git archive``) into a temporary directory and runs ``moorage
deploy`` on its spec file with version = the short commit id, note = the commit's subject and
commit = the full id. Other refs are accepted without a deploy. One push deploys at a time: a
second push of the deploy branch while one deploys is refused at once, naming the push that
holds the repository's lock (as ``moorage deploy`` refuses a concurrent deploy, exit 3).
"""

from __future__ import annotations

import fcntl
import getpass
import ipaddress
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import tarfile
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from moorage import state_paths
from moorage.deploy.releases import who
from moorage.errors import BadInput, Locked, MoorageError
from moorage.spec.loader import load_spec
from moorage.spec.model import DNS_LABEL

ZERO_ID = "0" * 40
HOOK = "pre-receive"
LOCK_FILE = "moorage-push.lock"
HOOK_HEADER = "# Written by `moorage remote add`; running it again rewrites this file."
HOST_NAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$"
)
USER_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}$")


@dataclass(frozen=True)
class RemoteSettings:
    """What a push to the remote deploys: kept in the bare repository's git config (``moorage.*``)."""

    service: str
    branch: str
    spec: str  # the spec file's path inside the pushed tree
    inventory: Path
    executable: Path  # the moorage that runs the hook and the deploy
    state_root: Path  # MOORAGE_STATE_DIR for the deploy (the platform's secrets live under it)
    lock_wait: str = "0s"
    secrets: Path | None = None  # --secrets: the service's secret values
    vault_password_file: Path | None = None  # opens --secrets and the site's vault file (none needed for a lab's inventory)

    def config(self) -> dict[str, str]:
        """The ``moorage.*`` keys; an optional one that is None is absent (:data:`OPTIONAL_KEYS`)."""
        values = {
            "service": self.service,
            "branch": self.branch,
            "spec": self.spec,
            "inventory": str(self.inventory),
            "executable": str(self.executable),
            "stateDir": str(self.state_root),
            "lockWait": self.lock_wait,
        }
        if self.secrets is not None:
            values["secrets"] = str(self.secrets)
        if self.vault_password_file is not None:
            values["vaultPasswordFile"] = str(self.vault_password_file)
        return values


OPTIONAL_KEYS = ("secrets", "vaultPasswordFile")


@dataclass(frozen=True)
class SshAddress:
    """How a developer's git reaches this controller over SSH: ``--ssh-host [USER@]HOST[:PORT]``.

    The user defaults to the one running ``remote add`` (the one whose login runs the hook), the
    host to this host's FQDN, the port to SSH's own (22, left out of the URL). An IPv6 address is
    written in brackets, ``[::1]:2222``, as in a URL.
    """

    host: str
    user: str
    port: int | None = None

    @classmethod
    def here(cls) -> SshAddress:
        fqdn = socket.getfqdn()
        return cls(socket.gethostname() if fqdn.startswith("localhost") else fqdn, getpass.getuser())

    @classmethod
    def parse(cls, text: str) -> SshAddress:
        def bad(why: str) -> BadInput:
            return BadInput(f"--ssh-host {text!r}: {why} (expected [USER@]HOST[:PORT], e.g. git@deploy.example.org:2222)")

        user, at, rest = text.rpartition("@")
        if at and not USER_NAME.match(user):
            raise bad(f"{user!r} is not a user name")
        port_text = None
        if rest.startswith("["):
            host, bracket, after = rest[1:].partition("]")
            if not bracket or not _is_ipv6(host):
                raise bad("a bracketed host is an IPv6 address, e.g. [2001:db8::1]")
            if after:
                if not after.startswith(":"):
                    raise bad(f"unexpected {after!r} after the address")
                port_text = after[1:]
        elif rest.count(":") > 1:
            raise bad("write an IPv6 address in brackets, e.g. [2001:db8::1]:2222")
        else:
            host, colon, port_text_or_empty = rest.partition(":")
            port_text = port_text_or_empty if colon else None
            if not HOST_NAME.match(host):
                raise bad(f"{host!r} is not a host name or address")
        port = None
        if port_text is not None:
            if not (port_text.isascii() and port_text.isdigit() and 1 <= int(port_text) <= 65535):
                raise bad(f"port {port_text!r} is not a number from 1 to 65535")
            port = int(port_text)
        return cls(host, user if at else getpass.getuser(), port)

    def url(self, path: Path) -> str:
        """``ssh://USER@HOST[:PORT]/PATH`` (git's URL form that can carry a port)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = "" if self.port is None else f":{self.port}"
        return f"ssh://{self.user}@{host}{port}{path}"


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class Remote:
    path: Path
    settings: RemoteSettings
    ssh_url: str

    def as_dict(self) -> dict[str, object]:
        return {
            "service": self.settings.service,
            "path": str(self.path),
            "urls": [str(self.path), self.ssh_url],
            "branch": self.settings.branch,
            "spec": self.settings.spec,
            "inventory": str(self.settings.inventory),
            "hook": str(self.path / "hooks" / HOOK),
            "vault_password_file": None if self.settings.vault_password_file is None else str(self.settings.vault_password_file),
        }


class PushRejected(MoorageError):
    """The push's deploy failed (or could not start): the hook exits non-zero and git rejects the push."""


def _git(git_dir: Path, *args: str, check: bool = True) -> str:
    try:
        done = subprocess.run(["git", f"--git-dir={git_dir}", *args], capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise MoorageError("git is not installed on this controller") from None
    if check and done.returncode != 0:
        raise MoorageError(f"git {' '.join(args)}: {done.stderr.strip() or f'exit {done.returncode}'}")
    return done.stdout.strip()


def repository_path(service: str, root: Path | None = None) -> Path:
    return (root or state_paths.remotes_dir()) / f"{service}.git"


def hook_script(executable: Path) -> str:
    return (
        "#!/bin/sh\n"
        f"{HOOK_HEADER}\n"
        "# pre-receive: runs before git moves any ref, so a failed deploy rejects the push and the branch stays.\n"
        f"exec {shlex.quote(str(executable))} remote receive\n"
    )


def ssh_url(path: Path, address: SshAddress | None = None) -> str:
    """``ssh://USER@HOST[:PORT]/PATH``: ``--ssh-host``, else this host's FQDN (its hostname when that is only localhost)."""
    return (address or SshAddress.here()).url(path)


def add(settings: RemoteSettings, root: Path | None = None, ssh_address: SshAddress | None = None) -> Remote:
    """Create (or keep) the bare repository, record the settings in its config and (re)write its hook."""
    if not re.match(DNS_LABEL, settings.service) or not 2 <= len(settings.service) <= 63:
        raise BadInput(f"{settings.service!r}: a service name is an RFC 1123 label of 2-63 characters (a-z, 0-9, -)")
    path = repository_path(settings.service, root)
    if path.exists() and not (path / "HEAD").is_file():
        raise BadInput(f"{path} exists and is not a bare git repository: remove it or choose another --root")
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        _git(path, "init", "--quiet", "--bare", f"--initial-branch={settings.branch}", str(path))
    values = settings.config()
    for key, value in values.items():
        _git(path, "config", f"moorage.{key}", value)
    for key in OPTIONAL_KEYS:
        if key not in values:
            _git(path, "config", "--unset-all", f"moorage.{key}", check=False)
    hook = path / "hooks" / HOOK
    hook.parent.mkdir(exist_ok=True)
    hook.write_text(hook_script(settings.executable))
    hook.chmod(0o755)
    return Remote(path, settings, ssh_url(path, ssh_address))


def read_settings(git_dir: Path) -> RemoteSettings:
    """The settings ``remote add`` recorded in a bare repository's config."""

    def value(key: str) -> str | None:
        return _git(git_dir, "config", "--get", f"moorage.{key}", check=False) or None

    service, inventory, executable = value("service"), value("inventory"), value("executable")
    if service is None or inventory is None or executable is None:
        raise BadInput(f"{git_dir}: not a repository made by `moorage remote add` (no moorage.service in its config)")
    secrets, password = value("secrets"), value("vaultPasswordFile")
    return RemoteSettings(
        service=service,
        branch=value("branch") or "main",
        spec=value("spec") or "moorage.yml",
        inventory=Path(inventory),
        executable=Path(executable),
        state_root=Path(value("stateDir") or state_paths.state_root()),
        lock_wait=value("lockWait") or "0s",
        secrets=None if secrets is None else Path(secrets),
        vault_password_file=None if password is None else Path(password),
    )


def list_remotes(root: Path | None = None, ssh_address: SshAddress | None = None) -> list[Remote]:
    directory = root or state_paths.remotes_dir()
    if not directory.is_dir():
        return []
    found = []
    for path in sorted(directory.glob("*.git")):
        try:
            found.append(Remote(path, read_settings(path), ssh_url(path, ssh_address)))
        except MoorageError:
            continue  # a repository moorage did not make
    return found


def remove(service: str, root: Path | None = None) -> Path:
    """Delete the bare repository (its pushed history goes with it; releases and instances stay)."""
    path = repository_path(service, root)
    if not path.exists():
        raise BadInput(f"no remote for {service!r} (looked for {path})")
    read_settings(path)  # only a repository moorage made
    shutil.rmtree(path)
    return path


# --- The hook: `moorage remote receive` -------------------------------------------------------


@dataclass(frozen=True)
class RefUpdate:
    old: str
    new: str
    ref: str


def parse_updates(lines: Iterable[str]) -> list[RefUpdate]:
    """pre-receive's stdin: one ``OLD NEW REF`` line per pushed ref."""
    updates = []
    for line in lines:
        parts = line.split()
        if len(parts) != 3:
            raise BadInput(f"unexpected pre-receive line {line.strip()!r} (expected OLD NEW REF)")
        updates.append(RefUpdate(*parts))
    return updates


def receive(git_dir: Path, lines: Iterable[str], out: TextIO) -> None:
    """Deploy the deploy branch's pushed commit; accept other refs. Raises (so the push is rejected) when the deploy fails."""
    settings = read_settings(git_dir)
    deploy_ref = f"refs/heads/{settings.branch}"
    for update in parse_updates(lines):
        if update.ref != deploy_ref:
            _say(out, f"{update.ref}: not the deploy branch ({settings.branch}): accepted, nothing deployed")
        elif update.new == ZERO_ID:
            _say(out, f"{settings.branch} deleted: nothing deployed, the running release of {settings.service} stays")
        else:
            with _push_lock(git_dir, settings, update):
                _deploy_commit(git_dir, settings, update, out)


def _say(out: TextIO, line: str) -> None:
    _write(out, f"moorage: {line}\n")


def _write(out: TextIO, text: str) -> None:
    """To the pusher (git relays it as ``remote:`` lines); a pusher who left makes it a no-op."""
    try:
        out.write(text)
        out.flush()
    except OSError:  # BrokenPipeError: the pusher left
        pass


def _pusher() -> str:
    client = os.environ.get("SSH_CLIENT", "").split()
    return f"{who()} (over SSH from {client[0]})" if client else who()


@contextmanager
def _push_lock(git_dir: Path, settings: RemoteSettings, update: RefUpdate) -> Iterator[None]:
    """One deploying push per repository: a second is refused at once, naming the first (exit 3)."""
    with (git_dir / LOCK_FILE).open("a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "another push"
            raise Locked(
                f"{settings.service}: {holder} is deploying; this push is refused (nothing changed): push again when it is done"
            ) from None
        short = _git(git_dir, "rev-parse", "--short", update.new)
        since = datetime.now(UTC).isoformat(timespec="seconds")
        lock.seek(0)
        lock.truncate()
        lock.write(f"the push of {short} by {_pusher()} since {since}\n")
        lock.flush()
        try:
            current = _git(git_dir, "rev-parse", "--verify", "--quiet", f"{update.ref}^{{commit}}", check=False) or ZERO_ID
            if current != update.old:
                raise PushRejected(
                    f"{settings.branch} moved to {current[:12]} since this push began (another push landed): fetch and push again"
                )
            yield
        finally:
            lock.seek(0)
            lock.truncate()


def _deploy_commit(git_dir: Path, settings: RemoteSettings, update: RefUpdate, out: TextIO) -> None:
    short = _git(git_dir, "rev-parse", "--short", update.new)
    subject = _git(git_dir, "log", "-1", "--format=%s", update.new)
    _say(out, f"deploying {settings.service} version {short} ({subject!r}) from {settings.branch}")
    with tempfile.TemporaryDirectory(prefix=f"moorage-push-{settings.service}-") as checkout:
        tree = Path(checkout)
        _extract(git_dir, update.new, tree)
        spec = tree / settings.spec
        if not spec.is_file():
            raise PushRejected(f"{short}: no {settings.spec} in the pushed commit (the spec this remote deploys, moorage.spec)")
        named = load_spec(spec).model.metadata.name
        if named != settings.service:
            raise PushRejected(f"{short}: {settings.spec} deploys service {named!r}, but this remote is {settings.service!r}'s")
        returncode = _run_to_the_end(
            [str(settings.executable), "deploy", str(spec), *_deploy_options(settings, short, subject, update.new)],
            _deploy_environment(settings),
            out,
        )
    if returncode != 0:
        failed = PushRejected(
            f"the deploy of {settings.service} version {short} failed (exit {returncode}): push rejected, "
            f"{settings.branch} stays where it was and the previous release keeps serving"
        )
        failed.exit_code = returncode
        raise failed
    _say(out, f"{settings.service} version {short} deployed")


def _run_to_the_end(command: list[str], environment: dict[str, str], out: TextIO) -> int:
    """Run the deploy to its end, relaying its lines to the pusher while the pusher is there.

    A pusher who presses Ctrl-C or loses the connection does not stop a rollout halfway: the deploy
    runs in a session of its own (no terminal's signals reach it), the hook ignores SIGINT, SIGHUP
    and SIGPIPE while it runs and keeps reading its output when nobody listens any more, so the
    deploy finishes (or reverts) as it would have. The branch then does not move (git is gone).
    """
    ignored = (signal.SIGINT, signal.SIGHUP, signal.SIGPIPE)
    previous = {number: signal.signal(number, signal.SIG_IGN) for number in ignored}
    try:
        with subprocess.Popen(
            command,
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        ) as deploy:
            assert deploy.stdout is not None
            for line in deploy.stdout:
                _write(out, line.decode(errors="replace"))
        return deploy.returncode
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def _deploy_options(settings: RemoteSettings, short: str, subject: str, commit: str) -> list[str]:
    options = ["-i", str(settings.inventory), "--version", short, "--note", subject, "--commit", commit]
    options += ["--lock-wait", settings.lock_wait]
    if settings.secrets is not None:
        options += ["--secrets", str(settings.secrets)]
    if settings.vault_password_file is not None:
        options += ["--vault-password-file", str(settings.vault_password_file)]
    return options


def _deploy_environment(settings: RemoteSettings) -> dict[str, str]:
    """The hook's environment without git's (quarantine, GIT_DIR), with the recorded state root and moorage's bin first on PATH."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith("GIT_")}
    environment["MOORAGE_STATE_DIR"] = str(settings.state_root)
    environment["PATH"] = os.pathsep.join([str(settings.executable.parent), environment.get("PATH", os.defpath)])
    return environment


def _extract(git_dir: Path, commit: str, into: Path) -> None:
    """The commit's tree as files (``git archive``, read while git still holds the pushed objects in quarantine)."""
    with subprocess.Popen(["git", f"--git-dir={git_dir}", "archive", "--format=tar", commit], stdout=subprocess.PIPE) as archive:
        assert archive.stdout is not None
        with tarfile.open(fileobj=archive.stdout, mode="r|") as tar:
            tar.extractall(into, filter="data")
    if archive.returncode != 0:
        raise PushRejected(f"git archive {commit[:12]} failed (exit {archive.returncode})")
