"""Route and tag rules: what a route host and path may be, and how a route travels as a Consul tag.

One rule for everyone who handles routes: the spec model (``moorage validate``), the instance
registration module (which writes the tags) and the ingress watcher (which reads them).

A route is a HOST and a PATH prefix. It travels as the Consul tag ``route=HOST/PATH``
(``route=hello.example.test/``, ``route=hello.example.test/api``).

HOST
    DNS labels joined by dots, lowercase: each label 1-63 characters of ``a-z``, ``0-9`` and
    ``-``, not starting or ending with ``-``; the whole name at most 253 characters. The first
    label may be ``*`` (``*.example.test``: every name below it).
PATH
    ``/``, or ``/`` followed by segments joined by ``/``, each of ``A-Z a-z 0-9 - . _ ~`` (the
    URL's unreserved characters, safe to write into an NGINX config unquoted), without an empty
    segment (no trailing ``/``, no ``//``) and without ``.`` or ``..`` segments. A prefix serves
    itself and everything below it: ``/api`` serves ``/api`` and ``/api/v1``, not ``/apiary``.

Standard library only; no import of another moorage module (this file is also a module_utils
of the Ansible collection).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

ROUTE_TAG_PREFIX = "route="
MOORAGE_TAG = "moorage"  # on every instance moorage registers
METRICS_TAG = "metrics"  # Prometheus scrapes services with this tag (the prometheus role's default)

MAX_HOST_LENGTH = 253
MAX_LABEL_LENGTH = 63
WILDCARD_LABEL = "*"
_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$")
_SEGMENT = re.compile(r"^[A-Za-z0-9._~-]+$")

# The same rules as one pattern each, for JSON Schema (editors); the functions below are the rule.
HOST_PATTERN = r"^(\*\.)?([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\.)*[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
PATH_PATTERN = r"^/([A-Za-z0-9._~-]+(/[A-Za-z0-9._~-]+)*)?$"


@dataclass(frozen=True, order=True)
class Route:
    """A valid route (build it with ``route`` or ``parse_route_tag``)."""

    host: str
    path: str

    def __str__(self) -> str:
        return f"{self.host}{self.path}"

    @property
    def tag(self) -> str:
        """The Consul tag that carries it: ``route=HOST/PATH``."""
        return f"{ROUTE_TAG_PREFIX}{self}"


class InvalidRoute(ValueError):
    """A route host or path breaks the rules; the message says which rule, in one line."""


def host_problem(host: str) -> str | None:
    """Why ``host`` is no valid route host, or None when it is one."""
    if len(host) > MAX_HOST_LENGTH:
        return f"is {len(host)} characters long; a host name has at most {MAX_HOST_LENGTH}"
    labels = host.split(".")
    for position, label in enumerate(labels):
        if label == WILDCARD_LABEL and position == 0 and len(labels) > 1:
            continue
        if len(label) > MAX_LABEL_LENGTH:
            return f"label {_shorten(label)!r} is {len(label)} characters long; a DNS label has at most {MAX_LABEL_LENGTH}"
        if label and WILDCARD_LABEL in label:
            return "may have '*' only as its whole first label, as in *.example.test"
        if not _LABEL.match(label):
            return f"must be a lowercase host name such as hello.example.test, got {_shorten(host, 60)!r}"
    return None


def path_problem(path: str) -> str | None:
    """Why ``path`` is no valid route path, or None when it is one."""
    if not path.startswith("/"):
        return "must start with /"
    if path == "/":
        return None
    for segment in path[1:].split("/"):
        if not segment:
            return "must not end with / or hold // (write /api: it also serves /api/...)"
        if segment in (".", ".."):
            return "must not hold . or .. segments"
        if not _SEGMENT.match(segment):
            return f"segment {_shorten(segment)!r} may hold only letters, digits and - . _ ~"
    return None


def route(host: str, path: str = "/") -> Route:
    """The route for ``host`` and ``path``; InvalidRoute names the rule either breaks."""
    problem = host_problem(host)
    if problem:
        raise InvalidRoute(f"host {problem}")
    problem = path_problem(path)
    if problem:
        raise InvalidRoute(f"path {problem}")
    return Route(host, path)


def parse_route_tag(tag: str) -> Route:
    """The route a ``route=HOST/PATH`` tag asks for; InvalidRoute says why a tag asks for none.

    A hand-written tag is read leniently where the meaning is plain: the host's case does not
    matter and a trailing ``/`` of the path is dropped (``route=Hello.Test/api/`` is
    ``hello.test/api``); a tag without a path routes ``/``.
    """
    if not tag.startswith(ROUTE_TAG_PREFIX):
        raise InvalidRoute(f"does not start with {ROUTE_TAG_PREFIX}")
    host, slash, rest = tag[len(ROUTE_TAG_PREFIX) :].partition("/")
    path = "/" + rest.rstrip("/") if slash else "/"
    return route(host.lower(), path)


def is_route_tag(tag: str) -> bool:
    return tag.startswith(ROUTE_TAG_PREFIX)


def instance_tags(routes: Iterable[Route], *, metrics: bool) -> list[str]:
    """The tags moorage registers an instance with: ``moorage``, one per route, ``metrics`` when scraped."""
    return [MOORAGE_TAG, *(item.tag for item in routes), *([METRICS_TAG] if metrics else [])]


def _shorten(text: str, limit: int = 24) -> str:
    return text if len(text) <= limit else f"{text[: limit - 3]}..."
