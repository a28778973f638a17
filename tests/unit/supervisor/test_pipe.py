"""The child's end of the pipe: pings answered inside receive, a dead supervisor noticed, and
a hung child's stack written to its log when the supervisor sends SIGABRT."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from compute_endpoint.supervisor.control import Ping, Pong, Ready
from compute_endpoint.supervisor.pipe import ParentPipe


def test_receive_answers_pings_and_hands_over_everything_else():
    supervisor, child = multiprocessing.Pipe()
    pipe = ParentPipe(child)
    supervisor.send(Ping(1))
    supervisor.send("work")
    supervisor.send(Ping(2))
    assert pipe.receive(timeout=1) == ["work"]
    assert [supervisor.recv(), supervisor.recv()] == [Pong(1), Pong(2)]
    assert pipe.receive(timeout=0.05) == []  # nothing waiting: empty after the timeout
    pipe.ready()
    assert supervisor.recv() == Ready(os.getpid())


def test_a_gone_supervisor_is_an_end_of_file():
    supervisor, child = multiprocessing.Pipe()
    supervisor.close()
    with pytest.raises(EOFError):
        ParentPipe(child).receive(timeout=1)


def test_sigabrt_writes_every_threads_stack_and_no_core(tmp_path):
    """What the supervisor's first blow to a hung child leaves in the log."""
    hung = textwrap.dedent("""
        import sys, threading, time
        from compute_endpoint.supervisor.pipe import report_stacks_on_abort

        def stuck_in_a_helper():
            time.sleep(60)

        def stuck_in_the_main_loop():
            print("ready", flush=True)
            time.sleep(60)

        report_stacks_on_abort()
        threading.Thread(target=stuck_in_a_helper, daemon=True).start()
        stuck_in_the_main_loop()
    """)
    log = tmp_path / "child.log"
    with open(log, "w") as stderr:
        child = subprocess.Popen([sys.executable, "-c", hung], stdout=subprocess.PIPE, stderr=stderr,
                                 cwd=tmp_path, text=True)
        assert child.stdout.readline() == "ready\n"
        child.send_signal(signal.SIGABRT)
        assert child.wait(10) == -signal.SIGABRT
    text = log.read_text()
    assert "Fatal Python error: Aborted" in text
    assert "stuck_in_the_main_loop" in text and "stuck_in_a_helper" in text
    assert not list(tmp_path.glob("core*"))
