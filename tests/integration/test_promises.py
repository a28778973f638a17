"""Promises a user leans on, through the official SDK's Executor and real processes: an engine
crash costs only the tasks that were running; a busy engine is not taken for a hung one (a
stuck one still is); and what functions print cannot grow the logs past their limit."""

from __future__ import annotations

import math
import os
import re
import signal
import time

import psutil
import pytest

pytestmark = pytest.mark.slow

WORKERS = 2
CONFIGS = {
    "ThreadPoolEngine": f"engine:\n  type: ThreadPoolEngine\n  max_workers: {WORKERS}\n",
    "ProcessPoolEngine": f"engine:\n  type: ProcessPoolEngine\n  max_workers: {WORKERS}\n",
    "GlobusComputeEngine": f"""\
engine:
  type: GlobusComputeEngine
  max_workers_per_node: {WORKERS}
  job_status_kwargs: {{strategy_period: 1, max_idletime: 30}}
  provider: {{type: LocalProvider, init_blocks: 1, min_blocks: 0, max_blocks: 1}}
""",
}


def nap(seconds):
    import time

    time.sleep(seconds)
    return seconds


def backtrack(n):
    """Holds the interpreter lock for the whole match: re runs in C without releasing it."""
    import re
    import time

    started = time.monotonic()
    assert re.match(r"(a+)+$", "a" * n + "b") is None
    return time.monotonic() - started


def freeze():
    import os
    import signal

    os.kill(os.getpid(), signal.SIGSTOP)  # the whole engine stops: no answer, no progress


def chatter(megabytes, line_bytes):
    import sys

    line = "x" * (line_bytes - 1) + "\n"
    for _ in range(megabytes * 1024 * 1024 // line_bytes):
        sys.stdout.write(line)
    sys.stdout.flush()
    return megabytes


def outcomes(futures, timeout: float = 120) -> list:
    out = []
    for future in futures:
        try:
            out.append(future.result(timeout=timeout))
        except Exception as exc:
            out.append(exc)
    return out


@pytest.mark.parametrize("engine", list(CONFIGS))
def test_an_engine_crash_fails_only_the_running_tasks(sdk_endpoint, engine):
    """3x as many tasks as workers; the engine (for GlobusComputeEngine: its interchange) is
    killed while the first ones run. With max_retries_on_system_failure 0, exactly the tasks
    that were running fail; the queued ones go to the new engine and succeed."""
    endpoint = sdk_endpoint(CONFIGS[engine])
    with endpoint.executor() as executor:
        assert executor.submit(nap, 0).result(timeout=120) == 0  # workers are up
        futures = [executor.submit(nap, 3) for _ in range(3 * WORKERS)]
        endpoint.wait_until_running(WORKERS)  # the first tasks run now, each for 3 s
        engine_pid = endpoint.children()["engine"]
        if engine == "GlobusComputeEngine":
            [interchange] = [p for p in psutil.Process(engine_pid).children() if "interchange" in p.cmdline()[0]]
            interchange.kill()
        else:
            os.kill(engine_pid, signal.SIGKILL)
        results = outcomes(futures)
    failed = [r for r in results if isinstance(r, Exception)]
    assert len(failed) == WORKERS, results
    assert all("died while running this task (1 time(s); max_retries_on_system_failure is 0)" in str(f)
               for f in failed), failed
    assert results.count(3) == 2 * WORKERS


def _backtracking_size(seconds: float) -> int:
    """The n for which backtrack(n) takes at least about this long here (it doubles with each
    step). Timed by the fastest of three runs: a machine busy while this calibrates would
    otherwise make n too small for the quieter moment the task runs in."""
    def fastest(n: int) -> float:
        return min(backtrack(n) for _ in range(3))

    n = 16
    while fastest(n) < 0.2:
        n += 1
    return n + max(0, math.ceil(math.log2(seconds / fastest(n))))


def test_a_task_holding_the_interpreter_longer_than_the_hung_timeout_completes(sdk_endpoint):
    size = _backtracking_size(10.0)
    endpoint = sdk_endpoint("hung_child_timeout_s: 3\nengine:\n  type: ThreadPoolEngine\n  max_workers: 2\n")
    engine_pid = endpoint.children()["engine"]
    with endpoint.executor() as executor:
        # The calibration cannot foresee how busy the machine is when the task runs: a task
        # that ended too soon to test the timeout is run again, twice as long.
        for extra in range(3):
            took = executor.submit(backtrack, size + extra).result(timeout=120)
            if took > 3 * 2:
                break
    assert took > 3 * 2, f"the task held the interpreter only {took:.1f} s: not a test of the timeout"
    assert endpoint.children()["engine"] == engine_pid, "the busy engine was replaced"
    assert re.search(r"engine \(pid \d+\) has not answered for [\d.]+ s but used [\d.]+ s of CPU in the last 3 s, "
                     r"and waited [\d.]+ s for one: busy, not hung; waiting", endpoint.log())
    assert "hung (stuck, not busy)" not in endpoint.log()


def test_a_stuck_engine_is_still_replaced(sdk_endpoint):
    endpoint = sdk_endpoint("hung_child_timeout_s: 3\nengine:\n  type: ThreadPoolEngine\n  max_workers: 2\n")
    engine_pid = endpoint.children()["engine"]
    with endpoint.executor() as executor:
        [frozen] = outcomes([executor.submit(freeze)])
        assert executor.submit(nap, 0).result(timeout=60) == 0  # the new engine runs tasks
    assert isinstance(frozen, Exception) and "engine process died while running this task" in str(frozen)
    assert endpoint.children()["engine"] != engine_pid
    assert re.search(r"engine \(pid \d+\) has not answered for [\d.]+ s and used [\d.]+ s of CPU meanwhile: hung "
                     r"\(stuck, not busy\); killing it", endpoint.log())


@pytest.mark.parametrize("engine", ["ThreadPoolEngine", "ProcessPoolEngine"])
def test_what_functions_print_cannot_grow_the_logs_past_their_limit(sdk_endpoint, engine):
    from compute_endpoint.workers.logs import BACKUPS, MAX_BYTES, MAX_OUTPUT_LINE

    endpoint = sdk_endpoint(CONFIGS[engine])
    with endpoint.executor() as executor:
        printed = [executor.submit(chatter, 20, 1000) for _ in range(4)]  # 80 MB in lines
        printed.append(executor.submit(chatter, 12, 12 * 1024 * 1024))  # one 12 MB line
        assert [f.result(timeout=300) for f in printed] == [20] * 4 + [12]
        assert executor.submit(nap, 0).result(timeout=60) == 0
    time.sleep(1)  # the last output reaches the log
    logs = sorted(endpoint.directory.glob("endpoint.log*"))
    logs = [p for p in logs if not p.name.endswith(".lock")]
    sizes = {p.name: p.stat().st_size for p in logs}
    assert len(logs) <= BACKUPS + 1, sizes
    assert all(size <= MAX_BYTES for size in sizes.values()), sizes
    text = endpoint.log()
    assert "task output" in text and "Traceback" not in text
    assert "[... that line went on for" in "".join(p.read_text(errors="replace") for p in logs), \
        "the 12 MB line was not cut"
    assert max(len(line) for line in text.splitlines()) < MAX_OUTPUT_LINE + 1000
