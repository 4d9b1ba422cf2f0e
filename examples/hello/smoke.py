"""One request through NGINX to a deployed service, as a user would send it; prints the answer.

    .venv/bin/python examples/hello/smoke.py [SPEC] [-i INVENTORY]

Sends GET to the first lb host of the inventory (default: the running lab's) with the ``Host``
header of the spec's first route, prints the status and body, and exits 1 unless it was a 2xx.
"""

from __future__ import annotations

import argparse
import sys
import urllib.error
import urllib.request
from pathlib import Path

from moorage.commands.options import chosen_inventory
from moorage.errors import MoorageError
from moorage.inventory import load_inventory
from moorage.spec.loader import load_spec


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec", type=Path, nargs="?", default=Path(__file__).parent / "moorage.yml")
    parser.add_argument("-i", "--inventory", type=Path, default=None)
    arguments = parser.parse_args()
    try:
        route = load_spec(arguments.spec).model.spec.routes[0]
        lb = load_inventory(chosen_inventory(arguments.inventory)).hosts("lb")[0]
    except MoorageError as error:
        print(f"smoke.py: {error}", file=sys.stderr)
        return 2
    request = urllib.request.Request(f"http://{lb.address}{route.path}", headers={"Host": route.host})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            status, body = answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        status, body = error.code, error.read().decode()
    print(f"GET http://{route.host}{route.path} via {lb.name} ({lb.address}): {status} {body.strip()}")
    return 0 if 200 <= status < 300 else 1


if __name__ == "__main__":
    sys.exit(main())
