# The README's two commands: `make demo` and `make test`. Both set everything up first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Debian packages the project needs on the controller (this host):
#   debootstrap, systemd-container: the lab's machines; iproute2, iptables: its bridge and NAT-free network;
#   apt-utils: apt-ftparchive indexes the lab's local apt repository; openssh-client: Ansible's transport;
#   nginx-light, libnginx-mod-http-lua, lua-resty-core: the ingress watcher's tests run the real nginx (its Lua
#   balancer); wrk: keep-alive load in the e2e tests and bench; docker-compose: `moorage dev` and the
#   Compose render's tests (`docker-compose config` validates without a Docker engine); groovy: groovyc checks the
#   example Jenkinsfile's syntax (no Jenkins server is installable here); openssh-server: the git push e2e test runs
#   its own sshd on 127.0.0.1 to push to `moorage remote add`'s ssh:// URL (the system's daemon is not started).
APT_PACKAGES := debootstrap systemd-container iproute2 dpkg-dev apt-utils openssh-client rsync ca-certificates \
	nginx-light libnginx-mod-http-lua lua-resty-core wrk python3-venv docker-compose groovy openssh-server
# The daemons those packages bring (nginx-light, openssh-server): installed for their binaries, never run as services.
HOST_DAEMONS := nginx.service ssh.service
APT_STAMP := /var/lib/moorage/apt-$(shell echo $(APT_PACKAGES) | md5sum | cut -c1-12).stamp
VENV_STAMP := $(VENV)/.installed-$(shell cat requirements.lock pyproject.toml | md5sum | cut -c1-12)
# What the examples need beyond their tracked files, so each validates in a fresh clone.
EXAMPLE_BUILDS := examples/hello-docker/image.tar

.PHONY: setup lock collection examples demo drill test test-unit test-e2e lint bench clean

setup: $(APT_STAMP) $(VENV_STAMP) examples collection

# The link .ansible/collections/ansible_collections/moorage/platform -> this checkout, so that
# ansible.cfg finds the roles, modules and plugins by FQCN (the moorage CLI makes the same link).
collection: $(VENV_STAMP)
	@$(BIN)/python -c 'from moorage.paths import collections_dir; collections_dir()'

$(APT_STAMP):
	@if [ "$$(id -u)" != 0 ]; then echo "make setup: needs root to install Debian packages ($(APT_PACKAGES))" >&2; exit 1; fi
	DEBIAN_FRONTEND=noninteractive apt-get update -qq
	@# The host needs the binaries only: no package may start its daemon here (policy-rc.d says no), nor
	@# at the next boot (a daemon this rule installed is disabled; one the host had before is left alone).
	printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
	new_daemons=$$(for unit in $(HOST_DAEMONS); do [ -e /lib/systemd/system/$$unit ] || echo $$unit; done); \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(APT_PACKAGES); \
	  status=$$?; rm -f /usr/sbin/policy-rc.d; \
	  for unit in $$new_daemons; do systemctl disable --quiet $$unit 2>/dev/null || true; done; exit $$status
	mkdir -p $(dir $(APT_STAMP)) && touch $@

# Every package from requirements.lock, each checked against its hashes; then moorage itself, editable
# (pip builds it with hatchling, fetched into an isolated build environment).
$(VENV_STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q --require-hashes -r requirements.lock
	$(BIN)/pip install -q --no-deps -e .
	rm -f $(VENV)/.installed-* && touch $@

# requirements.lock from pyproject.toml: [project.dependencies] and the test and dev extras, pinned with
# every file's sha256 for Python 3.11 on x86_64 Linux. uv keeps the pins already in the file unless
# pyproject.toml needs otherwise; LOCK_ARGS=--upgrade (or --upgrade-package NAME) moves them.
lock: $(VENV_STAMP)
	$(BIN)/uv pip compile pyproject.toml --extra test --extra dev --generate-hashes --quiet \
	  --python-version 3.11 --python-platform x86_64-unknown-linux-gnu \
	  --custom-compile-command 'make lock' $(LOCK_ARGS) -o requirements.lock

examples: $(EXAMPLE_BUILDS)

# examples/hello-docker ships its image as a file (the lab has no registry): busybox from the Debian mirror.
examples/hello-docker/image.tar: examples/hello-docker/build_image.py | $(APT_STAMP) $(VENV_STAMP)
	$(BIN)/python examples/hello-docker/build_image.py --download -o $@

# The main job end to end on the lab (4 machines on this host; `moorage lab down` removes them).
demo: setup
	$(BIN)/moorage validate examples/hello/moorage.yml
	$(BIN)/moorage render examples/hello/moorage.yml --target kubernetes --output-dir artifacts/demo/kubernetes
	$(BIN)/moorage lab up --hosts 4
	$(BIN)/moorage platform up
	$(BIN)/moorage deploy examples/hello/moorage.yml --version 1
	$(BIN)/moorage status hello
	@echo; echo "What the demo built, checked as a person would (any failed check fails the demo):"
	$(BIN)/moorage lab check examples/hello/moorage.yml --logs
	@echo; echo "Next, try:"
	@echo "  .venv/bin/moorage status hello"
	@echo "  .venv/bin/moorage deploy examples/hello/moorage.yml --version 2    # a rolling, health-gated change"
	@echo "  .venv/bin/moorage releases hello && .venv/bin/moorage rollback hello"
	@echo "  .venv/bin/moorage remote add hello                                 # then, in the app's git clone: git remote add lab URL; git push lab main"
	@echo "  .venv/bin/moorage lab ssh lab-1"
	@echo "  .venv/bin/moorage lab down                                         # removes the lab's machines"

# The rebuild drill: every service of examples/ on a fresh lab of its own, checked, torn down, timed.
drill: setup
	$(BIN)/moorage drill examples

test: setup lint
	$(BIN)/pytest

test-unit: setup
	$(BIN)/pytest tests/unit

test-e2e: setup
	$(BIN)/pytest tests/e2e

# ruff (lint and format), mypy strict on src/moorage, ansible-lint; `make test` runs it first.
lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/ansible-lint roles playbooks

# bench/run.py: deploy vs floor, no-op deploy, discovery p50/p99, failed requests under load, platform
# moorage vs stock; one table and bench/results.json (docs/performance.md). BENCH_ARGS=--quick: one small lab.
bench: setup
	$(BIN)/python bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) artifacts $(EXAMPLE_BUILDS)
