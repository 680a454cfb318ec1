"""The pipeline JSON Schema, generated from the field declarations of `model`.

Closed Draft 2020-12 objects with descriptions and examples (what editors show). Shared shapes
(durations, dates, connection ids) and fields used in several places (retries, model, ...) live once
under `$defs` and are referenced. `schemas/pipeline.schema.json` is this schema written out
(`python -m ovh_ai_dagfactory.spec.generate`); a test fails when the file and the declarations differ.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from ovh_ai_dagfactory.spec.declare import MAPPING, Declared, declared_fields
from ovh_ai_dagfactory.spec.model import STEP_CLASSES, Message, Pipeline
from ovh_ai_dagfactory.spec.shapes import NAME_PATTERN

#: Where editors can fetch the schema: the raw file on the main branch (a github.com/.../blob page is
#: HTML, which no schema client reads). Without network, the copy inside the package serves (docs).
SCHEMA_ID = "https://raw.githubusercontent.com/ovh/ovh-ai-dagfactory/main/schemas/pipeline.schema.json"
TITLE = "OVHcloud AI Endpoints pipeline"
DESCRIPTION = "One YAML file declaring one Airflow DAG of chat and embedding steps run on OVHcloud AI Endpoints."

#: The two top-level keys that are structure rather than a field of `Pipeline`.
DEFAULTS = Declared(
    MAPPING,
    "Values applied to every step of the matching kind; a step's own value wins.",
    ({"chat": {"model": "Meta-Llama-3_3-70B-Instruct", "temperature": 0.3}, "embedding": {"model": "BGE-M3"}},),
    argument=None,
)
STEPS = Declared(
    MAPPING,
    "The steps, by id (the id becomes the Airflow task_id: a letter or '_' then letters, digits or '_'). At least one.",
    ({"summarize": {"type": "chat", "messages": [{"role": "user", "content": "Summarise {{ ds }}"}]}},),
    argument=None,
    required=True,
)
STEP_TYPE_DESCRIPTION = "The kind of step: chat (chat completion) or embedding."
STEP_DESCRIPTION = "One step: a chat completion or an embedding. The step id (its key) becomes the Airflow task_id."


class _Builder:
    """Walks the declarations once; fields declared once but used in several objects go to $defs."""

    def __init__(self) -> None:
        self.defs: dict[str, Any] = {}
        self.uses: Counter[int] = Counter()
        for cls in (Pipeline, Message, *STEP_CLASSES.values(), *_nested_classes()):
            for item in declared_fields(cls):
                self.uses[id(item.declared)] += 1
        for cls in STEP_CLASSES.values():  # defaults.<kind> uses the step's defaultable fields again
            for item in declared_fields(cls):
                if item.declared.in_defaults:
                    self.uses[id(item.declared)] += 1

    def property(self, name: str, declared: Declared) -> dict[str, Any]:
        """The schema of one field where it is used: inline, or a $ref to its single definition."""
        if self.uses[id(declared)] < 2:
            return self._definition(declared)
        key = name
        if key in self.defs and self.defs[key] != self._definition(declared):
            key = f"{name}_{len(self.defs)}"  # two different declarations share a name: keep both
        self.defs.setdefault(key, self._definition(declared))
        return {"$ref": f"#/$defs/{key}"}

    def _definition(self, declared: Declared) -> dict[str, Any]:
        annotations: dict[str, Any] = {"description": declared.description}
        if declared.examples:
            annotations["examples"] = list(declared.examples)
        if declared.nested is not None and declared.shape.schema.get("type") == "object":
            return {**self.closed_object(declared.nested), **annotations}
        shape = declared.shape
        if shape.name is not None:
            self.defs.setdefault(shape.name, dict(shape.schema))
            return {"$ref": f"#/$defs/{shape.name}", **annotations}
        return {**shape.schema, **annotations}

    def closed_object(self, cls: type, *, defaults_only: bool = False) -> dict[str, Any]:
        properties: dict[str, Any] = {}
        required: list[str] = []
        for item in declared_fields(cls):
            if defaults_only and not item.declared.in_defaults:
                continue
            properties[item.name] = self.property(item.name, item.declared)
            if item.declared.required is True and not defaults_only:
                required.append(item.name)
        schema: dict[str, Any] = {"type": "object", "additionalProperties": False}
        if required:
            schema["required"] = required
        schema["properties"] = properties
        return schema


def _nested_classes() -> list[type]:
    return [item.declared.nested for item in declared_fields(Pipeline) if item.declared.nested is not None]


def build_schema() -> dict[str, Any]:
    """The whole pipeline schema, as `schemas/pipeline.schema.json` holds it."""
    builder = _Builder()
    properties: dict[str, Any] = {}
    for item in declared_fields(Pipeline):
        properties[item.name] = builder.property(item.name, item.declared)
    properties["defaults"] = {
        "type": "object",
        "additionalProperties": False,
        "description": DEFAULTS.description,
        "examples": list(DEFAULTS.examples),
        "properties": {
            kind: {
                **builder.closed_object(cls, defaults_only=True),
                "description": f"Defaults for {kind} steps.",
                "examples": [DEFAULTS.examples[0][kind]],
            }
            for kind, cls in STEP_CLASSES.items()
        },
    }
    properties["steps"] = {
        "type": "object",
        "minProperties": 1,
        "propertyNames": {"pattern": NAME_PATTERN, "maxLength": 250},
        "additionalProperties": {"$ref": "#/$defs/step"},
        "description": STEPS.description,
        "examples": list(STEPS.examples),
    }
    defs: dict[str, Any] = {"step": _step_switch()}
    for kind, cls in STEP_CLASSES.items():
        step = builder.closed_object(cls)
        step["required"] = ["type", *step.get("required", [])]
        step["properties"] = {
            "type": {"const": kind, "description": f"The kind of step: '{kind}'.", "examples": [kind]},
            **step["properties"],
        }
        defs[f"{kind}_step"] = {**_ordered(step), "description": cls.DESCRIPTION, "examples": [cls.EXAMPLE]}
    message = builder.closed_object(Message)
    defs["message"] = {**message, "description": Message.DESCRIPTION, "examples": [Message.EXAMPLE]}
    defs.update(sorted(builder.defs.items()))
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": TITLE,
        "description": DESCRIPTION,
        "type": "object",
        "additionalProperties": False,
        "required": [
            name
            for name, declared in ((item.name, item.declared) for item in declared_fields(Pipeline))
            if declared.required is True
        ]
        + ["steps"],
        "properties": properties,
        "$defs": defs,
    }


def _ordered(schema: dict[str, Any]) -> dict[str, Any]:
    order = ("type", "additionalProperties", "required", "properties")
    return {key: schema[key] for key in order if key in schema}


def _step_switch() -> dict[str, Any]:
    """`type` picks the step's schema, so errors speak of the kind the user chose."""
    kinds = list(STEP_CLASSES)
    switch: dict[str, Any] = {}
    for kind in reversed(kinds):
        branch = {
            "if": {"properties": {"type": {"const": kind}}, "required": ["type"]},
            "then": {"$ref": f"#/$defs/{kind}_step"},
        }
        if switch:
            branch["else"] = switch
        switch = branch
    return {
        "type": "object",
        "required": ["type"],
        "description": STEP_DESCRIPTION,
        "examples": [
            {"type": "chat", "messages": [{"role": "user", "content": "Hello"}]},
            {"type": "embedding", "input": "Hello"},
        ],
        "properties": {"type": {"enum": kinds, "description": STEP_TYPE_DESCRIPTION, "examples": kinds}},
        **switch,
    }
