"""How a ValidationReport is shown: one small class per output format, apart from the checker."""

from __future__ import annotations

import json
from typing import TextIO

from ovh_ai_dagfactory.spec.parse import ValidationReport


def summary_line(report: ValidationReport) -> str:
    files = report.files_checked
    if report.ok:
        return f"{files} file{'s' if files != 1 else ''} valid"
    errors = len(report.errors)
    bad = len(report.invalid_files)
    return f"{errors} error{'s' if errors != 1 else ''} in {bad} of {files} file{'s' if files != 1 else ''}"


class TextReporter:
    """`FILE:LINE:COL: error: message`, an indented hint line when there is one, then the summary."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def report(self, report: ValidationReport) -> None:
        for error in report.errors:
            print(error.format(), file=self.stream)
        print(summary_line(report), file=self.stream)


class JsonReporter:
    """One JSON object, for tools: files (with their dag_id when valid), errors, summary."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def report(self, report: ValidationReport) -> None:
        invalid = set(report.invalid_files)
        document = {
            "files": [
                {
                    "path": path,
                    "valid": path not in invalid,
                    "dag_id": report.pipelines[path].dag_id if path in report.pipelines else None,
                }
                for path in report.files
            ],
            "errors": [error.to_dict() for error in report.errors],
            "summary": {
                "files": report.files_checked,
                "invalid_files": len(invalid),
                "errors": len(report.errors),
                "valid": report.ok,
                "text": summary_line(report),
            },
        }
        json.dump(document, self.stream, indent=2)
        self.stream.write("\n")


REPORTERS: dict[str, type[TextReporter | JsonReporter]] = {"text": TextReporter, "json": JsonReporter}
