"""moorage's host agents: small programs the platform's roles install on the hosts.

``ingress`` (the NGINX ingress watcher, lb hosts), ``prometheus-targets`` (the Consul target
bridge for Prometheus, monitoring hosts) and ``health-gate`` (the deploy's health gate, also the
``moorage.platform.health_gate`` module). They share one Consul client (``consul``) and one set
of route rules (``routes``), which the spec model uses too.

Rules for this package, so it runs on any Debian host as it is:

* Python standard library only (a test runs every agent under ``python3 -I``);
* relative imports between its modules, and none of the rest of moorage: the roles copy this
  directory alone, and ``consul``, ``routes`` and ``health_gate`` are also module_utils of the
  Ansible collection (``plugins/module_utils`` links to them).

On a host (the ``agent`` role) the package sits at ``DIR/moorage/agents`` next to a copy of
``__main__.py`` at ``DIR/__main__.py``, and runs as ``/usr/bin/python3 -I DIR AGENT [ARGS]``:
Python puts a directory it runs on ``sys.path`` even in isolated mode, and nothing else is.
Here, ``python -m moorage.agents AGENT [ARGS]`` runs the same.
"""
