"""The one error type for user mistakes in pipeline files.

An error is a value first (file, line, column, message, hint); whoever shows it renders it:
the CLI prints it, the loader hands it to Airflow. Lines and columns are 1-based, as editors show them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PipelineError:
    """One problem in one pipeline file, at a position a user can jump to."""

    file: str
    line: int
    column: int
    message: str
    hint: str | None = None
    #: True for a bug of ovh-ai-dagfactory caught by a last-resort guard, not a mistake in the file.
    internal: bool = False

    def format(self) -> str:
        """`FILE:LINE:COL: error: message`, then the hint on its own line when there is one."""
        text = f"{self.file}:{self.line}:{self.column}: error: {self.message}"
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text

    def to_dict(self) -> dict[str, object]:
        return {
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "message": self.message,
            "hint": self.hint,
            "internal": self.internal,
        }


class PipelineInvalid(Exception):
    """Raised when a pipeline file cannot become a spec; carries every problem found in it."""

    def __init__(self, errors: list[PipelineError]) -> None:
        if not errors:
            raise ValueError("PipelineInvalid needs at least one error")
        self.errors = list(errors)
        super().__init__("\n".join(error.format() for error in self.errors))
