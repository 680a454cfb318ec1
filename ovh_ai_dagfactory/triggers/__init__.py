"""Triggers: the waits that Airflow's triggerer holds instead of a worker slot."""
