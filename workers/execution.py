"""Running one task where the work happens (a pool thread, a pool process, a Parsl worker).

Light on purpose: the protocol package, dill and the standard library only, so it
imports fast on compute nodes. Every outcome, including a function that cannot be
unpacked, becomes a packed Result for the task's id: the endpoint never loses a task
to bad input.
"""

from __future__ import annotations

import functools
import os
import platform
import signal
import threading
import time
import traceback
import uuid

from ..protocol import messages
from ..protocol.serialize import SerializationError, deserialize, disallowed, serialize_from_list, unpack_buffers
from .payloads import Payload, load
from .task_marks import mark_finished, mark_overdue, mark_started

MAX_RESULT_BYTES = messages.MAX_MESSAGE_BYTES
_TASK_ENV_LOCK = threading.Lock()

# The documented error codes the official endpoint uses.
REMOTE_EXECUTION_ERROR = "RemoteExecutionError"
MAX_RESULT_SIZE_EXCEEDED = "MaxResultSizeExceeded"
COULD_NOT_EXECUTE = "CouldNotExecuteUserTaskError"
UNKNOWN_TASK_FAILURE = "UNKNOWN_TASK_FAILURE"
TASK_TIMEOUT = "TaskTimeout"  # the task ran over task_timeout_s / GC_TASK_TIMEOUT
FUNCTION_NOT_ALLOWED = "FUNCTION_NOT_ALLOWED"  # the official code for a function outside allowed_functions


class MaxResultSizeExceeded(Exception):
    def __init__(self, size: int, limit: int):
        super().__init__(f"Task result of {size} bytes exceeds the {limit} byte limit")


def _now_ns() -> int:
    return time.time_ns()


def environment_details(endpoint_id: str | None = None) -> dict:
    """What the SDK compares with its own environment (python and dill versions) to warn of
    pickles that may not cross, as the official endpoint reports it."""
    return {"os": platform.platform(), "python_version": platform.python_version(),
            "dill_version": _installed_version("dill"),
            "globus_compute_sdk_version": _installed_version("globus-compute-sdk"),
            "endpoint_id": endpoint_id}


@functools.cache
def _installed_version(distribution: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return None


def error_result(task_id: str, code: str, text: str, user_message: str | None = None,
                 endpoint_id: str | None = None) -> bytes:
    return messages.pack(messages.Result(
        task_id=uuid.UUID(task_id), data=text, details=messages.JsonObject(environment_details(endpoint_id)),
        error_details=messages.ResultErrorDetails(code=code, user_message=user_message or text.strip()[-500:]),
    ))


def serializer_refusal(task_id: str, body: Payload, allowed: frozenset[str],
                       endpoint_id: str | None = None) -> bytes | None:
    """An error Result for a task whose function or arguments arrived in a serialization
    strategy outside allowed (the engine's allowed_serializers), judged from their headers
    without deserializing anything; None when it may run (or cannot be read: running it
    reports that)."""
    try:
        task = messages.unpack(load(body))
        buffers = unpack_buffers(task.task_buffer) if isinstance(task, messages.Task) else []
    except Exception:
        return None
    why = disallowed(buffers, allowed)
    if why is None:
        return None
    return error_result(task_id, COULD_NOT_EXECUTE, f"DeserializationError: {why}", why, endpoint_id=endpoint_id)


# In a ProcessPoolEngine's worker process: where it tells the engine that a task started
# (set once by the pool's initializer; a worker process runs one task at a time).
_start_notices = None


def send_start_notices_to(notices) -> None:
    global _start_notices
    _start_notices = notices


def notice_start(task_id: str) -> None:
    """In a pool worker process: tell the engine this task started (see send_start_notices_to)."""
    if _start_notices is not None:
        _start_notices.put(task_id)


def run_tasks(tasks: list[tuple[str, Payload, list[str] | None]], endpoint_id: str | None = None,
              on_start=None, on_result=None) -> list[bytes | None]:
    """Run a chunk of tasks one after another, where one call per task would cost more than
    the tasks (a pool's or Parsl's per-call overhead); each gets its own Result. With
    on_result, each Result goes to on_result(task_id, packed) as its task ends (None in the
    list returned): a finished task's result never waits for its chunk-mates."""
    results: list[bytes | None] = []
    for task_id, body, serializers in tasks:
        packed = run_task(task_id, body, serializers, endpoint_id, on_start=on_start)
        if on_result is None:
            results.append(packed)
        else:
            on_result(task_id, packed)
            results.append(None)
    return results


def run_tasks_in(working_dir: str, sandbox: bool, tasks: list[tuple[str, Payload, list[str] | None]],
                 endpoint_id: str | None = None, marks_dir: str | None = None,
                 time_limit_s: float | None = None) -> list[bytes | None]:
    """run_tasks in a worker process of its own (a Parsl worker), each task with its working
    directory as the current one: working_dir, or with sandbox a fresh working_dir/<task id>.
    Each task's Result is marked in marks_dir as it ends (None in the list returned; the list
    holds those that could not be marked), so the engine has it at once."""
    results: list[bytes | None] = []
    for task_id, body, serializers in tasks:
        packed = run_task_in(working_dir, sandbox, task_id, body, serializers, endpoint_id, marks_dir, time_limit_s)
        results.append(None if marks_dir and mark_finished(marks_dir, task_id, packed) else packed)
    return results


def run_task_in(working_dir: str, sandbox: bool, task_id: str, body: Payload,
                result_serializers: list[str] | None = None, endpoint_id: str | None = None,
                marks_dir: str | None = None, time_limit_s: float | None = None) -> bytes:
    """run_task with the task's working directory as the current one (one task at a time in
    this process: never in a thread pool, where the directory is shared); marks its start in
    marks_dir. A task still running at its time limit is marked overdue, and this process
    kills itself: nothing else stops a function stuck in C code, and Parsl starts a new worker."""
    if marks_dir:
        mark_started(marks_dir, task_id)
    directory = os.path.join(working_dir, task_id) if sandbox else working_dir
    # As the official's workers: a sandboxed task is told its directory (ShellFunction runs there).
    if sandbox:
        os.environ["GC_TASK_SANDBOX_DIR"] = directory
    else:
        os.environ.pop("GC_TASK_SANDBOX_DIR", None)
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        os.chdir(directory)
    except OSError as exc:
        return error_result(task_id, COULD_NOT_EXECUTE, f"The task's working directory {directory} "
                            f"cannot be used: {exc}", endpoint_id=endpoint_id)
    if not time_limit_s:
        return run_task(task_id, body, result_serializers, endpoint_id)
    alarm = threading.Timer(time_limit_s, _overdue, args=(marks_dir, task_id))
    alarm.daemon = True
    alarm.start()
    try:
        return run_task(task_id, body, result_serializers, endpoint_id)
    finally:
        alarm.cancel()


def _overdue(marks_dir: str | None, task_id: str) -> None:
    if marks_dir:
        mark_overdue(marks_dir, task_id)
    os.kill(os.getpid(), signal.SIGKILL)


def run_task(task_id: str, body: Payload, result_serializers: list[str] | None = None,
             endpoint_id: str | None = None, max_result_bytes: int = MAX_RESULT_BYTES, on_start=None) -> bytes:
    """Run one task from its message body (its bytes, or the file that keeps them); return
    the packed Result, whatever happens. on_start(task_id), if given, is told first."""
    if on_start is not None:
        on_start(task_id)
    started = _now_ns()
    try:
        task = messages.unpack(load(body))
        if not isinstance(task, messages.Task):
            raise messages.MessageError(f"expected a task message, got {task.message_type}")
        function, args, kwargs = (deserialize(b) for b in unpack_buffers(task.task_buffer))
    except (messages.MessageError, SerializationError, ValueError) as exc:
        return error_result(task_id, COULD_NOT_EXECUTE, f"The task could not be unpacked: {exc}",
                            endpoint_id=endpoint_id)
    except OSError as exc:
        return error_result(task_id, COULD_NOT_EXECUTE, f"The task's body could not be read: {exc}",
                            endpoint_id=endpoint_id)
    except Exception as exc:  # e.g. a module the function needs is missing here
        return error_result(task_id, COULD_NOT_EXECUTE,
                            "The task could not be deserialized:\n" + _format_exception(exc),
                            endpoint_id=endpoint_id)

    with _TASK_ENV_LOCK:
        os.environ["GC_TASK_UUID"] = task_id
    try:
        value = function(*args, **kwargs)
    except BaseException as exc:  # the user's exception, SystemExit included, is the result
        if isinstance(exc, KeyboardInterrupt):
            raise
        return error_result(task_id, REMOTE_EXECUTION_ERROR, _format_exception(exc), repr(exc),
                            endpoint_id=endpoint_id)
    finally:
        # Threads of a ThreadPoolEngine share the environment: remove only our own id, and
        # never race another thread's removal (os.environ.pop is not atomic).
        with _TASK_ENV_LOCK:
            if os.environ.get("GC_TASK_UUID") == task_id:
                del os.environ["GC_TASK_UUID"]
    ended = _now_ns()

    try:
        data = serialize_from_list(value, result_serializers)
    except Exception as exc:
        return error_result(task_id, REMOTE_EXECUTION_ERROR,
                            "The task's result could not be serialized:\n" + _format_exception(exc),
                            endpoint_id=endpoint_id)
    if len(data) > max_result_bytes:
        too_large = MaxResultSizeExceeded(len(data), max_result_bytes)
        return error_result(task_id, MAX_RESULT_SIZE_EXCEEDED, _format_exception(too_large), str(too_large),
                            endpoint_id=endpoint_id)
    return messages.pack(messages.Result(
        task_id=uuid.UUID(task_id), data=data, details=messages.JsonObject(environment_details(endpoint_id)),
        task_statuses=[messages.TaskTransition(started, "execution-start", "worker"),
                       messages.TaskTransition(ended, "execution-end", "worker")],
    ))


def _format_exception(exc: BaseException) -> str:
    # Drop our own frames: the user wants the traceback of their function.
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb))

