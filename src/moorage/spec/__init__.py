"""The service spec: model, loading with located errors, and JSON Schema."""

from moorage.spec.model import ServiceSpec

__all__ = ["ServiceSpec"]
