"""``moorage lab``: real systemd machines (systemd-nspawn) on this host.

The public face for other code: ``up``/``down``/``status``/``stop``/``start`` of the lab named by ``MOORAGE_LAB``,
``ensure_apt_repo()`` (the cached local apt repository, usable without a running lab), and the
paths in ``moorage.lab.paths``.
"""

from moorage.lab.aptrepo import ensure_apt_repo
from moorage.lab.lifecycle import LabStatus, MachineStatus, down, machine_address, start, status, stop, up

__all__ = ["LabStatus", "MachineStatus", "down", "ensure_apt_repo", "machine_address", "start", "status", "stop", "up"]
