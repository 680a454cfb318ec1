"""The job engine: many requests of one task (embeddings now), batched, in flight together, paced,
retried, written to storage in parts, with progress and resume. `runner.py` says how a request kind
plugs in. Never imports `hooks/`, `operators/` or `triggers/`: the hook hands it what it needs."""
