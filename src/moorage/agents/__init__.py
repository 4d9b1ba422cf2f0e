"""moorage's host agents: small programs the platform's roles install on the hosts.

``ingress`` (the NGINX ingress watcher, lb hosts), ``prometheus-targets`` (the Consul target
bridge for Prometheus, monitoring hosts), ``instance`` (the deploy agent: switch a host's
instances to a prepared release behind the health gate, or remove them; ``prepare`` puts a
release on a host) and ``health-gate`` (the gate alone, by hand). They share one Consul client
(``consul``) and one set of route rules (``routes``), which the spec model uses too.

Rules for this package, so it runs on any Debian host as it is:

* Python standard library only (a test runs every agent under ``python3 -I``);
* relative imports between its modules, and none of the rest of moorage: the roles copy this
  directory alone, and the deploy agent's modules are also module_utils of the Ansible
  collection (``plugins/module_utils`` links to them), so the ``moorage.platform.release`` and
  ``moorage.platform.instance`` modules run the very same code.

On a host (the ``agent`` role) the package sits at ``DIR/moorage/agents`` next to a copy of
``__main__.py`` at ``DIR/__main__.py``, and runs as ``/usr/bin/python3 -I DIR AGENT [ARGS]``:
Python puts a directory it runs on ``sys.path`` even in isolated mode, and nothing else is.
The deploy agent comes as one zipapp of the same files (the service role ships it, ``moorage
deploy`` runs it over SSH): ``python3 -I agent-DIGEST.pyz instance ...``. Here, ``python -m
moorage.agents AGENT [ARGS]`` runs the same.
"""
