"""Targets: what a validated spec becomes (Kubernetes manifests, or the classic plan for Ansible)."""
