"""A YAML chat step with `output_schema`: the request asks for that JSON shape, and a later step reads
the parsed answer as `steps.<id>.json`, through Airflow, against our stub (which honours
`response_format`)."""

from __future__ import annotations

from conftest import run_dag, task_states

from ovh_ai_dagfactory.factory.builder import build_dag
from ovh_ai_dagfactory.spec import parse_pipeline_text

PIPELINE = """\
schedule: null
steps:
  classify:
    type: chat
    model: Meta-Llama-3_3-70B-Instruct
    output_schema:
      type: object
      properties:
        label: {enum: [bug, feature]}
        confidence: {type: number}
      required: [label, confidence]
      additionalProperties: false
    messages: [{role: user, content: "Classify: the export button crashes"}]
  route:
    type: chat
    model: Meta-Llama-3_3-70B-Instruct
    messages: [{role: user, content: "Route a {{ steps.classify.json.label }} ({{ steps.classify.json.confidence }})"}]
"""


def test_structured_answer_flows_to_the_next_step(airflow_db, stub):
    dag_run = run_dag(build_dag(parse_pipeline_text(PIPELINE, "/pipelines/structured.yaml")))
    assert set(task_states(dag_run).values()) == {"success"}, task_states(dag_run)
    classify, route = [request.body for request in stub.requests if request.path.endswith("/chat/completions")]
    assert classify["response_format"]["type"] == "json_schema"
    assert classify["response_format"]["json_schema"]["name"] == "classify"
    assert classify["response_format"]["json_schema"]["schema"]["required"] == ["label", "confidence"]
    assert "response_format" not in route
    # The stub answers the first enum value and 1 for numbers: the parsed answer reached the template.
    assert route["messages"][0]["content"] == "Route a bug (1)"
