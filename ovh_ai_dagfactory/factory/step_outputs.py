"""What `{{ steps.<id>.content }}`, `.response`, `.json` and `.embeddings` mean at run time, and their
plurals (`.contents`, `.responses`, `.jsons`) for a step that runs once per item (`for_each`).

A pipeline's operators (`step_operators`) add one name, `steps`, to the Jinja context when Airflow
renders their templated fields. Each `steps.<id>` reads that step's XCom (`ti.xcom_pull`) only when a
template touches it, so rendering a step that references nothing pulls nothing. Everything else in
the context (`ti`, `ds`, `var`, `params`, macros) is Airflow's own and untouched.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any

from ovh_ai_dagfactory.calls.errors import NoContentError, OVHCloudAIEndpointsError
from ovh_ai_dagfactory.calls.results import chat_content, chat_json, embedding_vectors
from ovh_ai_dagfactory.compat import AirflowException, AirflowFailException

# The spec's own table, so what the validator accepts and what a run provides cannot drift apart.
from ovh_ai_dagfactory.spec.references import mapped_counterpart, outputs_of


class StepOutput:
    """One earlier step's result, read lazily from XCom and read at most once per rendering."""

    def __init__(self, ti: Any, step_id: str, kind: str, mapped: bool = False) -> None:
        self._ti = ti
        self._step_id = step_id
        self._kind = kind
        self._mapped = mapped
        self._pulled = False
        self._response: Any = None

    @property
    def response(self) -> dict[str, Any]:
        """The whole response dict the step returned (the wire JSON of the API)."""
        self._require("response")
        return self._one_response()

    @property
    def responses(self) -> list[dict[str, Any]]:
        """A for_each step's responses, one per item, in item order ([] when it ran for no item)."""
        self._require("responses")
        return self._all_responses()

    def _one_response(self) -> dict[str, Any]:
        if not self._pulled:
            self._response = self._ti.xcom_pull(task_ids=self._step_id)
            self._pulled = True
        if self._response is None:
            raise AirflowException(
                f"steps.{self._step_id}: step '{self._step_id}' has no result in XCom yet; it must run "
                f"(and succeed) before this step — list it in depends_on or reference it in a template"
            )
        return self._response

    def _all_responses(self) -> list[dict[str, Any]]:
        if not self._pulled:
            # Without map_indexes, both lines pull every map index in index order: Airflow 2.11 as a
            # lazy sequence (None when there is none), 3.x as a list, unwrapped when it holds one
            # value. A step's result is always a mapping, so one mapping is one item. None: the step
            # ran for no item (Airflow skips a task mapped over an empty list).
            pulled = self._ti.xcom_pull(task_ids=self._step_id)
            self._response = [] if pulled is None else [pulled] if isinstance(pulled, Mapping) else list(pulled)
            self._pulled = True
        return list(self._response)

    @property
    def content(self) -> str:
        """A chat step's answer, as the provider defines it (`calls.results.chat_content`).

        The chat operator already refuses an answer without text; this guards XComs written otherwise
        (an older version, a custom operator, an edited XCom): Jinja would render a None as the text
        "None" and the next model would answer that. Retrying this task cannot change an earlier
        step's XCom, hence AirflowFailException.
        """
        self._require("content")
        return self._read("content", chat_content, self._one_response())

    @property
    def contents(self) -> list[str | None]:
        """A for_each chat step's answers, one per item, in item order (a chat job's: its rows')."""
        self._require("contents")
        if self._kind == "chat_job":
            return [row.get("content") for row in self._job_rows("contents")]
        return [self._read("contents", chat_content, response) for response in self._all_responses()]

    def _job_rows(self, output: str) -> list[Mapping[str, Any]]:
        """A chat job's rows (a failed item's row has no content: its place reads None)."""
        response = self._one_response()
        if "data" not in response and "parts" in response:
            raise AirflowFailException(
                f"steps.{self._step_id}.{output}: step '{self._step_id}' wrote its {response.get('count')} results to "
                f"{response.get('output')} (the step sets `output`): read them from there; "
                f"steps.{self._step_id}.output gives the URI"
            )
        return [row if isinstance(row, Mapping) else {} for row in response.get("data") or []]

    @property
    def json(self) -> Any:
        """A structured chat step's answer, parsed (`calls.results.chat_json`; the operator has
        already checked it against the step's output_schema before pushing it)."""
        self._require("json")
        return self._read("json", chat_json, self._one_response())

    @property
    def jsons(self) -> list[Any]:
        """A for_each structured chat step's parsed answers, one per item, in item order."""
        self._require("jsons")
        if self._kind == "chat_job":
            return [row.get("json") for row in self._job_rows("jsons")]
        return [self._read("jsons", chat_json, response) for response in self._all_responses()]

    @property
    def embeddings(self) -> list[list[float]]:
        """An embedding step's vectors, one per input, in input order (`calls.results.embedding_vectors`);
        for a for_each step, the vectors of all its items in item order."""
        self._require("embeddings")
        responses = self._all_responses() if self._mapped else [self._one_response()]
        return [vector for response in responses for vector in self._read("embeddings", embedding_vectors, response)]

    @property
    def output(self) -> str:
        """The URI an embedding step with `output` wrote its vectors under (its manifest's `output`)."""
        self._require("output")
        return str(self._one_response().get("output"))

    @property
    def outputs(self) -> list[str]:
        """A for_each embedding step's output URIs, one per item, in item order."""
        self._require("outputs")
        return [str(manifest.get("output")) for manifest in self._all_responses()]

    def _read(self, output: str, read: Callable[[Mapping[str, Any]], Any], response: Any) -> Any:
        if isinstance(response, Mapping) and "parts" in response and "data" not in response:
            # A manifest: the vectors are in storage, not in XCom; reading them into a template would
            # defeat the point of `output` (and could not fit in a request anyway).
            raise AirflowFailException(
                f"steps.{self._step_id}.{output}: step '{self._step_id}' wrote its {response.get('count')} vectors "
                f"to {response.get('output')} (the step sets `output`): read them from there, e.g. in the next "
                f"system that ingests them; steps.{self._step_id}.output gives the URI"
            )
        try:
            return read(response if isinstance(response, Mapping) else {})
        except NoContentError as error:
            raise AirflowFailException(
                f"steps.{self._step_id}.{output}: step '{self._step_id}' returned no {_WHAT[output]}: {error}"
            ) from None
        except OVHCloudAIEndpointsError as error:
            raise AirflowFailException(
                f"steps.{self._step_id}.{output}: step '{self._step_id}' has no JSON answer: {error}"
            ) from None

    def _require(self, output: str) -> None:
        provided = outputs_of(self._kind, self._mapped)
        if output in provided:
            return
        # Deterministic: retrying cannot help, so fail without using the task's retries.
        meant = mapped_counterpart(output, self._mapped)
        if meant in provided:
            runs = "runs once per item (for_each): read" if self._mapped else "runs once: read"
            raise AirflowFailException(
                f"steps.{self._step_id}.{output}: '{self._step_id}' {runs} steps.{self._step_id}.{meant}"
            )
        raise AirflowFailException(
            f"steps.{self._step_id}.{output}: '{self._step_id}' is {_article(self._kind)} {self._kind} step; "
            f"it provides {' and '.join(provided)}"
        )

    def __str__(self) -> str:
        # `{{ steps.x }}` alone is almost always a forgotten `.content`; say so instead of a repr.
        raise AirflowFailException(
            f"steps.{self._step_id} needs an output: "
            + ", ".join(f"steps.{self._step_id}.{name}" for name in outputs_of(self._kind, self._mapped))
        )


_WHAT = {"content": "text", "contents": "text", "json": "JSON", "jsons": "JSON", "embeddings": "vectors"}


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


class StepOutputs:
    """The `steps` name in templates: `steps.<id>` or `steps['<id>']` for ids that are not identifiers."""

    def __init__(self, ti: Any, kinds: Mapping[str, str], mapped: Collection[str] = ()) -> None:
        self._ti = ti
        self._kinds = kinds
        self._mapped = mapped
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
            self._outputs[step_id] = StepOutput(self._ti, step_id, self._kinds[step_id], step_id in self._mapped)
        return self._outputs[step_id]

    def __contains__(self, step_id: object) -> bool:
        return step_id in self._kinds
