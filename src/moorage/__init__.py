"""moorage: a Kubernetes-like API for services on VMs, on the classic stack."""

__version__ = "0.1.0"
