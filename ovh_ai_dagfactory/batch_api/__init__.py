"""OVH's Batch API: the request and result files of a batch job, its errors, and the decisions of a
wait for it (shared by the trigger and the operator's polling). The calls are `hooks/batch.py`'s."""
