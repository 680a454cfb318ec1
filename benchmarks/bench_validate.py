"""Benchmark: validate 1,000 generated pipeline files (~10 steps each).

Times, in the same run and on the same files:
  - `parse_pipeline_file` in-process (what the loader pays for a changed file);
  - `ovh-ai-dagfactory validate DIR` in a subprocess (what CI and pre-commit run);
  - `check-jsonschema --schemafile schemas/pipeline.schema.json FILES` (PyPI), when installed.
Prints the times and the ratio to check-jsonschema (target: ≤ 0.5×).

    .venv-airflow3/bin/python benchmarks/bench_validate.py [--files 1000] [--steps 10]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "schemas" / "pipeline.schema.json"
HEADER = "# yaml-language-server: $schema=../schemas/pipeline.schema.json\n"


def pipeline_text(index: int, steps: int) -> str:
    """A realistic pipeline: chat steps chained through templates, then an embedding of the last answer."""
    lines = [
        HEADER,
        f"dag_id: generated_{index:04d}\n",
        f"description: Generated pipeline number {index}\n",
        'schedule: "@daily"\nstart_date: 2024-01-01\ncatchup: false\ntags: [bench, llm]\n',
        "default_args: {owner: data, retries: 3, retry_delay: 30s}\n",
        "defaults:\n  chat: {model: Meta-Llama-3_3-70B-Instruct, temperature: 0.3}\n  embedding: {model: BGE-M3}\n",
        "steps:\n",
    ]
    for number in range(steps - 1):
        lines.append(
            f"  step_{number}:\n    type: chat\n    messages:\n"
            "      - {role: system, content: You are a data analyst.}\n"
        )
        source = "{{ ds }}" if number == 0 else f"{{{{ steps.step_{number - 1}.content }}}}"
        lines.append(
            f'      - role: user\n        content: "Summarise report {index} for {{{{ ds }}}}: {source}"\n'
            f"    max_tokens: {100 + number}\n"
        )
        if number:
            lines.append(f"    depends_on: [step_{number - 1}]\n")
    lines.append(
        f'  embed:\n    type: embedding\n    input: "{{{{ steps.step_{steps - 2}.content }}}}"\n'
        "    retries: 5\n    retry_delay: 1m\n"
    )
    return "".join(lines)


def write_pipelines(folder: Path, count: int, steps: int) -> list[str]:
    paths = []
    for index in range(count):
        path = folder / f"pipeline_{index:04d}.yaml"
        path.write_text(pipeline_text(index, steps), encoding="utf-8")
        paths.append(str(path))
    return paths


def timed(action) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def in_process(paths: list[str]) -> float:
    from ovh_ai_dagfactory.spec import parse_pipeline_file
    from ovh_ai_dagfactory.spec.references import step_references

    parse_pipeline_file(paths[0])  # compile the validator first
    best = float("inf")
    for _ in range(3):  # best of 3; template caches cleared so every run parses every template
        step_references.cache_clear()
        best = min(best, timed(lambda: [parse_pipeline_file(path) for path in paths]))
    return best


def run(command: list[str]) -> float:
    def action() -> None:
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise SystemExit(
                f"{command[0]} failed ({result.returncode}):\n{result.stdout[-2000:]}{result.stderr[-2000:]}"
            )

    return timed(action)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=10)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "pipelines"
        folder.mkdir()
        paths = write_pipelines(folder, options.files, options.steps)
        n = len(paths)
        print(f"{n} pipeline files, {options.steps} steps each, in {folder}")
        full = in_process(paths)
        print(
            f"in-process parse_pipeline_file, schema + checks (best of 3): {full:7.3f} s  ({full / n * 1000:.3f} ms/file)"
        )
        ours = run([sys.executable, "-m", "ovh_ai_dagfactory.cli.main", "validate", str(folder)])
        print(f"ovh-ai-dagfactory validate (subprocess)                    : {ours:7.3f} s")
        checker = shutil.which("check-jsonschema") or str(Path(sys.executable).parent / "check-jsonschema")
        if not Path(checker).exists():
            print("check-jsonschema not installed (pip install check-jsonschema): no ratio")
            return 0
        theirs = run([checker, "--schemafile", str(SCHEMA), *paths])
        print(f"check-jsonschema (subprocess)                              : {theirs:7.3f} s")
        print(f"ratio validate / check-jsonschema                          : {ours / theirs:.2f}x  (target <= 0.5x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
