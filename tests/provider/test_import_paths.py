"""The import paths users were given keep working after the layout change: `hooks.errors` and
`hooks.results` (named by docs/provider.md) re-export the very objects of `calls.errors` and
`calls.results`, all of them, so an error raised by the hook is caught by the name imported from
either path."""

from __future__ import annotations

import inspect

from ovh_ai_dagfactory.calls import errors, results
from ovh_ai_dagfactory.hooks import errors as errors_path
from ovh_ai_dagfactory.hooks import results as results_path


def _public(module) -> set[str]:
    return {
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and (inspect.isclass(value) or inspect.isfunction(value))
        and value.__module__ == module.__name__
    }


def test_hooks_errors_re_exports_every_error_of_calls_errors():
    assert set(errors_path.__all__) == _public(errors)
    for name in errors_path.__all__:
        assert getattr(errors_path, name) is getattr(errors, name), name


def test_hooks_results_re_exports_every_result_function_of_calls_results():
    assert set(results_path.__all__) == set(results.__all__) == _public(results)
    for name in results_path.__all__:
        assert getattr(results_path, name) is getattr(results, name), name
