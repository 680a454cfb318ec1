"""DAG-factory load benchmarks (issue 4): P1 folder load, P2 one DAG for a task run, P5 import cost,
and the 10,000-pipeline scale check. Every ratio is between numbers measured in this same run.

    python benchmarks/bench_load.py                 # P1 (500 × 10 steps), P2, P5
    python benchmarks/bench_load.py --scale 10000   # also 10,000 pipelines: one loader vs shards
    python benchmarks/bench_load.py --only p1 --count 200 --baseline ../main-before   # before/after

P1 compares Airflow's own DagBag over three DAG folders holding the same 500 DAGs of 10 chat
tasks: our loader file + 500 pipeline YAML files; 500 hand-written Python DAG files using our
operators; dag-factory (PyPI, `pip install dag-factory`: the `bench` extra) with equivalent YAML.
Our loader is measured cold (empty validation cache: every file fully validated) and warm (the
steady state of a DAG processor that re-parses unchanged files). Each figure is the median of
--repeat fresh processes; Python files are parsed once beforehand so their bytecode is cached,
as in production.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

STEPS = 10
MODEL = "Meta-Llama-3_3-70B-Instruct"
OPERATOR = "ovh_ai_dagfactory.operators.ai_endpoints.OVHCloudAIEndpointsChatCompletionsOperator"


# ---------------------------------------------------------------- the three equivalent folders
def pipeline_yaml(number: int) -> str:
    lines = [
        f"description: Benchmark pipeline {number}",
        'schedule: "@daily"',
        "start_date: 2024-01-01",
        "catchup: false",
        "tags: [bench]",
        "default_args: {owner: bench, retries: 2, retry_delay: 30s}",
        f"defaults:\n  chat: {{model: {MODEL}, temperature: 0.3}}",
        "steps:",
    ]
    for step in range(STEPS):
        lines += [
            f"  step_{step:02}:",
            "    type: chat",
            "    max_tokens: 200",
            "    messages:",
            "      - {role: system, content: You are a data analyst.}",
            f'      - {{role: user, content: "Report part {step} for {{{{ ds }}}}"}}',
        ]
        if step:
            lines.append(f"    depends_on: [step_{step - 1:02}]")
    return "\n".join(lines) + "\n"


def python_dag(number: int) -> str:
    tasks = []
    for step in range(STEPS):
        tasks.append(
            textwrap.indent(
                textwrap.dedent(f"""\
            t{step} = OVHCloudAIEndpointsChatCompletionsOperator(
                task_id="step_{step:02}", model="{MODEL}", temperature=0.3, max_tokens=200,
                messages=[{{"role": "system", "content": "You are a data analyst."}},
                          {{"role": "user", "content": "Report part {step} for {{{{ ds }}}}"}}],
            )"""),
                "    ",
            )
        )
        if step:
            tasks.append(f"    t{step - 1} >> t{step}")
    return (
        textwrap.dedent(f"""\
        from datetime import datetime, timedelta, timezone

        from airflow.sdk import DAG
        from ovh_ai_dagfactory.operators.ai_endpoints import OVHCloudAIEndpointsChatCompletionsOperator

        with DAG(
            dag_id="bench_{number:05}", description="Benchmark pipeline {number}", schedule="@daily",
            start_date=datetime(2024, 1, 1, tzinfo=timezone.utc), catchup=False, tags=["bench"],
            default_args={{"owner": "bench", "retries": 2, "retry_delay": timedelta(seconds=30)}},
        ) as dag:
        """)
        + "\n".join(tasks)
        + "\n"
    )


def dagfactory_yaml(number: int) -> str:
    lines = [
        f"bench_{number:05}:",
        "  default_args: {owner: bench, retries: 2, retry_delay_sec: 30, start_date: 2024-01-01}",
        '  schedule: "@daily"',
        "  catchup: false",
        f"  description: Benchmark pipeline {number}",
        "  tags: [bench]",
        "  tasks:",
    ]
    for step in range(STEPS):
        lines += [
            f"    step_{step:02}:",
            f"      operator: {OPERATOR}",
            f"      model: {MODEL}",
            "      temperature: 0.3",
            "      max_tokens: 200",
            "      messages:",
            "        - {role: system, content: You are a data analyst.}",
            f'        - {{role: user, content: "Report part {step} for {{{{ ds }}}}"}}',
        ]
        if step:
            lines.append(f"      dependencies: [step_{step - 1:02}]")
    return "\n".join(lines) + "\n"


LOADER = """\
# airflow DAG loader (ovh-ai-dagfactory)
from ovh_ai_dagfactory import load_pipelines

load_pipelines({folder!r}, globals(), cache_dir={cache!r}{shard})
"""
DAGFACTORY_LOADER = """\
# airflow DAG loader (dag-factory)
from dagfactory import load_yaml_dags

load_yaml_dags(globals_dict=globals(), dags_folder={folder!r})
"""


def make_ours(root: Path, count: int, cache: Path, shards: int = 1) -> Path:
    dags, pipelines = root / "dags", root / "pipelines"
    dags.mkdir(parents=True)
    pipelines.mkdir()
    for number in range(count):
        (pipelines / f"bench_{number:05}.yaml").write_text(pipeline_yaml(number))
    for shard in range(shards):
        args = f", shard={shard}, shards={shards}" if shards > 1 else ""
        (dags / f"pipelines_{shard}.py").write_text(LOADER.format(folder=str(pipelines), cache=str(cache), shard=args))
    return dags


def make_python(root: Path, count: int) -> Path:
    dags = root / "dags"
    dags.mkdir(parents=True)
    for number in range(count):
        (dags / f"bench_{number:05}.py").write_text(python_dag(number))
    return dags


def make_dagfactory(root: Path, count: int) -> Path:
    dags, configs = root / "dags", root / "configs"
    dags.mkdir(parents=True)
    configs.mkdir()
    for number in range(count):
        (configs / f"bench_{number:05}.yaml").write_text(dagfactory_yaml(number))
    (dags / "dagfactory_loader.py").write_text(DAGFACTORY_LOADER.format(folder=str(configs)))
    return dags


# ---------------------------------------------------------------- measuring in fresh processes
DAGBAG_PROBE = """
import json, sys, time
from airflow.dag_processing.dagbag import DagBag
start = time.perf_counter()
bag = DagBag(dag_folder=sys.argv[1], safe_mode=True)
seconds = time.perf_counter() - start
files = {str(stat.file): stat.duration.total_seconds() for stat in bag.dagbag_stats}
print(json.dumps({"seconds": seconds, "dags": len(bag.dags), "errors": len(bag.import_errors),
                  "files": files}))
"""

TASK_RUN_PROBE = """
import json, os, statistics, sys, time
from airflow.dag_processing.dagbag import DagBag
os.environ["_AIRFLOW_PARSING_CONTEXT_DAG_ID"] = sys.argv[3]
os.environ["_AIRFLOW_PARSING_CONTEXT_TASK_ID"] = "step_00"
one, many = sys.argv[1], sys.argv[2]
DagBag(dag_folder=one, safe_mode=True); DagBag(dag_folder=many, safe_mode=True)  # warm up imports
times = {one: [], many: []}
ratios = []
for _ in range(int(sys.argv[4])):  # alternate, so that outside load hits both alike
    for folder in (one, many):
        start = time.perf_counter()
        bag = DagBag(dag_folder=folder, safe_mode=True)
        times[folder].append(time.perf_counter() - start)
    ratios.append(times[many][-1] / times[one][-1])
print(json.dumps({"one": statistics.median(times[one]), "many": statistics.median(times[many]),
                  "ratio": statistics.median(ratios), "dags": sorted(bag.dag_ids)}))
"""

IMPORT_PROBE = """
import json, sys, time
import airflow.sdk
already = {name for name in ("jsonschema", "yaml", "jinja2") if name in sys.modules}
start = time.perf_counter()
import ovh_ai_dagfactory
from ovh_ai_dagfactory import load_pipelines
seconds = time.perf_counter() - start
added = sorted(name for name in ("jsonschema", "yaml", "jinja2", "openai") if name in sys.modules and name not in already)
print(json.dumps({"seconds": seconds, "openai": "openai" in sys.modules, "added": added}))
"""


def probe(code: str, *args: str, env: dict[str, str]) -> dict:
    # Run in the benchmark's own folder: `python -c` puts the working directory first on sys.path, and
    # from a checkout that would shadow the ovh-ai-dagfactory chosen by PYTHONPATH (--baseline).
    where = Path(env["AIRFLOW_HOME"]).parent
    done = subprocess.run(
        [sys.executable, "-c", code, *args], env=env, cwd=where, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"probe failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def median_probe(code: str, *args: str, env: dict[str, str], repeat: int, before=None) -> dict:
    runs = []
    for _ in range(repeat):
        if before:
            before()
        runs.append(probe(code, *args, env=env))
    result = dict(runs[0])
    result["seconds"] = statistics.median(run["seconds"] for run in runs)
    return result


def airflow_env(home: Path) -> dict[str, str]:
    # PYTHONDONTWRITEBYTECODE dropped: in production the DAG files' and our modules' bytecode is cached
    # (pip compiles site-packages; the DAG processor writes __pycache__), so each figure should not
    # include compiling them (a shell that sets it made every fresh process compile everything).
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AIRFLOW_", "_AIRFLOW")) and key != "PYTHONDONTWRITEBYTECODE"
    }
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "3600",  # measure past the 30 s default, then compare
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "ERROR",
            "PYTHONWARNINGS": "ignore",
        }
    )
    return env


def per_dag(result: dict, count: int) -> str:
    return f"{result['seconds']:7.2f} s  {1000 * result['seconds'] / count:6.2f} ms/DAG  ({result['dags']} DAGs)"


# ---------------------------------------------------------------- the benchmarks
def p1(work: Path, env: dict[str, str], count: int, repeat: int, baseline: Path | None, dagfactory: bool) -> None:
    import importlib.util

    print(
        f"P1: {count} pipelines × {STEPS} chat steps, Airflow DagBag over each folder "
        f"(fresh process per figure; {repeat} interleaved rounds, medians)"
    )
    # name → (folder, the cache to empty first for a cold figure or None, the probe's environment)
    variants: dict[str, tuple[Path, Path | None, dict[str, str]]] = {}
    variants["python"] = (make_python(work / "p1-python", count), None, env)
    trees = {"": env}
    if baseline is not None:  # the same figures for another checkout of ours (e.g. main before a change)
        trees[" (baseline)"] = {**env, "PYTHONPATH": str(baseline)}
    for suffix, tree_env in trees.items():
        cache = work / f"p1-cache{len(suffix)}"
        ours = make_ours(work / f"p1-ours{len(suffix)}", count, cache)
        variants["warm" + suffix] = (ours, None, tree_env)
        variants["cold" + suffix] = (ours, cache, tree_env)
    if dagfactory and importlib.util.find_spec("dagfactory") is not None:
        variants["dag-factory"] = (make_dagfactory(work / "p1-dagfactory", count), None, env)
    elif dagfactory:
        print("  dag-factory not installed (pip install dag-factory, the `bench` extra): skipped")
    for folder, _, variant_env in variants.values():
        probe(DAGBAG_PROBE, str(folder), env=variant_env)  # compile once (bytecode cached), fill the caches
    # Rounds interleave the variants so that load from other processes hits them all alike.
    rounds: list[dict[str, dict]] = []
    for _ in range(repeat):
        results = {}
        for name, (folder, cold_cache, variant_env) in variants.items():
            if cold_cache is not None:
                shutil.rmtree(cold_cache, ignore_errors=True)
            results[name] = probe(DAGBAG_PROBE, str(folder), env=variant_env)
        for folder, cold_cache, variant_env in variants.values():
            if cold_cache is not None:  # refill the cache for the next warm figure
                probe(DAGBAG_PROBE, str(folder), env=variant_env)
        rounds.append(results)

    def seconds(name: str) -> float:
        return statistics.median(result[name]["seconds"] for result in rounds)

    def ratio(name: str, other: str) -> float:
        return statistics.median(result[name]["seconds"] / result[other]["seconds"] for result in rounds)

    labels = {"python": "hand-written Python", "warm": "ovh loader, warm cache", "cold": "ovh loader, cold cache"}
    for name in variants:
        base, _, suffix = name.partition(" ")
        result = dict(rounds[0][name], seconds=seconds(name))
        print(f"  {labels.get(base, base) + (' ' + suffix if suffix else ''):35} {per_dag(result, count)}")
        if result["dags"] != count or result["errors"]:
            print(f"  WARNING: {name}: {result['dags']} DAGs, {result['errors']} import errors")
    for suffix in trees:
        print(f"  ratio ovh warm{suffix} / Python      {ratio('warm' + suffix, 'python'):.2f}×   (target ≤ 0.9×)")
        print(f"  ratio ovh cold{suffix} / Python      {ratio('cold' + suffix, 'python'):.2f}×   (target ≤ 1.0×)")
    if "dag-factory" in variants:
        print(f"  ratio ovh warm / dag-factory {ratio('warm', 'dag-factory'):.2f}×   (target ≤ 0.2×)")
        print(f"  ratio ovh cold / dag-factory {ratio('cold', 'dag-factory'):.2f}×")


def p2(work: Path, env: dict[str, str], repeat: int) -> None:
    print("P2: a task run builds one DAG (Airflow's parsing context set), no cache (a fresh worker)")
    one = make_ours(work / "p2-1", 1, "off")  # type: ignore[arg-type]
    many = make_ours(work / "p2-1000", 1000, "off")  # type: ignore[arg-type]
    result = probe(TASK_RUN_PROBE, str(one), str(many), "bench_00000", str(max(repeat, 3) * 20), env=env)
    print(f"      1 pipeline in the folder:  {1000 * result['one']:6.2f} ms per DagBag (built: {result['dags']})")
    print(f"  1,000 pipelines in the folder: {1000 * result['many']:6.2f} ms per DagBag")
    print(f"  ratio 1,000 / 1 = {result['ratio']:.2f}×   (target ≤ 1.2×)")


def p5(env: dict[str, str], repeat: int) -> None:
    result = median_probe(IMPORT_PROBE, env=env, repeat=max(repeat, 5))
    print(
        f"P5: import ovh_ai_dagfactory + load_pipelines on top of airflow.sdk: {1000 * result['seconds']:.1f} ms "
        f"(target ≤ 50 ms); openai imported: {result['openai']}; heavy modules added by us: {result['added'] or 'none'}"
    )


def scale(work: Path, env: dict[str, str], count: int, shards: int) -> None:
    print(f"Scale: {count} pipelines × {STEPS} steps; Airflow's dagbag_import_timeout is 30 s per file")
    cache = work / "scale-cache"
    single = make_ours(work / "scale-1", count, cache)
    for label, before in (("cold", lambda: shutil.rmtree(cache, True)), ("warm", None)):
        if before:
            before()
        result = probe(DAGBAG_PROBE, str(single), env=env)
        print(
            f"  one loader file, {label}: {result['seconds']:6.1f} s for {result['dags']} DAGs "
            f"({'over' if result['seconds'] > 30 else 'within'} 30 s)"
        )
    sharded = make_ours(work / f"scale-{shards}", count, cache, shards=shards)
    shutil.rmtree(cache, True)
    for label in ("cold", "warm"):
        result = probe(DAGBAG_PROBE, str(sharded), env=env)
        worst = max(result["files"].values())
        print(
            f"  {shards} shard loader files, {label}: slowest file {worst:5.1f} s, all {result['seconds']:5.1f} s, "
            f"{result['dags']} DAGs ({'over' if worst > 30 else 'within'} 30 s per file)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=500, help="pipelines for P1 (default 500)")
    parser.add_argument("--repeat", type=int, default=3, help="fresh processes per figure (median)")
    parser.add_argument("--scale", type=int, default=0, help="also run the scale check with this many pipelines")
    parser.add_argument("--shards", type=int, default=4, help="loader files for the scale check (default 4)")
    parser.add_argument("--only", choices=("p1", "p2", "p5", "scale"), help="run one part")
    parser.add_argument(
        "--baseline",
        type=Path,
        help="P1 also for this checkout of ovh-ai-dagfactory (e.g. a git worktree of main), in the same rounds",
    )
    parser.add_argument("--no-dagfactory", action="store_true", help="P1 without dag-factory (faster)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ovh-bench-load-"))
    try:
        env = airflow_env(work / "airflow-home")
        import airflow

        print(f"Airflow {airflow.__version__}, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs\n")
        if args.only in (None, "p5"):
            p5(env, args.repeat)
        if args.only in (None, "p2"):
            p2(work, env, args.repeat)
        if args.only in (None, "p1"):
            p1(work, env, args.count, args.repeat, args.baseline, not args.no_dagfactory)
        if args.scale and args.only in (None, "scale"):
            scale(work, env, args.scale, args.shards)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
