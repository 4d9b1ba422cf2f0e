"""One rule for routes: what `moorage validate` accepts is exactly what the ingress routes and renders.

The spec model, the registration module and the ingress watcher all take their rules from
``moorage.agents.routes``. These properties hold them to it from both ends: a host and path the
spec model accepts travels as a tag, is read back by the watcher unchanged and rendered into a
config NGINX accepts; a tag the watcher accepts names a route the spec model accepts; a route the
model refuses the watcher ignores, and the other way round.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from ingress_fixtures import LUA_MODULES, NGINX
from pydantic import ValidationError

from moorage.agents import routes
from moorage.agents.balancer import BalancerOptions, ensure_key
from moorage.agents.ingress import routes_by_service
from moorage.agents.render import RenderOptions, RoutedService, render
from moorage.cli import cli
from moorage.spec.model import ServiceSpec

# Labels and segments near the rules' edges: valid ones, and each way of breaking them.
VALID_LABEL = st.from_regex(r"\A[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\Z")
ODD_LABEL = st.one_of(
    st.from_regex(r"\A[a-z0-9]{64,70}\Z"),  # too long
    st.sampled_from(["", "-a", "a-", "A", "a_b", "*", "a*", "é", "a b", "a;b"]),
    st.text(max_size=8),
)
LABEL = st.one_of(VALID_LABEL, VALID_LABEL, VALID_LABEL, ODD_LABEL)
HOST = st.builds(
    lambda wildcard, labels: ("*." if wildcard else "") + ".".join(labels),
    st.booleans(),
    st.lists(LABEL, min_size=1, max_size=5),
)
SEGMENT = st.one_of(
    st.from_regex(r"\A[A-Za-z0-9._~-]{1,12}\Z"),
    st.sampled_from(["", ".", "..", "a;b", "a{b", "%20", "a b", "$x", "é"]),
)
PATH = st.one_of(
    st.just("/"),
    st.builds(
        lambda segments, trailing: "/" + "/".join(segments) + ("/" if trailing else ""),
        st.lists(SEGMENT, min_size=1, max_size=4),
        st.booleans(),
    ),
    st.text(max_size=10),
)


def spec_accepts(host: str, path: str) -> bool:
    """Whether the spec model accepts a route (every other field of the spec is valid)."""
    document: dict[str, Any] = {
        "apiVersion": "moorage/v1",
        "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {"runtime": "systemd", "artifact": "./app", "command": ["app"], "port": 8080, "routes": [{"host": host, "path": path}]},
    }
    try:
        ServiceSpec.model_validate(document)
    except ValidationError as err:
        assert {error["loc"][:3] for error in err.errors()} == {("spec", "routes", 0)}, err
        return False
    return True


def watcher_reads(tag: str) -> routes.Route | None:
    """The route the ingress watcher takes from a service carrying ``tag`` (None: it ignores the tag)."""
    routed, _bad = routes_by_service({"web": ["moorage", tag]})
    return routed["web"][0] if routed else None


def rendered(route: routes.Route) -> str:
    return render([RoutedService("web", (route,), ("127.0.0.1:8080",))], RenderOptions()).text


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(host=HOST, path=PATH)
@example(host="a" * 63 + ".test", path="/")
@example(host="a" * 64 + ".test", path="/")
@example(host="a" * 70 + ".example.test", path="/api")
@example(host=".".join(["a" * 63] * 4), path="/")  # 255 characters
@example(host="*.example.test", path="/v1/~user/a.b")
@example(host="hello.example.test", path="/api/")
def test_the_spec_model_and_the_ingress_accept_the_same_routes(host: str, path: str) -> None:
    accepted_by_spec = spec_accepts(host, path)
    tag = f"{routes.ROUTE_TAG_PREFIX}{host}{path}"

    read = watcher_reads(tag)

    if accepted_by_spec:
        assert read == routes.Route(host, path), tag
        text = rendered(read)
        assert f"    server_name {host};" in text
        assert ("    location / {\n" if path == "/" else f"    location = {path} {{\n") in text
    elif read is not None:
        # The watcher reads hand-written tags leniently (host case, a trailing /): what it routes
        # is then a different, normalised route, and that one the spec accepts.
        assert read != routes.Route(host, path)
        assert spec_accepts(read.host, read.path), read


@settings(max_examples=300)
@given(tag=st.one_of(st.builds(lambda host, path: f"route={host}{path}", HOST, PATH), st.text(max_size=40).map("route=".__add__)))
def test_every_tag_the_ingress_routes_names_a_route_the_spec_accepts(tag: str) -> None:
    read = watcher_reads(tag)

    if read is not None:
        assert spec_accepts(read.host, read.path), tag
        assert read.tag == f"route={read.host}{read.path}"
        assert watcher_reads(read.tag) == read


def test_a_tag_written_by_hand_is_read_leniently_where_the_meaning_is_plain() -> None:
    assert watcher_reads("route=Hello.Example.TEST/api/") == routes.Route("hello.example.test", "/api")
    assert watcher_reads("route=hello.example.test") == routes.Route("hello.example.test", "/")


def test_the_registration_tags_are_the_ones_the_watcher_reads() -> None:
    route = routes.route("hello.example.test", "/api")

    tags = routes.instance_tags([route], metrics=True)

    assert tags == ["moorage", "route=hello.example.test/api", "metrics"]
    assert routes_by_service({"hello": tags}) == ({"hello": (route,)}, [])


@pytest.mark.parametrize(
    ("host", "path", "problem"),
    [
        ("a" * 64 + ".test", "/", "host label 'aaaaaaaaaaaaaaaaaaaaa...' is 64 characters long; a DNS label has at most 63"),
        (".".join(["a" * 50] * 5) + ".test", "/", "host is 259 characters long; a host name has at most 253"),
        ("Hello.test", "/", "host must be a lowercase host name such as hello.example.test, got 'Hello.test'"),
        ("a..test", "/", "host must be a lowercase host name such as hello.example.test, got 'a..test'"),
        ("a.*.test", "/", "host may have '*' only as its whole first label, as in *.example.test"),
        ("-a.test", "/", "host must be a lowercase host name such as hello.example.test, got '-a.test'"),
        ("", "/", "host must be a lowercase host name such as hello.example.test, got ''"),
        ("a.test", "api", "path must start with /"),
        ("a.test", "/api/", "path must not end with / or hold // (write /api: it also serves /api/...)"),
        ("a.test", "/a/../b", "path must not hold . or .. segments"),
        ("a.test", "/a;return", "path segment 'a;return' may hold only letters, digits and - . _ ~"),
    ],
)
def test_each_broken_rule_is_named(host: str, path: str, problem: str) -> None:
    with pytest.raises(routes.InvalidRoute) as refused:
        routes.route(host, path)

    assert str(refused.value) == problem
    if host == host.lower() and path.startswith("/") and not path.endswith("/"):  # else the tag reads as another route
        assert watcher_reads(f"route={host}{path}") is None


def test_moorage_validate_refuses_a_host_label_over_63_characters_in_one_located_line(
    write_spec: Callable[..., Path], valid_spec_text: str
) -> None:
    long_label = "a" * 70
    write_spec(valid_spec_text.replace("hello.example.test", f"{long_label}.example.test"), "long.yml")

    result = CliRunner().invoke(cli, ["validate", "long.yml"])

    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "long.yml:16:14: error: spec.routes[0].host: label 'aaaaaaaaaaaaaaaaaaaaa...' is 70 characters long; a DNS label has at most 63"
    ]


# --- NGINX accepts what is rendered ---------------------------------------------------------------

VALID_HOST = st.builds(
    lambda wildcard, labels: ("*." if wildcard else "") + ".".join(labels), st.booleans(), st.lists(VALID_LABEL, min_size=1, max_size=4)
).filter(lambda host: len(host) <= routes.MAX_HOST_LENGTH)
VALID_PATH = st.one_of(
    st.just("/"),
    st.lists(st.from_regex(r"\A[A-Za-z0-9._~-]{1,12}\Z").filter(lambda s: s not in (".", "..")), min_size=1, max_size=4).map(
        lambda segments: "/" + "/".join(segments)
    ),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(route_list=st.lists(st.builds(routes.route, VALID_HOST, VALID_PATH), min_size=1, max_size=6, unique=True))
def test_nginx_accepts_the_config_rendered_for_any_valid_routes(
    route_list: list[routes.Route], tmp_path_factory: pytest.TempPathFactory
) -> None:
    prefix = tmp_path_factory.mktemp("nginx")
    services = [
        RoutedService(f"svc{number}", (route,), ("127.0.0.1:8080",) if number % 2 else ()) for number, route in enumerate(route_list)
    ]
    balancer = BalancerOptions(key_file=str(prefix / "balancer.key"), state_file=str(prefix / "backends.state"))
    ensure_key(prefix / "balancer.key")  # NGINX's Lua module reads it when it loads the config, also for nginx -t
    (prefix / "routes.conf").write_text(render(services, RenderOptions(listen=("127.0.0.1:18080",), balancer=balancer)).text)
    # Host names up to 253 characters need a bigger bucket than NGINX's default (the role's README says so).
    (prefix / "nginx.conf").write_text(
        f"{LUA_MODULES}\npid {prefix}/nginx.pid;\nerror_log {prefix}/error.log;\nevents {{}}\n"
        f"http {{\n  server_names_hash_bucket_size 512;\n  server_names_hash_max_size 4096;\n  include {prefix}/routes.conf;\n}}\n"
    )

    result = subprocess.run(
        [NGINX, "-t", "-q", "-p", str(prefix), "-c", str(prefix / "nginx.conf")], capture_output=True, text=True, check=False
    )

    assert result.returncode == 0, result.stderr
