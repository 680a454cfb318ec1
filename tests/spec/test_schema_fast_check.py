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


def test_the_shipped_fast_check_is_the_one_compiled_from_the_schema() -> None:
    # The loader and `validate` use the generated module; spec.generate --check (test_generated)
    # keeps its text current, and here it answers as the schema compiled at run time does.
    import fastjsonschema

    from ovh_ai_dagfactory.spec import generated_fast_check

    compiled = fastjsonschema.compile(pipeline_schema(), use_default=False, use_formats=False)
    valid = {"steps": {"a": {"type": "chat", "model": "m", "messages": [{"role": "user", "content": "hi"}]}}}
    invalid = {"steps": {"a": {"type": "chat", "model": "m", "messages": [{"role": "robot", "content": "hi"}]}}}
    for data, ok in ((valid, True), (invalid, False)):
        for check in (generated_fast_check.check, compiled):
            try:
                check(data)
                answered = True
            except fastjsonschema.JsonSchemaValueException:
                answered = False
            assert answered is ok, (check, data)
    assert _fast_check() is not None and _fast_check()(valid) and not _fast_check()(invalid)
