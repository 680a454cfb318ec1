"""OVHcloud AI Endpoints for Apache Airflow: a provider and a YAML DAG factory.

Importing the package imports neither Airflow nor openai: `validate` and the spec layer stay
light, and `load_pipelines` pulls in Airflow only when a DAG folder calls it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["load_pipelines", "__version__"]

if TYPE_CHECKING:
    from ovh_ai_dagfactory.factory.loader import load_pipelines


def __getattr__(name: str) -> Any:
    if name == "load_pipelines":
        from ovh_ai_dagfactory.factory.loader import load_pipelines

        return load_pipelines
    raise AttributeError(f"module 'ovh_ai_dagfactory' has no attribute {name!r}")
