"""The operators a pipeline's steps become: the provider's public operators plus `steps` in templates.

Each is a plain subclass of one provider operator, so a DAG written by hand with the provider's
operators and a DAG built from YAML behave the same, and `partial()` / `expand()` work on them as on
any operator. The kinds of the pipeline's steps (what `steps.<id>` may name) and which of them run
per item (`for_each`) are constructor arguments, `step_kinds` and `mapped_steps`, stored like any
other argument; nothing is set on a task after it is built. A `for_each` step is expanded over its
`item` argument; `ForEachItemsOperator` renders a `for_each` template into the list it is expanded
over.

What pipeline operators add to Airflow's templating: the names `steps`, and `item` / `item_index` in
a for_each step; and native values for the fields declared `native` (spec/native_values.py).

The Airflow UI shows the public operator's name (`custom_operator_name`). The scheduler and the UI
read tasks back from the serialized DAG, which stores `step_kinds` of a mapped task (it is one of
its partial arguments) and not of a plain task (only Airflow's own fields and template fields are
stored): neither needs it, since only a worker renders templates, and a worker re-parses the DAG
file, which runs the builder again.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

from ovh_ai_dagfactory.compat import AirflowFailException, BaseOperator
from ovh_ai_dagfactory.factory.mapping import OPERATOR_NAMES
from ovh_ai_dagfactory.factory.step_outputs import StepOutputs
from ovh_ai_dagfactory.operators.ai_endpoints import (
    OVHCloudAIEndpointsChatCompletionsOperator,
    OVHCloudAIEndpointsEmbeddingOperator,
)
from ovh_ai_dagfactory.operators.chat_job import OVHCloudAIEndpointsChatJobOperator
from ovh_ai_dagfactory.spec.declare import SAME, declared_fields
from ovh_ai_dagfactory.spec.model import STEP_CLASSES
from ovh_ai_dagfactory.spec.native_values import NotNative, render_native

# The cost of constructor arguments: Airflow's operator metaclass wraps every `__init__` a class
# defines in `apply_defaults` (BaseOperatorMeta, 2.11 and 3.x alike), and each level merges
# default_args again (+7 µs per task measured on 3.3, ≈ 3% of P1's warm load). The provider's shared
# base operator defines no `__init__` for that reason, so these classes have the same three levels
# (BaseOperator, the provider operator, this class) the provider operators had before;
# `partial()` / `expand()` see an ordinary operator.
#
# Why `_do_render_template_fields`: a mapped task's fields are rendered by Airflow's MappedOperator,
# which calls the unmapped task's `_do_render_template_fields` directly (both lines, and documented
# there as the method to override), never its `render_template_fields`; a plain task's
# `render_template_fields` calls it too. It is the one method both lines call on our task object
# before its fields are rendered, with the field names, so native fields can be told apart.

#: `item` when a task is not expanded over items (None is a valid item).
NO_ITEM: Any = object()


class _PipelineTemplates:
    """`steps`, `item` / `item_index` and native values in a pipeline operator's templates.

    Methods only, no `__init__`: a class's own `__init__` costs a level of `apply_defaults` (above),
    so each operator below keeps its own."""

    def _do_render_template_fields(
        self, parent: Any, template_fields: Iterable[str], context: Any, jinja_env: Any, seen_oids: set[int]
    ) -> None:
        rest = render_pipeline_fields(self, parent, template_fields, context, jinja_env)
        super()._do_render_template_fields(parent, rest, context, jinja_env, seen_oids)  # type: ignore[misc]


class PipelineChatOperator(_PipelineTemplates, OVHCloudAIEndpointsChatCompletionsOperator):
    """A pipeline's chat step: the provider's chat operator, with `steps.<id>` in its templates.

    :param step_kinds: step id → kind ("chat", "embedding") of the pipeline's steps.
    :param mapped_steps: ids of the steps that run once per item (for_each).
    :param item: this task instance's item, for a step expanded over its for_each items.
    """

    custom_operator_name = OPERATOR_NAMES["chat"]

    def __init__(
        self,
        *,
        step_kinds: Mapping[str, str],
        mapped_steps: Collection[str] = (),
        item: Any = NO_ITEM,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.step_kinds = step_kinds
        self.mapped_steps = mapped_steps
        self.item = item


class PipelineEmbeddingOperator(_PipelineTemplates, OVHCloudAIEndpointsEmbeddingOperator):
    """A pipeline's embedding step: the provider's embedding operator, with `steps.<id>` in its templates.

    :param step_kinds: step id → kind ("chat", "embedding") of the pipeline's steps.
    :param mapped_steps: ids of the steps that run once per item (for_each).
    :param item: this task instance's item, for a step expanded over its for_each items.
    """

    custom_operator_name = OPERATOR_NAMES["embedding"]

    def __init__(
        self,
        *,
        step_kinds: Mapping[str, str],
        mapped_steps: Collection[str] = (),
        item: Any = NO_ITEM,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.step_kinds = step_kinds
        self.mapped_steps = mapped_steps
        self.item = item

    def execute(self, context: Any) -> Any:
        if self.input_file is None:  # else the texts come from the file
            _check_texts(self.task_id, self.input)
        return super().execute(context)

    def call_endpoint(self, request: dict[str, Any]) -> dict[str, Any]:
        if request.get("input") == []:
            # A fan-out over no item gives no text: no vector to ask for (the API refuses an empty input).
            return {"object": "list", "data": [], "model": request.get("model"), "usage": _NO_USAGE}
        return super().call_endpoint(request)

    def check_result(self, response: dict[str, Any], request: dict[str, Any]) -> None:
        if request.get("input") != []:  # no text, no vector: nothing to check
            super().check_result(response, request)


class PipelineChatJobOperator(_PipelineTemplates, OVHCloudAIEndpointsChatJobOperator):
    """A pipeline's chat step over many items in one task (input_file, or for_each_mode: in_task):
    the provider's chat job operator, with `steps.<id>` in its templates and in its per-item messages
    (the job renders them with the context these templates were rendered with).

    :param step_kinds: step id → kind ("chat", "embedding", "chat_job") of the pipeline's steps.
    :param mapped_steps: ids of the steps that run once per item as mapped tasks.
    """

    custom_operator_name = OPERATOR_NAMES["chat_job"]

    def __init__(
        self,
        *,
        step_kinds: Mapping[str, str],
        mapped_steps: Collection[str] = (),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.step_kinds = step_kinds
        self.mapped_steps = mapped_steps
        self.item = NO_ITEM


class ForEachItemsOperator(BaseOperator):
    """Renders a for_each step's `for_each` template into the list the step is expanded over.

    :param for_each: one `{{ expression }}` giving a list, or a list whose strings are templates.
    :param step_id: the for_each step, for messages.
    :param step_kinds: as for the step operators (`steps.<id>` in the template).
    :param mapped_steps: as for the step operators.
    """

    template_fields: Sequence[str] = ("for_each",)
    template_fields_renderers = {"for_each": "json"}
    ui_color = "#f4f0e8"

    def __init__(
        self,
        *,
        for_each: Any,
        step_id: str,
        step_kinds: Mapping[str, str],
        mapped_steps: Collection[str] = (),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.for_each = for_each
        self.step_id = step_id
        self.step_kinds = step_kinds
        self.mapped_steps = mapped_steps
        self.item = NO_ITEM

    def _do_render_template_fields(
        self, parent: Any, template_fields: Iterable[str], context: Any, jinja_env: Any, seen_oids: set[int]
    ) -> None:
        rest = render_pipeline_fields(self, parent, template_fields, context, jinja_env, native=("for_each",))
        super()._do_render_template_fields(parent, rest, context, jinja_env, seen_oids)

    def execute(self, context: Any) -> list[Any]:
        items = self.for_each
        if not isinstance(items, (list, tuple)):
            # Deterministic: a retry renders the same value, so fail without using the retries.
            raise AirflowFailException(
                f"for_each of step '{self.step_id}' gave {described(items)}, not a list: it must give the "
                "list of items to run the step for (e.g. {{ steps.<id>.json.topics }} with an output_schema "
                "whose `topics` is an array)"
            )
        self.log.info("step '%s' runs for %d item(s)", self.step_id, len(items))
        return list(items)


_NO_USAGE = {"prompt_tokens": 0, "total_tokens": 0}
#: The operator fields (by kind) whose whole-expression templates give native values.
_NATIVE_FIELDS = {
    kind: tuple(item.name for item in declared_fields(cls) if item.declared.native and item.declared.argument == SAME)
    for kind, cls in STEP_CLASSES.items()
}
# A chat job's inline `items` (its for_each) is rendered as a native value too: a template gives a list.
_NATIVE_FIELDS["chat_job"] = (*_NATIVE_FIELDS["chat"], "items")
_KIND_OF_OPERATOR = {
    PipelineChatOperator: "chat",
    PipelineEmbeddingOperator: "embedding",
    PipelineChatJobOperator: "chat_job",
}


def render_pipeline_fields(
    task: Any,
    parent: Any,
    template_fields: Iterable[str],
    context: Any,
    jinja_env: Any,
    native: tuple[str, ...] | None = None,
) -> list[str]:
    """Adds `steps` (and `item`, `item_index` for an expanded step) to the context, renders the
    native fields that are one whole expression, and returns the fields Airflow renders as usual."""
    if "steps" not in context:
        context["steps"] = StepOutputs(context["ti"], task.step_kinds, task.mapped_steps)
    item = getattr(parent, "item", NO_ITEM)
    if item is not NO_ITEM:
        context["item"] = item
        context["item_index"] = context["ti"].map_index
    if native is None:
        native = _NATIVE_FIELDS.get(_KIND_OF_OPERATOR.get(type(task), ""), ())
    if jinja_env is None:
        jinja_env = task.get_template_env()
    rest = []
    for name in template_fields:
        value = getattr(parent, name, None)
        if name in native and isinstance(value, str):
            try:
                setattr(parent, name, render_native(jinja_env, value, context))
                continue
            except NotNative:
                pass
        rest.append(name)
    return rest


def _check_texts(task_id: str, value: Any) -> None:
    """An embedding step's rendered `input` is a text or a list of texts (a template can give anything)."""
    if isinstance(value, str) or (isinstance(value, list) and all(isinstance(text, str) for text in value)):
        return
    raise AirflowFailException(
        f"input of step '{task_id}' gave {described(value)}: it must be a text or a list of texts"
    )


def described(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:80] + '...' if len(text) > 80 else text}"


OPERATOR_BY_KIND = {
    "chat": PipelineChatOperator,
    "embedding": PipelineEmbeddingOperator,
    "chat_job": PipelineChatJobOperator,
}
