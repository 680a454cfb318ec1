"""Issue 12, "Scale-out", first bullet: the DAG factory on a real distributed Airflow 3.3.

PostgreSQL, Redis, an api-server, a scheduler (CeleryExecutor), a dag-processor and two Celery
workers, each worker a separate "host" with its own AIRFLOW_HOME, its own validation cache and its
own copy of the DAG folder (see `distributed_services.py`; everything on 127.0.0.1, started and
stopped by the test). The DAG folder (as a repository would hold it) has the two-line loader file,
`pipelines/` with the repository's example pipelines, 200 generated pipelines and one broken
pipeline; `DistributedAirflow.sync_dags()` copies it to every host, as git-sync would.

Through the REST API and llmock's request journal only, the test asserts that:

1. the dag-processor parses the loader file into the 200 generated DAGs and every example DAG; the
   broken pipeline is an import error with its FILE:LINE:COL text, filed under its own YAML file,
   and the loader file has none;
2. every example pipeline, triggered over REST at once, succeeds, and their task instances ran on
   both workers (the task instances' `hostname`);
3. a pipeline run several times at once before a change runs on both workers, each of which then
   holds a cache entry for it, and each worker's cache has only the few files it built (the worker
   fast path builds one DAG per task, on a host where the full parse never ran);
4. after the pipeline file is changed on every host (same size, same mtime: only its bytes differ),
   the dag-processor stores a new DAG version, and the next runs, again on both workers, send the
   changed prompt to llmock: no worker reused its cached outcome of the old bytes; each worker's
   entry for the file was rewritten;
5. after stop, no process of the deployment is left (Airflow, Celery, task processes, Postgres,
   Redis).

The test prints its phase timings. Airflow 3.3 only (the CeleryExecutor deployment): on 2.11 it
is skipped. It is skipped too when PostgreSQL, Redis or the `distributed` extra are missing, unless
OVH_AI_E2E_DISTRIBUTED=require (set by .ci/run, which installs them): then it fails.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from e2e.airflow_services import (
    BROKEN_DAG_ID,
    BROKEN_ERROR,
    BROKEN_PIPELINE,
    AirflowServices,
    Deadline,
    ServiceError,
    copy_examples,
    example_dag_ids,
)
from e2e.distributed_services import (
    DistributedAirflow,
    WorkerHost,
    generated_pipeline,
    generated_prompt,
    missing_prerequisites,
)

pytestmark = pytest.mark.e2e

TOKEN = "sk-test-e2e-dist-5b9e2c71d0a4f386"  # fake; asserted never to leak into a log
CONN_ID = "ovh_ai_endpoints_default"
WORKERS = ("worker-a", "worker-b")
N_GENERATED = 200
BUDGET = 600  # seconds for the whole test; it takes ~3 min on 2 cores
LLM_DELAY = 1.0  # llmock holds every answer this long: a burst of tasks overlaps, so both workers take some
BURST = 4  # runs of the changed pipeline triggered at once: more than one worker's concurrency (2)
CHANGED_DAG_ID = "e2e_gen_007"


def _dag_source(root: Path) -> Path:
    """The DAG folder as the repository holds it; every host gets a copy."""
    dags = root / "dags"
    pipelines = dags / "pipelines"
    copy_examples(pipelines)
    for i in range(N_GENERATED):
        (pipelines / f"e2e_gen_{i:03d}.yaml").write_text(generated_pipeline(i, 1))
    (pipelines / "broken_pipeline.yaml").write_text(BROKEN_PIPELINE)
    # No path in it: `pipelines/` next to the loader file, on every host (their paths differ).
    (dags / "ovh_pipelines.py").write_text(
        "# airflow DAG loader: one DAG per pipeline file\n"
        "from ovh_ai_dagfactory import load_pipelines\n"
        "load_pipelines(namespace=globals())\n"
    )
    return dags


def _require_prerequisites() -> None:
    if int(importlib.metadata.version("apache-airflow").split(".")[0]) < 3:
        pytest.skip("the distributed deployment (CeleryExecutor, execution API) is tested on the Airflow 3.3 line")
    missing = missing_prerequisites()
    if missing:
        message = "distributed e2e prerequisites missing: " + "; ".join(missing)
        if os.environ.get("OVH_AI_E2E_DISTRIBUTED") == "require":
            pytest.fail(message)
        pytest.skip(message)


def test_factory_on_a_distributed_celery_airflow(tmp_path: Path, llmock: Any) -> None:
    _require_prerequisites()
    deadline = Deadline(BUDGET)
    phases: dict[str, float] = {}
    examples = example_dag_ids()
    assert len(examples) >= 9, examples
    source = _dag_source(tmp_path / "repo")
    llmock.delay(LLM_DELAY, times=None)
    env = {
        f"AIRFLOW_CONN_{CONN_ID.upper()}": json.dumps(
            {"conn_type": "ovhcloud_ai_endpoints", "host": llmock.base_url("openai"), "password": TOKEN}
        ),
        "AIRFLOW_VAR_LLM_MODEL": "Mistral-Nemo-Instruct-2407",
    }
    dist = DistributedAirflow(
        source,
        workers=WORKERS,
        root=tmp_path / "deployment",
        extra_env=env,
        deadline=deadline,
        # The loader file is re-parsed every 10 s (Airflow's default is 30): a changed pipeline
        # shows up within that; a 200-pipeline parse takes ~1 s warm.
        file_parse_interval=10,
    )
    pids: list[int] = []
    try:
        with dist:
            phases["start"] = deadline.elapsed()
            _scenario(dist, llmock, source, examples, deadline, phases)
            pids = dist.pids()
            assert pids, "no deployment process seen while it ran"
        phases["stop"] = deadline.elapsed()
        # 5. Everything is gone: every process seen while it ran, and no straggler with the marker.
        alive = [pid for pid in pids if _alive(pid)]
        assert not alive, f"processes survived stop(): {alive}"
        assert dist.airflow is not None and dist.airflow._our_pids() == []
        logs = "\n".join(p.read_text(errors="replace") for p in (tmp_path / "deployment").rglob("*.log"))
        assert TOKEN not in logs, "the API token leaked into a service or task log"
    finally:
        marks = ", ".join(f"{name} {t:.1f}s" for name, t in phases.items())
        print(
            f"\ne2e distributed (Celery, Postgres, Redis, {len(WORKERS)} workers, {N_GENERATED} generated "
            f"pipelines): wall {deadline.elapsed():.1f}s; at {marks}; start {dist.timings}"
            + (f", {dist.airflow.memory.summary()}" if dist.airflow else "")
        )


def _scenario(
    dist: DistributedAirflow,
    llmock: Any,
    source: Path,
    examples: dict[str, str],
    deadline: Deadline,
    phases: dict[str, float],
) -> None:
    airflow = dist.airflow
    assert airflow is not None
    api = airflow.api
    generated = {f"e2e_gen_{i:03d}" for i in range(N_GENERATED)}

    # 1. The dag-processor parsed the loader file: 200 + the examples listed, the broken file reported.
    listed, errors = airflow.wait_for_dags(
        generated | set(examples), deadline, import_error_files={"broken_pipeline.yaml"}
    )
    phases["parsed"] = deadline.elapsed()
    by_file = {Path(e["filename"]).name: e for e in errors}
    assert BROKEN_ERROR in by_file["broken_pipeline.yaml"]["stack_trace"], by_file["broken_pipeline.yaml"]
    assert "ovh_pipelines.py" not in by_file, f"the loader file itself failed: {by_file['ovh_pipelines.py']}"
    assert set(by_file) == {"broken_pipeline.yaml"}, sorted(by_file)
    assert BROKEN_DAG_ID not in listed
    assert not [d for d in generated | set(examples) if listed[d].get("has_import_errors")]
    control_entries = _cache_entries(dist.control_cache_dir)
    assert len(control_entries) >= N_GENERATED + len(examples), len(control_entries)

    # 2. Every example, triggered at once over REST, succeeds; the tasks ran on both workers.
    runs = {dag_id: api.trigger(dag_id)["dag_run_id"] for dag_id in sorted(examples)}
    example_tis = _wait_success(airflow, runs, deadline)
    phases["examples"] = deadline.elapsed()
    hosts = _hostnames(example_tis)
    assert hosts == set(WORKERS), f"example tasks ran on {sorted(hosts)}, expected both of {WORKERS}"
    journal = llmock.requests
    assert journal and all(r.status == 200 for r in journal), [(r.path, r.status) for r in journal]
    asked = [r.body["messages"][-1]["content"] for r in journal if r.path.endswith("/chat/completions")]
    assert "Explain machine learning in simple terms." in asked, asked

    # 3. A burst of runs of one generated pipeline: both workers build it (fast path) and cache it.
    i = int(CHANGED_DAG_ID.rsplit("_", 1)[1])
    before = _burst(airflow, CHANGED_DAG_ID, deadline)
    assert _hostnames(before) == set(WORKERS), f"{CHANGED_DAG_ID} ran on {sorted(_hostnames(before))} only"
    assert _prompts(llmock).count(generated_prompt(i, 1)) == BURST, _prompts(llmock)
    changed_name = f"{CHANGED_DAG_ID}.yaml"
    for worker in dist.workers:
        entries = _cache_entries(worker.cache_dir)
        owners = {Path(owner) for owner in entries.values()}
        # Host-local: the entries name this worker's own copy of the files, nothing else.
        assert all(worker.dags_folder in owner.parents for owner in owners), (worker.name, owners)
        assert worker.dags_folder / "pipelines" / changed_name in owners, (worker.name, sorted(owners))
        # Fast path: a worker builds the DAG its task needs, never the 200 (the examples + one).
        assert len(entries) <= len(examples) + 1, (worker.name, len(entries), sorted(owners))
    versions_before = _versions(api, CHANGED_DAG_ID)
    phases["burst_before_change"] = deadline.elapsed()

    # 4. Change the file on every host: same size, same mtime, new bytes. A new DAG version; the
    # next runs (both workers again) send the new prompt.
    path = source / "pipelines" / changed_name
    old = path.read_bytes()
    new = generated_pipeline(i, 2).encode()
    assert len(new) == len(old) and new != old
    stat = path.stat()
    path.write_bytes(new)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    changed_at = time.time()
    dist.sync_dags()
    for host in dist.hosts_dags():
        assert (host / "pipelines" / changed_name).read_bytes() == new
    # Bounded by a few parse intervals (10 s each), not by the whole budget.
    versions = _wait_new_version(airflow, CHANGED_DAG_ID, versions_before, Deadline(min(90, deadline.remaining())))
    phases["new_version"] = deadline.elapsed()
    assert max(v["version_number"] for v in versions) > max(v["version_number"] for v in versions_before)
    n_before = len(llmock.requests)
    after = _burst(airflow, CHANGED_DAG_ID, deadline)
    assert _hostnames(after) == set(WORKERS), f"{CHANGED_DAG_ID} ran on {sorted(_hostnames(after))} only"
    new_prompts = [
        r.body["messages"][-1]["content"] for r in llmock.requests[n_before:] if r.path.endswith("/chat/completions")
    ]
    assert new_prompts == [generated_prompt(i, 2)] * BURST, f"stale pipeline on a worker: prompts sent {new_prompts}"
    for worker in dist.workers:
        entry = _entry_for(worker, changed_name)
        assert entry.stat().st_mtime >= changed_at, f"{worker.name}'s cache entry for {changed_name} was not rewritten"
    phases["burst_after_change"] = deadline.elapsed()


def _wait_success(
    airflow: AirflowServices, runs: dict[str, str], deadline: Deadline, dag_of: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """Wait for every run (run key → run_id; the key is the dag_id unless `dag_of` maps it) to
    succeed; returns all their task instances."""
    out = []
    for key, run_id in runs.items():
        dag_id = (dag_of or {}).get(key, key)
        final = airflow.wait_for_run(dag_id, run_id, deadline)
        tis = airflow.api.task_instances(dag_id, run_id)
        assert final["state"] == "success", (
            f"{dag_id} run {run_id} {final['state']}; tasks "
            f"{sorted((t['task_id'], t['map_index'], t['state'], t.get('hostname')) for t in tis)}\n" + airflow.logs()
        )
        out.extend(tis)
    return out


def _burst(airflow: AirflowServices, dag_id: str, deadline: Deadline) -> list[dict[str, Any]]:
    runs = {f"{dag_id}#{n}": airflow.api.trigger(dag_id)["dag_run_id"] for n in range(BURST)}
    return _wait_success(airflow, runs, deadline, dag_of={key: dag_id for key in runs})


def _hostnames(tis: Iterable[dict[str, Any]]) -> set[str]:
    return {ti.get("hostname") or "?" for ti in tis}


def _prompts(llmock: Any) -> list[str]:
    return [r.body["messages"][-1]["content"] for r in llmock.requests if r.path.endswith("/chat/completions")]


def _versions(api: Any, dag_id: str) -> list[dict[str, Any]]:
    return api.request("GET", f"/dags/{dag_id}/dagVersions", query={"limit": 100})["dag_versions"]


def _wait_new_version(
    airflow: AirflowServices, dag_id: str, before: list[dict[str, Any]], deadline: Deadline
) -> list[dict[str, Any]]:
    known = {v["version_number"] for v in before}
    while True:
        airflow.check_alive()
        versions = _versions(airflow.api, dag_id)
        if {v["version_number"] for v in versions} - known:
            return versions
        if deadline.expired():
            raise ServiceError(
                f"no new version of {dag_id} after the change ({deadline.elapsed():.0f}s); versions {versions}\n"
                + airflow.logs()
            )
        time.sleep(1)


def _cache_entries(cache_dir: Path) -> dict[Path, str]:
    """The validation-cache entries under `cache_dir` (one JSON file per pipeline file), by entry
    path → the pipeline file it is for (its `owner`)."""
    out = {}
    for entry in cache_dir.glob("*/specs/*/*.json"):
        out[entry] = json.loads(entry.read_bytes())["owner"]
    return out


def _entry_for(worker: WorkerHost, name: str) -> Path:
    target = worker.dags_folder / "pipelines" / name
    matches = [entry for entry, owner in _cache_entries(worker.cache_dir).items() if Path(owner) == target]
    assert len(matches) == 1, (worker.name, name, matches)
    return matches[0]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False
