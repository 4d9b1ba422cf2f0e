"""A valid service spec shared by the unit tests (imported as a module: conftest files are not)."""

# The full example of docs/concepts.md, except maxPerHost 1: a service with volumes must keep one instance per host.
VALID_SPEC = """\
apiVersion: moorage/v1
kind: Service
metadata:
  name: hello
spec:
  runtime: systemd
  artifact: ./app
  command: ["python3", "app.py", "--port", "${PORT}"]
  replicas: 3
  placement: {group: app, maxPerHost: 1}
  port: 8080
  env: {GREETING: hi}
  secrets: [API_TOKEN]
  health: {http: /healthz, interval: 2s, timeout: 1s, deregisterAfter: 5m}
  routes:
    - {host: hello.example.test, path: /}
  metrics: {path: /metrics}
  resources: {memory: 256Mi, cpu: 500m}
  volumes:
    - {name: data, path: /var/lib/hello}
  update: {maxParallel: 1, minHealthy: 5s, healthyDeadline: 60s, autoRevert: true, canary: 0}
  stop: {signal: SIGTERM, gracePeriod: 30s}
"""
