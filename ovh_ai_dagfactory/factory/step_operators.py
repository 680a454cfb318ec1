"""The operators a pipeline's steps become: the provider's public operators plus `steps` in templates.

Each is a plain subclass of one provider operator, so a DAG written by hand with the provider's
operators and a DAG built from YAML behave the same, and `partial()` / `expand()` work on them as on
any operator. The kinds of the pipeline's steps (what `steps.<id>` may name) are a constructor
argument, `step_kinds`, stored like any other argument; nothing is set on a task after it is built.

The Airflow UI shows the public operator's name (`custom_operator_name`). The scheduler and the UI
read tasks back from the serialized DAG, which stores `step_kinds` of a mapped task (it is one of
its partial arguments) and not of a plain task (only Airflow's own fields and template fields are
stored): neither needs it, since only a worker renders templates, and a worker re-parses the DAG
file, which runs the builder again.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ovh_ai_dagfactory.factory.mapping import OPERATOR_NAMES
from ovh_ai_dagfactory.factory.step_outputs import StepOutputs
from ovh_ai_dagfactory.operators.ai_endpoints import (
    OVHCloudAIEndpointsChatCompletionsOperator,
    OVHCloudAIEndpointsEmbeddingOperator,
)

# The cost of `step_kinds` being a constructor argument: Airflow's operator metaclass wraps every
# `__init__` a class defines in `apply_defaults` (BaseOperatorMeta, 2.11 and 3.x alike), and each
# level merges default_args again (+7 µs per task measured on 3.3, ≈ 3% of P1's warm load). The
# provider's shared base operator defines no `__init__` for that reason, so these classes have the
# same three levels (BaseOperator, the provider operator, this class) the provider operators had
# before; `partial()` / `expand()` see an ordinary operator.
#
# Why `render_template` and not `render_template_fields`: a mapped task's fields are rendered by
# Airflow's MappedOperator, which calls the unmapped task's internal `_do_render_template_fields`
# directly (both lines), never its `render_template_fields`. The public `render_template` is the
# one method both lines call on our task object for every templated field, mapped or not. It runs
# once per field and per nested value, so `steps` is added to the context once and then kept.


class PipelineChatOperator(OVHCloudAIEndpointsChatCompletionsOperator):
    """A pipeline's chat step: the provider's chat operator, with `steps.<id>` in its templates.

    :param step_kinds: step id → kind ("chat", "embedding") of the pipeline's steps.
    """

    custom_operator_name = OPERATOR_NAMES["chat"]

    def __init__(self, *, step_kinds: Mapping[str, str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.step_kinds = step_kinds

    def render_template(self, content: Any, context: Any, *args: Any, **kwargs: Any) -> Any:
        _add_steps(context, self.step_kinds)
        return super().render_template(content, context, *args, **kwargs)


class PipelineEmbeddingOperator(OVHCloudAIEndpointsEmbeddingOperator):
    """A pipeline's embedding step: the provider's embedding operator, with `steps.<id>` in its templates.

    :param step_kinds: step id → kind ("chat", "embedding") of the pipeline's steps.
    """

    custom_operator_name = OPERATOR_NAMES["embedding"]

    def __init__(self, *, step_kinds: Mapping[str, str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.step_kinds = step_kinds

    def render_template(self, content: Any, context: Any, *args: Any, **kwargs: Any) -> Any:
        _add_steps(context, self.step_kinds)
        return super().render_template(content, context, *args, **kwargs)


def _add_steps(context: Any, step_kinds: Mapping[str, str]) -> None:
    """`steps` in the Jinja context, once per rendering (render_template runs for every field)."""
    if "steps" not in context:
        context["steps"] = StepOutputs(context["ti"], step_kinds)


OPERATOR_BY_KIND = {"chat": PipelineChatOperator, "embedding": PipelineEmbeddingOperator}
