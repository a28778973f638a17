"""A task can crash only itself: user code that kills the process running it (os._exit, a
segfault, the kernel's OOM killer) costs no other task and never stops the endpoint; a task
over its time limit is stopped; finished results are never held for their chunk-mates.

Everything through the official SDK's Executor, a real service, RabbitMQ and real processes."""

from __future__ import annotations

import os
import random
import signal
import time

import psutil
import pytest

from tests.cgroups import make_memory_cgroup

pytestmark = pytest.mark.slow

WORKERS = 4
# ThreadPoolEngine runs tasks in its own process, so a task that kills it kills the tasks running
# beside it: they count a try, and run again (alone) only with a retry to spare. The other
# engines contain the crash in the worker, and need no retry for the innocent ones.
CONFIGS = {
    "ThreadPoolEngine": f"engine:\n  type: ThreadPoolEngine\n  max_workers: {WORKERS}\n"
                        "  max_retries_on_system_failure: 1\n",
    "ProcessPoolEngine": f"engine:\n  type: ProcessPoolEngine\n  max_workers: {WORKERS}\n",
    "GlobusComputeEngine": f"""\
engine:
  type: GlobusComputeEngine
  max_workers_per_node: {WORKERS}
  heartbeat_period: 1
  job_status_kwargs: {{strategy_period: 1, max_idletime: 30}}
  provider: {{type: LocalProvider, init_blocks: 1, min_blocks: 0, max_blocks: 1}}
""",
}


def nap(seconds):
    import time

    time.sleep(seconds)
    return seconds


def exit_abruptly(status):
    import os

    os._exit(status)


def segfault():
    import os
    import signal

    os.kill(os.getpid(), signal.SIGSEGV)


def exhaust_memory(cgroup_procs):
    """Join a memory cgroup with a small limit, then allocate until the kernel's OOM killer
    takes the process (SIGKILL), as it takes a worker on a login node."""
    import os

    with open(cgroup_procs, "w") as procs:
        procs.write(str(os.getpid()))
    hoard = []
    while True:
        hoard.append(b"\x01" * (16 << 20))


def outcomes(futures, timeout: float = 180) -> list:
    out = []
    for future in futures:
        try:
            out.append(future.result(timeout=timeout))
        except Exception as exc:
            out.append(exc)
    return out


@pytest.fixture
def small_cgroup():
    made = make_memory_cgroup()
    if isinstance(made, str):
        pytest.skip(f"needs a memory cgroup of its own: {made}")
    made.limit(96 << 20)
    yield made
    made.remove()


def crash_rounds(small_cgroup) -> list[tuple[str, object, tuple, str]]:
    """(what, function, arguments, how the worker's death is named)."""
    return [
        ("os._exit(3)", exit_abruptly, (3,), "exited with status 3"),
        ("SIGSEGV", segfault, (), "SIGSEGV"),
        ("out of memory", exhaust_memory, (str(small_cgroup.path / "cgroup.procs"),), "SIGKILL"),
    ]


@pytest.mark.parametrize("engine", list(CONFIGS))
def test_a_task_that_kills_its_worker_fails_alone_and_the_endpoint_runs_on(sdk_endpoint, engine, small_cgroup):
    """3 rounds of 20 tasks of 0.2-0.5 s with one task that kills the process running it: by
    os._exit(3), by SIGSEGV, and by the OOM killer of a memory cgroup. Not one of the others
    fails; the one that crashed gets an error that says how; the endpoint is Running after."""
    endpoint = sdk_endpoint(CONFIGS[engine])
    rng = random.Random(31)
    with endpoint.executor() as executor:
        assert executor.submit(nap, 0).result(timeout=120) == 0  # workers are up
        for what, crash, arguments, named in crash_rounds(small_cgroup):
            durations = [round(rng.uniform(0.2, 0.5), 2) for _ in range(20)]
            futures = [executor.submit(nap, d) for d in durations[:7]]
            crashed = executor.submit(crash, *arguments)
            futures += [executor.submit(nap, d) for d in durations[7:]]
            assert outcomes(futures) == durations, f"{what}: innocent tasks failed"
            [error] = outcomes([crashed])
            assert isinstance(error, Exception), f"{what}: the crashing task had a result: {error!r}"
            text = str(error)
            if engine == "ThreadPoolEngine":  # the task took the engine process with it, twice
                assert "The engine process died while running this task (2 time(s)" in text, text
                assert named in endpoint.log(), f"{what}: the engine's death is not named in the log"
            elif engine == "ProcessPoolEngine":
                assert f"The worker running this task {'was killed by ' if named.startswith('SIG') else ''}" \
                       f"{named}" in text, text
            else:  # Parsl says that its worker was lost, not how
                assert "The worker running this task died" in text and "loss of worker" in text, text
            assert endpoint.status() == "Running", f"{what}: {endpoint.log()[-3000:]}"
    assert "restarting cannot fix that" not in endpoint.log()


def crasher():
    import os

    os._exit(78)  # the status that once meant "my configuration is wrong" to the supervisor


def test_twenty_crashing_tasks_in_a_minute_leave_the_endpoint_running(sdk_endpoint):
    """A steady stream on ThreadPoolEngine (where each crash takes the engine process with it),
    with 20 tasks that kill it mixed in within a minute: far beyond the restart intensity
    (5 in 60 s), yet no crash is the engine's own fault. Every other task is answered."""
    endpoint = sdk_endpoint("engine:\n  type: ThreadPoolEngine\n  max_workers: 2\n"
                            "  max_retries_on_system_failure: 1\n")
    with endpoint.executor() as executor:
        assert executor.submit(nap, 0).result(timeout=120) == 0
        innocent, crashing = [], []
        started = time.monotonic()
        for i in range(100):  # about 20 s at this pace, a crash every second
            innocent.append(executor.submit(nap, 0.05))
            if i % 5 == 2:
                crashing.append(executor.submit(crasher))
            time.sleep(0.2)
        submitted_in = time.monotonic() - started
        assert outcomes(innocent, timeout=300) == [0.05] * 100
        crashes = outcomes(crashing, timeout=300)
    assert len(crashing) == 20 and submitted_in < 60
    assert all(isinstance(c, Exception) and "The engine process died" in str(c) for c in crashes), crashes
    assert endpoint.status() == "Running"
    log = endpoint.log()
    assert "exited with status 78" in log and "so it does not count as a restart" in log
    assert "giving up" not in log and "restarting cannot fix that" not in log


@pytest.mark.parametrize("engine", list(CONFIGS))
def test_an_engine_killed_mid_backlog_fails_only_the_two_tasks_running(sdk_endpoint, engine):
    """10 x sleep(2) on 2 workers (a backlog: the engines run it in chunks), the engine killed
    in the third round, no retries: the 4 finished results had left already, the 2 running fail, the 4
    not started run on the new engine."""
    config = CONFIGS[engine].replace(f": {WORKERS}\n", ": 2\n", 1).replace("  max_retries_on_system_failure: 1\n", "")
    endpoint = sdk_endpoint(config)
    with endpoint.executor() as executor:
        assert executor.submit(nap, 0).result(timeout=120) == 0
        futures = [executor.submit(nap, 2) for _ in range(10)]
        # Two rounds done, then well into the third, by the results themselves: a fixed 4.5 s
        # drifted on a loaded host (GlobusComputeEngine's third round had not all started).
        deadline = time.monotonic() + 60
        while sum(f.done() for f in futures) < 4:
            assert time.monotonic() < deadline, "the first two rounds did not end"
            time.sleep(0.02)
        endpoint.wait_until_running(2, excluding=frozenset(str(f.task_id) for f in futures if f.done()))
        engine_pid = endpoint.children()["engine"]
        if engine == "GlobusComputeEngine":
            [interchange] = [p for p in psutil.Process(engine_pid).children() if "interchange" in p.cmdline()[0]]
            interchange.kill()
        else:
            os.kill(engine_pid, signal.SIGKILL)
        results = outcomes(futures)
    failed = [r for r in results if isinstance(r, Exception)]
    assert len(failed) == 2, results
    assert results.count(2) == 8


def overrun(seconds):
    import time

    time.sleep(seconds)
    return "finished"


@pytest.mark.parametrize("engine", list(CONFIGS))
def test_a_task_over_its_time_limit_gets_an_error_naming_the_limit(sdk_endpoint, engine):
    config = CONFIGS[engine].replace("engine:\n", "engine:\n  task_timeout_s: 2\n", 1)
    endpoint = sdk_endpoint(config)
    with endpoint.executor() as executor:
        assert executor.submit(nap, 0).result(timeout=120) == 0
        started = time.monotonic()
        late = executor.submit(overrun, 12)
        beside = [executor.submit(nap, 1) for _ in range(3)]
        [error] = outcomes([late], timeout=60)
        took = time.monotonic() - started
        assert outcomes(beside) == [1, 1, 1]
        assert executor.submit(nap, 0.1).result(timeout=60) == 0.1  # the engine runs tasks after
    assert isinstance(error, Exception) and "time limit of 2 s" in str(error), error
    assert took < 10, f"the limit was enforced after {took:.1f} s"
    if engine == "ThreadPoolEngine":
        assert "cannot stop a thread" in str(error)
    assert endpoint.status() == "Running"


def test_gc_task_timeout_from_the_environment_limits_tasks(start_service, tmp_path):
    from tests.endpoint_harness import EndpointHarness

    endpoint = EndpointHarness(start_service(), tmp_path / "gc", "ep", CONFIGS["ProcessPoolEngine"])
    endpoint.env["GC_TASK_TIMEOUT"] = "1.5"
    endpoint.start()
    try:
        with endpoint.executor() as executor:
            [error] = outcomes([executor.submit(overrun, 30)], timeout=60)
            assert executor.submit(overrun, 0.1).result(timeout=60) == "finished"
        assert isinstance(error, Exception) and "time limit of 1.5 s" in str(error), error
    finally:
        endpoint.cli("stop", endpoint.name, "--timeout", "10")
        endpoint.kill_everything()
