"""NGINX's upstream members, changed in memory without a reload: a Lua balancer and its feed.

The way the Kubernetes ingress-nginx controller applies endpoint changes, with Debian's NGINX Lua
module (``libnginx-mod-http-lua``, ``lua-resty-core``): every routed service has an ``upstream``
whose ``balancer_by_lua`` picks a server from a shared memory zone, and the watcher writes that
zone through a feed endpoint NGINX serves on loopback only. Adding, removing, passing or failing
an instance is one POST; a reload is needed only when hosts, routes or NGINX settings change.

The state: one line per routed service, ``SERVICE ADDRESS:PORT ...`` (sorted; a service alone on
its line has no server). The feed replaces the whole state. Each worker keeps the servers it
parsed and re-reads a service's line only when that service's version in the zone changed, so a
fed state is in force for the next request of every worker. Round robin per worker; a failed
attempt is retried on the next server (``proxy_next_upstream``, at most
``proxy_next_upstream_tries``). A route whose service has no server answers
``503 no healthy instance for ROUTE`` (from the access phase, so no request reaches the
placeholder server).

Safety:

* The feed listens on a loopback address only and wants ``X-Moorage-Key``: a key in a root-only
  file that NGINX's master (root) reads when it loads its config, and the watcher (root) sends.
* NGINX's shared memory is lost when NGINX restarts (not on a reload): the watcher writes the
  state to ``state_file`` before each POST, and NGINX loads that file when it starts with an
  empty zone, so a restarted NGINX routes as before at once; the watcher also compares the fed
  state with what NGINX reports (``GET``) and feeds again on a difference.
* The config names its own digest (``config_id``); ``GET`` answers with it, so the watcher can tell
  when a reload has taken effect.
"""

from __future__ import annotations

import http.client
import ipaddress
import os
import secrets
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

SHARED_DICT = "moorage_backends"
LUA_GLOBAL = "moorage_balancer"
KEY_HEADER = "X-Moorage-Key"
FEED_PATH = "/backends"
FEED_TIMEOUT_SECONDS = 10.0


class BalancerError(Exception):
    """The feed could not be reached or refused the state."""


@dataclass(frozen=True)
class BalancerOptions:
    feed_listen: str = "127.0.0.1:10247"  # loopback address:port of the feed endpoint
    key_file: str = "/etc/moorage/ingress/balancer.key"
    state_file: str = "/var/lib/moorage/ingress/backends.state"
    shared_dict_size: str = "8m"
    max_tries: int = 3  # proxy_next_upstream_tries


def is_loopback_listen(listen: str) -> bool:
    """``127.0.0.1:PORT``, ``[::1]:PORT`` and the like: an address no other host can reach."""
    host, _, port = listen.rpartition(":")
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback and 0 < int(port) < 65536
    except ValueError:
        return False


def is_ip_backend(backend: str) -> bool:
    """``ADDRESS:PORT`` with an IP address (the balancer does not resolve names)."""
    host, _, port = backend.rpartition(":")
    try:
        ipaddress.ip_address(host[1:-1] if host.startswith("[") and host.endswith("]") else host)
    except ValueError:
        return False
    return port.isdigit() and 0 < int(port) < 65536


def state_text(backends: Mapping[str, Iterable[str]]) -> str:
    """The state as the feed takes it and NGINX reports it: a line per service, sorted."""
    lines = []
    for service in sorted(backends):
        servers = sorted(set(backends[service]))
        lines.append(" ".join([service, *servers]))
    return "".join(f"{line}\n" for line in lines)


def ensure_key(path: Path) -> str:
    """The feed's key: read from ``path``, created there (0600) when missing.

    Two processes that start together (the daemon and a ``--once`` run) end with the same key:
    the file is linked into place only when absent, and whoever loses reads the winner's.
    """
    try:
        key = path.read_text().strip()
    except FileNotFoundError:
        key = ""
    if key:
        return key
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = written_beside(path, secrets.token_urlsafe(32) + "\n", 0o600)
    try:
        os.link(temporary, path)
    except FileExistsError:
        pass
    finally:
        temporary.unlink()
    return path.read_text().strip()


def written_beside(path: Path, text: str, mode: int) -> Path:
    """A new file of this process's own, in ``path``'s directory, holding ``text`` (for an atomic swap)."""
    descriptor, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.fchmod(descriptor, mode)
    with os.fdopen(descriptor, "w") as file:
        file.write(text)
    return Path(name)


def write_state_file(path: Path, text: str) -> None:
    """The state NGINX loads when it starts with empty shared memory (atomic replace)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.replace(written_beside(path, text, 0o644), path)


@dataclass(frozen=True)
class Reported:
    """What NGINX's balancer holds: the config it runs and the state."""

    config_id: str
    state: str


class BalancerFeed:
    """The watcher's side of the feed endpoint."""

    def __init__(self, options: BalancerOptions, key: str) -> None:
        host, _, port = options.feed_listen.rpartition(":")
        self.host, self.port = host.strip("[]"), int(port)
        self.key = key

    def _call(self, method: str, body: str | None) -> str:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=FEED_TIMEOUT_SECONDS)
        try:
            headers = {KEY_HEADER: self.key, "Content-Type": "text/plain"}
            connection.request(method, FEED_PATH, body=None if body is None else body.encode(), headers=headers)
            response = connection.getresponse()
            text = response.read().decode(errors="replace")
        except (OSError, http.client.HTTPException) as err:
            raise BalancerError(f"nginx balancer feed {self.host}:{self.port}: {err}") from err
        finally:
            connection.close()
        if response.status != 200:
            raise BalancerError(f"nginx balancer feed {self.host}:{self.port}: HTTP {response.status} {text.strip()[:200]}")
        return text

    def feed(self, text: str) -> None:
        """Replace the balancer's state (in force for the next request of every worker once this returns)."""
        self._call("POST", text)

    def report(self) -> Reported:
        first, _, rest = self._call("GET", None).partition("\n")
        if not first.startswith("config "):
            raise BalancerError(f"nginx balancer feed {self.host}:{self.port}: unexpected answer {first[:80]!r}")
        return Reported(first.removeprefix("config ").strip(), rest)


def lua_string(text: str) -> str:
    """A Lua string literal (quotes and backslashes escaped)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


# The module NGINX's master loads with its config (init_by_lua_block). NGINX's Lua block parser
# reads it, so it stays plain Lua: no ${...}; @NAME@ marks what render() fills in.
LUA_MODULE = """\
local dict = ngx.shared.@DICT@
local balancer = require "ngx.balancer"
local CONFIG_ID = @CONFIG_ID@
local MAX_TRIES = @MAX_TRIES@
local M = {}

local function read_file(path)
    local file = io.open(path, "rb")
    if not file then return nil end
    local text = file:read("*a")
    file:close()
    return text
end

local key = (read_file(@KEY_FILE@) or ""):match("^%s*(.-)%s*$")
if key == "" then
    error("moorage-ingress: no balancer key in " .. @KEY_FILE@)
end

local function names()
    local list = {}
    for name in (dict:get("services") or ""):gmatch("%S+") do list[#list + 1] = name end
    return list
end

-- Replace the whole state with TEXT's lines ("SERVICE ADDRESS:PORT ..."); nil and why on failure.
local function store(text)
    local seen, order = {}, {}
    for line in text:gmatch("[^\\n]+") do
        local service, servers = line:match("^%s*(%S+)%s*(.-)%s*$")
        if service and not seen[service] then
            seen[service] = true
            order[#order + 1] = service
            if dict:get("b:" .. service) ~= servers then
                local ok, err, forcible = dict:set("b:" .. service, servers)
                if not ok or forcible then return nil, "shared dict full: " .. (err or "entries evicted") end
                dict:set("v:" .. service, dict:incr("generation", 1, 0))
            end
        end
    end
    for _, service in ipairs(names()) do
        if not seen[service] then
            dict:delete("b:" .. service)
            dict:set("v:" .. service, dict:incr("generation", 1, 0))
        end
    end
    table.sort(order)
    local ok, err = dict:set("services", table.concat(order, " "))
    if not ok then return nil, err end
    return true
end

local function report()
    local lines = { "config " .. CONFIG_ID }
    local list = names()
    table.sort(list)
    for _, service in ipairs(list) do
        local servers = dict:get("b:" .. service) or ""
        lines[#lines + 1] = servers == "" and service or (service .. " " .. servers)
    end
    return table.concat(lines, "\\n") .. "\\n"
end

-- A fresh zone (NGINX started): the state the watcher fed last.
if dict:get("services") == nil then
    local text = read_file(@STATE_FILE@)
    if text then
        local ok, err = store(text)
        if not ok then ngx.log(ngx.ERR, "moorage-ingress: could not load ", @STATE_FILE@, ": ", err) end
    end
end

-- The servers of SERVICE as this worker parsed them, parsed again when the feed changed them.
local cache = {}
local function entry_of(service)
    local version = dict:get("v:" .. service)
    local entry = cache[service]
    if entry == nil or entry.version ~= version then
        local peers = {}
        for word in (dict:get("b:" .. service) or ""):gmatch("%S+") do
            local host, port = word:match("^%[(.+)%]:(%d+)$")
            if not host then host, port = word:match("^([^:]+):(%d+)$") end
            if host then peers[#peers + 1] = { host, tonumber(port) } end
        end
        entry = { version = version, peers = peers, turn = entry and entry.turn or 0 }
        cache[service] = entry
    end
    return entry
end

-- content_by_lua of the feed: GET reports, POST replaces the state.
function M.feed()
    if ngx.var.http_x_moorage_key ~= key then
        return ngx.exit(ngx.HTTP_FORBIDDEN)
    end
    local method = ngx.req.get_method()
    if method == "POST" then
        ngx.req.read_body()
        local ok, err = store(ngx.req.get_body_data() or "")
        if not ok then
            ngx.log(ngx.ERR, "moorage-ingress: ", err)
            ngx.status = ngx.HTTP_INTERNAL_SERVER_ERROR
            ngx.say(err)
            return ngx.exit(ngx.HTTP_OK)
        end
    elseif method ~= "GET" then
        return ngx.exit(ngx.HTTP_NOT_ALLOWED)
    end
    ngx.print(report())
end

-- access_by_lua of a route: 503 when its service has no server, else the servers for balance().
function M.route(service, route)
    local entry = entry_of(service)
    if #entry.peers == 0 then
        local body = "no healthy instance for " .. route .. "\\n"
        ngx.status = ngx.HTTP_SERVICE_UNAVAILABLE
        ngx.header["Content-Type"] = "text/plain"
        ngx.header["Content-Length"] = #body
        ngx.print(body)
        return ngx.exit(ngx.HTTP_OK)
    end
    ngx.ctx.moorage_entry = entry
end

-- balancer_by_lua of a service's upstream: round robin; a retry takes the next server.
function M.balance(service)
    local ctx = ngx.ctx
    local entry = ctx.moorage_entry or entry_of(service)
    local peers = entry.peers
    if #peers == 0 then
        return ngx.exit(ngx.HTTP_SERVICE_UNAVAILABLE)
    end
    local pick = ctx.moorage_pick
    if pick then
        pick = pick % #peers + 1
    else
        entry.turn = entry.turn % #peers + 1
        pick = entry.turn
        if #peers > 1 and MAX_TRIES > 1 then
            balancer.set_more_tries(math.min(#peers, MAX_TRIES) - 1)
        end
    end
    ctx.moorage_pick = pick
    local ok, err = balancer.set_current_peer(peers[pick][1], peers[pick][2])
    if not ok then
        ngx.log(ngx.ERR, "moorage-ingress: ", service, ": ", err)
        return ngx.exit(ngx.HTTP_INTERNAL_SERVER_ERROR)
    end
end

@GLOBAL@ = M
"""


def lua_module(options: BalancerOptions, config_id: str) -> str:
    """The Lua module with this config's paths, limits and id filled in."""
    values = {
        "@DICT@": SHARED_DICT,
        "@CONFIG_ID@": lua_string(config_id),
        "@MAX_TRIES@": str(max(options.max_tries, 1)),
        "@KEY_FILE@": lua_string(options.key_file),
        "@STATE_FILE@": lua_string(options.state_file),
        "@GLOBAL@": LUA_GLOBAL,
    }
    text = LUA_MODULE
    for placeholder, value in values.items():
        text = text.replace(placeholder, value)
    return text
