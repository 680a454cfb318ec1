"""The pipeline spec: YAML files → typed `Pipeline` objects, with no Airflow and no openai."""

from ovh_ai_dagfactory.spec.errors import PipelineError, PipelineInvalid
from ovh_ai_dagfactory.spec.model import (
    ChatStep,
    DefaultArgs,
    EmbeddingStep,
    Message,
    Pipeline,
    Position,
    Step,
    TaskOptions,
)
from ovh_ai_dagfactory.spec.parse import (
    PathNotFound,
    ValidationReport,
    parse_pipeline_file,
    parse_pipeline_text,
    pipeline_files,
    validate_paths,
)

__all__ = [
    "ChatStep",
    "DefaultArgs",
    "EmbeddingStep",
    "Message",
    "PathNotFound",
    "Pipeline",
    "PipelineError",
    "PipelineInvalid",
    "Position",
    "Step",
    "TaskOptions",
    "ValidationReport",
    "parse_pipeline_file",
    "parse_pipeline_text",
    "pipeline_files",
    "validate_paths",
]
