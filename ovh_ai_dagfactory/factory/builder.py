"""Pipeline spec → Airflow DAG: one operator per step, the pipeline's DAG arguments, its edges.

What each argument is comes from `mapping` (shared with `render`); this module only constructs.
"""

from __future__ import annotations

from typing import Any

from ovh_ai_dagfactory.compat import DAG
from ovh_ai_dagfactory.factory.mapping import dag_arguments, step_arguments
from ovh_ai_dagfactory.spec.model import Pipeline


def build_dag(pipeline: Pipeline, *, fileloc: str | None = None, source_label: str | None = None) -> Any:
    """The DAG for `pipeline`.

    `fileloc` is the Python file Airflow should re-parse to find this DAG again (the loader file);
    `source_label` is how doc_md names the pipeline file (a relative path reads best).
    """
    from ovh_ai_dagfactory.factory.step_operators import OPERATOR_BY_KIND

    upstream = {step.step_id: pipeline.upstream_of(step.step_id) for step in pipeline.steps}
    dag = DAG(**dag_arguments(pipeline, source_label or pipeline.source_file, upstream))
    if fileloc is not None:
        dag.fileloc = fileloc
    kinds = {step.step_id: step.kind for step in pipeline.steps}
    tasks: dict[str, Any] = {}
    for step in pipeline.steps:
        operator = OPERATOR_BY_KIND[step.kind](dag=dag, **step_arguments(step, pipeline))
        operator.pipeline_step_kinds = kinds
        tasks[step.step_id] = operator
    for step_id, upstream_ids in upstream.items():
        for upstream_id in upstream_ids:
            tasks[step_id].set_upstream(tasks[upstream_id])
    return dag
