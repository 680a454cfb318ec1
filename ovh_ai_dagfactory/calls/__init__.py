"""One call to the endpoint: its parameters, its answer (shape, result, redaction) and its errors.

Imports nothing of the package but `compat` and `provider_info`: the hooks, the job engine and the
Batch API files all build on it. See docs/architecture.md."""
