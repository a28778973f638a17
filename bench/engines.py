"""No-op tasks per second through each of our engines, against the raw executor under it.

Ours run real task messages (unpack the SDK-serialized function and arguments, run,
serialize the result, pack a Result); the baselines run a bare function call on the
same executor with the same worker count, in the same run.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid

from compute_endpoint.endpoint.config import parse_config
from compute_endpoint.endpoint.tree import engine_options
from compute_endpoint.protocol import messages
from compute_endpoint.protocol.serialize import STRATEGIES_BY_NAME, pack_buffers, serialize
from compute_endpoint.workers.engines.base import build_engine
from compute_endpoint.workers.pipe_messages import TaskDelivery

WORKERS = 4
TASKS = int(os.environ.get("BENCH_ENGINE_TASKS", "2000"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))



def configured(engine_yaml: str) -> dict:
    """An engine's options as the endpoint builds it: from config.yaml, defaults included."""
    return engine_options(parse_config(f"engine: {engine_yaml}").engine)

def noop():
    return None


# The raw executors call a function every worker can import, pickled by reference.
RAW_NOOP = os.getpid


def task_messages(count: int) -> list[TaskDelivery]:
    # by source, as a notebook user's function travels: workers need not import this module
    code = pack_buffers([STRATEGIES_BY_NAME["PureSourceDill"].serialize(noop)])
    payload = pack_buffers([serialize(()), serialize({})])
    out = []
    for i in range(count):
        task_id = str(uuid.uuid4())
        body = messages.pack(messages.Task(task_id=uuid.UUID(task_id), task_buffer=code + payload))
        out.append(TaskDelivery(task_id, i, "bench", {}, body))
    return out


def time_engine(engine, tasks: list[TaskDelivery]) -> float:
    done = threading.Event()
    remaining = [len(tasks)]
    lock = threading.Lock()

    failures = []

    def finished(result) -> None:
        if messages.unpack(result.packed).is_error:
            failures.append(messages.unpack(result.packed).data)
        with lock:
            remaining[0] -= 1
            if remaining[0] == 0:
                done.set()

    started = time.perf_counter()
    for task in tasks:
        engine.submit(task, finished)
    if not done.wait(600):
        raise RuntimeError("engine did not finish")
    if failures:
        raise RuntimeError(f"{len(failures)} benchmark tasks failed, e.g.: {failures[0]}")
    return len(tasks) / (time.perf_counter() - started)


def time_executor(executor, count: int) -> float:
    started = time.perf_counter()
    futures = [executor.submit(RAW_NOOP) for _ in range(count)]
    concurrent.futures.wait(futures)
    return count / (time.perf_counter() - started)


def time_htex(htex, count: int) -> float:
    started = time.perf_counter()
    futures = [htex.submit(RAW_NOOP, {}) for _ in range(count)]
    concurrent.futures.wait(futures)
    return count / (time.perf_counter() - started)


def warm(fn, *args) -> None:
    fn(*args)  # start workers, import modules: not part of the figure


def main() -> None:
    from parsl.executors import HighThroughputExecutor
    from parsl.providers import LocalProvider

    os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]
    run_dir = tempfile.mkdtemp(prefix="bench-engines-")
    results: dict[str, list[float]] = {}

    thread_engine = build_engine(configured(f"{{type: ThreadPoolEngine, max_workers: {WORKERS}}}"), "bench")
    process_engine = build_engine(configured(f"{{type: ProcessPoolEngine, max_workers: {WORKERS}}}"), "bench")
    gce = build_engine(configured(f"{{type: GlobusComputeEngine, max_workers_per_node: {WORKERS}, provider: "
                                  "{type: LocalProvider, init_blocks: 1, min_blocks: 1, max_blocks: 1}}"),
                       "bench", run_dir=os.path.join(run_dir, "ours"))
    raw_threads = concurrent.futures.ThreadPoolExecutor(WORKERS)
    raw_processes = concurrent.futures.ProcessPoolExecutor(WORKERS, mp_context=multiprocessing.get_context("spawn"))
    raw_htex = HighThroughputExecutor(label="raw", max_workers_per_node=WORKERS, encrypted=False,
                                      provider=LocalProvider(init_blocks=1, min_blocks=1, max_blocks=1))
    raw_htex.run_dir = os.path.join(run_dir, "raw")
    os.makedirs(raw_htex.run_dir)
    raw_htex.provider.script_dir = raw_htex.run_dir
    raw_htex.start()
    from parsl.jobs.job_status_poller import JobStatusPoller

    raw_poller = JobStatusPoller(strategy="simple", max_idletime=120, strategy_period=1)  # as a DFK would
    raw_poller.add_executors([raw_htex])

    cases = {
        "ThreadPoolEngine (ours)": lambda n: time_engine(thread_engine, task_messages(n)),
        "ThreadPoolExecutor (raw)": lambda n: time_executor(raw_threads, n),
        "ProcessPoolEngine (ours)": lambda n: time_engine(process_engine, task_messages(n)),
        "ProcessPoolExecutor (raw)": lambda n: time_executor(raw_processes, n),
        "GlobusComputeEngine (ours)": lambda n: time_engine(gce, task_messages(n)),
        "Parsl HTEX (raw)": lambda n: time_htex(raw_htex, n),
    }
    try:
        for fn in cases.values():
            warm(fn, 50)
        for _ in range(ROUNDS):  # alternate, so drift in machine load hits every case alike
            for name, fn in cases.items():
                results.setdefault(name, []).append(fn(TASKS))
                print(f"  {name}: {results[name][-1]:.0f} tasks/s", file=sys.stderr, flush=True)
    finally:
        for engine in (thread_engine, process_engine, gce):
            engine.shutdown(cancel_pending=True)
        raw_threads.shutdown()
        raw_processes.shutdown()
        raw_poller.close()
        raw_htex.shutdown()

    print(f"\nEngines: no-op tasks/s, {TASKS} tasks, {WORKERS} workers, median of {ROUNDS} rounds")
    print(f"{'engine':<30} {'tasks/s':>9} {'vs raw':>7}")
    names = list(cases)
    for ours, raw in zip(names[0::2], names[1::2], strict=True):
        ours_rate, raw_rate = statistics.median(results[ours]), statistics.median(results[raw])
        print(f"{ours:<30} {ours_rate:>9.0f} {ours_rate / raw_rate:>7.2f}")
        print(f"{raw:<30} {raw_rate:>9.0f} {'1.00':>7}")


if __name__ == "__main__":
    main()
