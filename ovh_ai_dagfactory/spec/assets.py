"""Asset URIs (a `schedule` list, a step's `outlets`) as Airflow accepts them, checked by `validate`.

The rules are those of Airflow's own URI sanitizing (Asset on 3.x, Dataset on 2.11): ASCII only, not
blank, the `airflow` scheme reserved, no credentials in the URI. Scheme-specific normalizers of
providers (s3, gcs, ...) may refuse more when the DAG is built; the loader reports that refusal at
the key too.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from ovh_ai_dagfactory.spec.fan_out import Problem


def asset_uri_problem(uri: str) -> str | None:
    if not uri.strip():
        return "is blank"
    if not uri.isascii():
        return "has characters outside ASCII, which Airflow refuses in an asset URI"
    try:
        parts = urlsplit(uri)
    except ValueError as error:
        return f"is not a URI ({error})"
    if parts.scheme.lower() == "airflow":
        return "uses the scheme 'airflow', which Airflow reserves"
    if parts.password or "@" in parts.netloc:
        return "holds credentials: give them in an Airflow connection instead"
    return None


def asset_problems(data: dict[str, Any], steps: dict[str, dict[str, Any]]) -> Iterator[Problem]:
    """Each asset URI of the pipeline's schedule and of its steps' outlets that Airflow would refuse."""
    places: list[tuple[tuple[str | int, ...], Any]] = [(("schedule",), data.get("schedule"))]
    places += [(("steps", step_id, "outlets"), step.get("outlets")) for step_id, step in steps.items()]
    for base, uris in places:
        if not isinstance(uris, list):
            continue
        for index, uri in enumerate(uris):
            problem = asset_uri_problem(uri) if isinstance(uri, str) else None
            if problem:
                yield (
                    (*base, index),
                    f"asset URI {uri!r} {problem}",
                    "write an ASCII URI such as s3://bucket/key",
                    False,
                )
