"""The JSON Schema of the spec, for editors (YAML language servers) and other tools.

Generated from the models the loader validates with, so both take the same types: a spec the
loader accepts is valid against the schema. The loader checks more (bounds within a duration or
quantity's text, rules across fields); the schema checks the same types, patterns and numeric
ranges.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from moorage.spec.model import ServiceSpec
from moorage.spec.units import format_duration

DRAFT_2020_12 = "https://json-schema.org/draft/2020-12/schema"


class _SpecSchemaGenerator(GenerateJsonSchema):
    def encode_default(self, dft: Any) -> Any:
        # Defaults are shown as a person writes them in the spec ("10s"), not as ISO 8601 ("PT10S").
        if isinstance(dft, timedelta):
            return format_duration(dft)
        return super().encode_default(dft)

    def dict_schema(self, schema: core_schema.DictSchema) -> JsonSchemaValue:
        # A map whose keys follow a pattern (env names) refuses other keys, as the loader does.
        json_schema = super().dict_schema(schema)
        if "patternProperties" in json_schema:
            json_schema["additionalProperties"] = False
        return json_schema

    def field_title_should_be_set(self, schema: Any) -> bool:
        # Titles pydantic derives from attribute names ("Maxperhost") say less than the key itself.
        return False


def spec_json_schema() -> dict[str, Any]:
    """The schema by YAML key, with descriptions; every mapping refuses unknown keys."""
    schema = ServiceSpec.model_json_schema(by_alias=True, schema_generator=_SpecSchemaGenerator)
    return {"$schema": DRAFT_2020_12, **schema}
