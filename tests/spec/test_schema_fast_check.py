"""The fastjsonschema yes/no check is on for our schema, and turns itself off where its Draft 7
reading would differ from Draft 2020-12 (agreement with jsonschema is tested in test_properties)."""

from __future__ import annotations

from ovh_ai_dagfactory.spec.schema import _fast_check, _fast_check_supports, pipeline_schema


def test_fast_check_is_on_for_the_shipped_schema() -> None:
    assert _fast_check_supports(pipeline_schema())
    assert _fast_check() is not None


def test_fast_check_refuses_keywords_it_does_not_implement_as_2020_12() -> None:
    assert not _fast_check_supports({"type": "object", "unevaluatedProperties": False})
    assert not _fast_check_supports({"properties": {"a": {"prefixItems": [{"type": "string"}]}}})


def test_fast_check_refuses_constraints_beside_a_ref() -> None:
    # Draft 7 ignores siblings of $ref; Draft 2020-12 applies them.
    assert not _fast_check_supports({"$defs": {"s": {"type": "string"}}, "$ref": "#/$defs/s", "minLength": 1})
    assert _fast_check_supports({"$defs": {"s": {"type": "string"}}, "$ref": "#/$defs/s", "description": "ok"})


def test_property_names_are_not_mistaken_for_keywords() -> None:
    assert _fast_check_supports({"properties": {"unevaluatedProperties": {"type": "string"}}})
