"""The operators a pipeline's steps become: the provider's public operators plus `steps` in templates.

They are thin subclasses so that a DAG written by hand with the provider's operators and a DAG
built from YAML behave the same. The Airflow UI shows the public operator's name
(`custom_operator_name`); the scheduler and the UI read them back from the serialized DAG as
generic operators, while workers re-parse the DAG file and run these classes.
"""

from __future__ import annotations

from ovh_ai_dagfactory.factory.mapping import OPERATOR_NAMES
from ovh_ai_dagfactory.factory.step_outputs import ProvidesStepOutputs
from ovh_ai_dagfactory.operators.ai_endpoints import (
    OVHCloudAIEndpointsChatCompletionsOperator,
    OVHCloudAIEndpointsEmbeddingOperator,
)


class PipelineChatOperator(ProvidesStepOutputs, OVHCloudAIEndpointsChatCompletionsOperator):
    """A pipeline's chat step."""

    custom_operator_name = OPERATOR_NAMES["chat"]


class PipelineEmbeddingOperator(ProvidesStepOutputs, OVHCloudAIEndpointsEmbeddingOperator):
    """A pipeline's embedding step."""

    custom_operator_name = OPERATOR_NAMES["embedding"]


# Airflow's operator metaclass wraps every class's __init__ in `apply_defaults`, even an inherited
# one, and each wrapper merges default_args and params again. These classes add no constructor
# argument, so they reuse the parent's wrapped constructor: building a pipeline's tasks then costs
# what building the provider's operators by hand costs (see benchmarks/bench_load.py, P1).
PipelineChatOperator.__init__ = OVHCloudAIEndpointsChatCompletionsOperator.__init__  # type: ignore[method-assign]
PipelineEmbeddingOperator.__init__ = OVHCloudAIEndpointsEmbeddingOperator.__init__  # type: ignore[method-assign]

OPERATOR_BY_KIND = {"chat": PipelineChatOperator, "embedding": PipelineEmbeddingOperator}
