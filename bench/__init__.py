"""Benchmarks: each prints a table against a baseline measured in the same run."""

import logging


def quiet_sdk_logs() -> None:
    """The SDK Executor's result watcher thread outlives its executor and retries the service
    a round has stopped, logging a traceback each time, and pika logs each channel it
    reopens: the bench's table must not drown in them."""
    for name in ("globus_compute_sdk", "pika"):
        logging.getLogger(name).addHandler(logging.NullHandler())
        logging.getLogger(name).propagate = False
