"""The operator a pipeline step with `mode: batch` becomes (imported only for such a step: the batch
modules cost ~45 ms to import, which every DAG-file parse would otherwise pay)."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

from ovh_ai_dagfactory.compat import AirflowFailException
from ovh_ai_dagfactory.factory.mapping import OPERATOR_NAMES
from ovh_ai_dagfactory.factory.step_operators import NO_ITEM, described, render_pipeline_fields
from ovh_ai_dagfactory.operators.batch import OVHCloudAIEndpointsBatchOperator


class PipelineBatchOperator(OVHCloudAIEndpointsBatchOperator):
    """A pipeline's step with `mode: batch`: the provider's batch operator, with `steps.<id>` in its
    templates. A chat step's requests are its for_each items (or its input_file's lines): `for_each` is
    rendered to the list of items, then `messages` once per item (with `item` / `item_index`), giving
    the batch's inputs.

    :param step_kinds: as for the step operators.
    :param mapped_steps: as for the step operators.
    :param for_each: a chat step's items (a list, or one template giving one).
    :param messages: a chat step's messages, rendered once per item.
    """

    custom_operator_name = OPERATOR_NAMES["batch"]
    template_fields: Sequence[str] = (
        "model",
        "for_each",
        "messages",
        "inputs",
        "input_file",
        "request_kwargs",
        "ovh_conn_id",
    )

    def __init__(
        self,
        *,
        step_kinds: Mapping[str, str],
        mapped_steps: Collection[str] = (),
        for_each: Any = None,
        messages: list[dict[str, Any]] | None = None,
        inputs: Any = None,
        input_file: str | None = None,
        text_field: str | None = None,
        id_field: str | None = None,
        input_conn_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(inputs=[] if inputs is None else inputs, **kwargs)
        self.step_kinds = step_kinds
        self.mapped_steps = mapped_steps
        self.for_each = for_each
        self.messages = messages
        self.input_file = input_file
        self.text_field = text_field
        self.id_field = id_field
        self.input_conn_id = input_conn_id
        self.item = NO_ITEM

    def _do_render_template_fields(
        self, parent: Any, template_fields: Iterable[str], context: Any, jinja_env: Any, seen_oids: set[int]
    ) -> None:
        per_item = ("for_each", "messages") if self.kind == "chat" else ()
        rest = render_pipeline_fields(self, parent, template_fields, context, jinja_env, native=("for_each", "inputs"))
        super()._do_render_template_fields(
            parent, [f for f in rest if f not in per_item], context, jinja_env, seen_oids
        )
        if self.kind != "chat":
            if parent.input_file:
                parent._read_input_file()
            return
        if "for_each" in rest:  # a literal list: Airflow renders its strings as usual
            super()._do_render_template_fields(parent, ["for_each"], context, jinja_env, seen_oids)
        if parent.input_file:
            parent._read_chat_items()
        items = parent.for_each
        if not isinstance(items, (list, tuple)):
            raise AirflowFailException(
                f"for_each of step '{self.task_id}' gave {described(items)}, not a list: it must give the list "
                "of items to send as the batch's requests"
            )
        inputs = []
        for index, item in enumerate(items):
            context["item"], context["item_index"] = item, index
            inputs.append(self.render_template(self.messages, context, jinja_env or self.get_template_env()))
        parent.inputs = inputs

    def _read_chat_items(self) -> None:
        """A chat batch's items from `input_file` (each line's record is its `item`), read whole, when
        the fields are rendered (see `_read_input_file`); with `id_field`, the ids are the custom_ids."""
        from ovh_ai_dagfactory.jobs.storage import read_records

        records = list(read_records(str(self.input_file), conn_id=self.input_conn_id))
        self.for_each = records
        if self.id_field:
            self.custom_ids = [str(record.get(self.id_field, number)) for number, record in enumerate(records)]

    def _read_input_file(self) -> None:
        """An embedding batch's texts (and ids) from `input_file`, read whole: a batch is one uploaded
        file (sync mode streams instead). Read when the fields are rendered, so the task resuming
        from the trigger knows them too (it maps the results back to the inputs)."""
        from ovh_ai_dagfactory.jobs.storage import read_texts

        records = list(
            read_texts(
                str(self.input_file),
                text_field=self.text_field or "text",
                id_field=self.id_field,
                conn_id=self.input_conn_id,
            )
        )
        self.inputs = [text for _, text in records]
        if self.id_field:
            self.custom_ids = [str(record_id) for record_id, _ in records]
