"""What `{{ steps.<id>.content }}`, `.response` and `.embeddings` mean at run time.

A pipeline's operators (`step_operators`) add one name, `steps`, to the Jinja context when Airflow
renders their templated fields. Each `steps.<id>` reads that step's XCom (`ti.xcom_pull`) only when a
template touches it, so rendering a step that references nothing pulls nothing. Everything else in
the context (`ti`, `ds`, `var`, `params`, macros) is Airflow's own and untouched.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ovh_ai_dagfactory.compat import AirflowException, AirflowFailException
from ovh_ai_dagfactory.hooks.errors import NoContentError, OVHCloudAIEndpointsError
from ovh_ai_dagfactory.hooks.results import chat_content, chat_json, embedding_vectors

# The spec's own table, so what the validator accepts and what a run provides cannot drift apart.
from ovh_ai_dagfactory.spec.references import OUTPUTS_BY_KIND


class StepOutput:
    """One earlier step's result, read lazily from XCom and read at most once per rendering."""

    def __init__(self, ti: Any, step_id: str, kind: str) -> None:
        self._ti = ti
        self._step_id = step_id
        self._kind = kind
        self._pulled = False
        self._response: Any = None

    @property
    def response(self) -> dict[str, Any]:
        """The whole response dict the step returned (the wire JSON of the API)."""
        if not self._pulled:
            self._response = self._ti.xcom_pull(task_ids=self._step_id)
            self._pulled = True
        if self._response is None:
            raise AirflowException(
                f"steps.{self._step_id}: step '{self._step_id}' has no result in XCom yet; it must run "
                f"(and succeed) before this step — list it in depends_on or reference it in a template"
            )
        return self._response

    @property
    def content(self) -> str:
        """A chat step's answer, as the provider defines it (`hooks.results.chat_content`).

        The chat operator already refuses an answer without text; this guards XComs written otherwise
        (an older version, a custom operator, an edited XCom): Jinja would render a None as the text
        "None" and the next model would answer that. Retrying this task cannot change an earlier
        step's XCom, hence AirflowFailException.
        """
        self._require("content")
        try:
            return chat_content(self._mapping())
        except NoContentError as error:
            raise AirflowFailException(
                f"steps.{self._step_id}.content: step '{self._step_id}' returned no text: {error}"
            ) from None

    @property
    def embeddings(self) -> list[list[float]]:
        """An embedding step's vectors, one per input, in input order (`hooks.results.embedding_vectors`)."""
        self._require("embeddings")
        try:
            return embedding_vectors(self._mapping())
        except NoContentError as error:
            raise AirflowFailException(
                f"steps.{self._step_id}.embeddings: step '{self._step_id}' returned no vectors: {error}"
            ) from None

    @property
    def json(self) -> Any:
        """A structured chat step's answer, parsed (`hooks.results.chat_json`; the operator has
        already checked it against the step's output_schema before pushing it)."""
        self._require("json")
        try:
            return chat_json(self._mapping())
        except OVHCloudAIEndpointsError as error:
            raise AirflowFailException(
                f"steps.{self._step_id}.json: step '{self._step_id}' has no JSON answer: {error}"
            ) from None

    def _mapping(self) -> Mapping[str, Any]:
        response = self.response
        return response if isinstance(response, Mapping) else {}

    def _require(self, output: str) -> None:
        provided = OUTPUTS_BY_KIND.get(self._kind, ())
        if output not in provided:
            # Deterministic: retrying cannot help, so fail without using the task's retries.
            raise AirflowFailException(
                f"steps.{self._step_id}.{output}: '{self._step_id}' is {_article(self._kind)} {self._kind} step; "
                f"it provides {' and '.join(provided)}"
            )

    def __str__(self) -> str:
        # `{{ steps.x }}` alone is almost always a forgotten `.content`; say so instead of a repr.
        raise AirflowFailException(
            f"steps.{self._step_id} needs an output: "
            + ", ".join(f"steps.{self._step_id}.{name}" for name in OUTPUTS_BY_KIND.get(self._kind, ()))
        )


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


class StepOutputs:
    """The `steps` name in templates: `steps.<id>` or `steps['<id>']` for ids that are not identifiers."""

    def __init__(self, ti: Any, kinds: Mapping[str, str]) -> None:
        self._ti = ti
        self._kinds = kinds
        self._outputs: dict[str, StepOutput] = {}

    def __getattr__(self, step_id: str) -> StepOutput:
        if step_id.startswith("_"):
            raise AttributeError(step_id)
        return self[step_id]

    def __getitem__(self, step_id: str) -> StepOutput:
        if step_id not in self._kinds:
            # Not KeyError: Jinja would turn that into a silent Undefined.
            raise AirflowFailException(
                f"steps.{step_id}: this pipeline has no step '{step_id}' (steps: {', '.join(sorted(self._kinds))})"
            )
        if step_id not in self._outputs:
            self._outputs[step_id] = StepOutput(self._ti, step_id, self._kinds[step_id])
        return self._outputs[step_id]

    def __contains__(self, step_id: object) -> bool:
        return step_id in self._kinds
