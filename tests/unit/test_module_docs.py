"""The collection's modules document exactly the options they take, as ``ansible-doc`` shows them.

The shared options (where a service lives, how Consul is reached) are documented once, in
plugins/doc_fragments/host_agent.py, and declared once, in moorage.agents.layout: this test
reads the documentation the way a user does (``ansible-doc --json``, fragment merged) and
compares it with each module's argument spec (names, types, defaults, choices).
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from typing import Any

import pytest

from moorage.paths import collections_dir, collections_search_path

MODULES = ("instance", "platform_state", "release")


def documented_options(module: str) -> dict[str, Any]:
    env = {**os.environ, "ANSIBLE_COLLECTIONS_PATH": collections_search_path()}
    shown = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "ansible-doc"), "--json", f"moorage.platform.{module}"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return json.loads(shown.stdout)[f"moorage.platform.{module}"]["doc"]["options"]


def argument_spec(module: str) -> dict[str, Any]:
    if str(collections_dir()) not in sys.path:
        sys.path.insert(0, str(collections_dir()))
    return importlib.import_module(f"ansible_collections.moorage.platform.plugins.modules.{module}").ARGUMENT_SPEC


@pytest.mark.parametrize("module", MODULES)
def test_every_option_is_documented_as_it_is_declared(module: str) -> None:
    documented, declared = documented_options(module), argument_spec(module)
    assert sorted(documented) == sorted(declared)
    for name, spec in declared.items():
        shown = documented[name]
        assert shown.get("type", "str") == spec.get("type", "str"), name
        assert shown.get("default") == spec.get("default"), name
        assert shown.get("choices") == spec.get("choices"), name
        assert bool(shown.get("required")) == bool(spec.get("required")), name
