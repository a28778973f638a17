"""Task marks on real files: every mark a worker writes is read once, in the order each worker
wrote them, whatever the writers and the reader interleave; files a writer is done with are
removed; a finished task's Result comes whole."""

from __future__ import annotations

import multiprocessing
import os

from compute_endpoint.workers import task_marks
from compute_endpoint.workers.task_marks import Mark, TaskMarkReader, mark_finished, mark_overdue, mark_started


def mark_many(directory: str, prefix: str, count: int) -> None:
    for i in range(count):
        mark_started(directory, f"{prefix}-{i}")


def test_each_mark_is_read_once_while_writers_move_on_to_new_files(tmp_path):
    """Three worker processes, 20,000 marks each: five files each at RECORDS_PER_FILE = 4,096."""
    directory = str(tmp_path)
    reader = TaskMarkReader(directory)
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=mark_many, args=(directory, f"w{n}", 20_000)) for n in range(3)]
    for writer in writers:
        writer.start()
    seen: list[str] = []
    while any(writer.is_alive() for writer in writers):
        seen += [m.task_id for m in reader.read()]
    seen += [m.task_id for m in reader.read()]
    assert len(seen) == len(set(seen)) == 60_000
    for n in range(3):  # each writer's marks in its order
        assert [s for s in seen if s.startswith(f"w{n}-")] == [f"w{n}-{i}" for i in range(20_000)]
    assert len(os.listdir(directory)) == 3  # each writer's last file; those it moved on from are gone
    assert reader.read() == []


def test_a_line_being_written_waits_for_the_next_read(tmp_path, monkeypatch):
    monkeypatch.setattr(task_marks, "RECORDS_PER_FILE", 1)
    reader = TaskMarkReader(str(tmp_path))
    mark_started(str(tmp_path), "a")
    [name] = os.listdir(tmp_path)
    with open(tmp_path / name, "ab") as marks:
        marks.write(b"half-writ")
    assert [m.task_id for m in reader.read()] == ["a"]
    with open(tmp_path / name, "ab") as marks:
        marks.write(b"ten\n")
    mark_started(str(tmp_path), "b")  # a new file: the first one is done
    assert [m.task_id for m in reader.read()] == ["half-written", "b"]
    assert len(os.listdir(tmp_path)) == 1


def test_a_finished_result_is_read_whole_and_only_once_it_is_all_there(tmp_path):
    directory = str(tmp_path)
    reader = TaskMarkReader(directory)
    packed = bytes(range(256)) * 4000 + b"\n=x 3\n"  # binary, with what looks like records inside
    mark_started(directory, "t1")
    assert mark_finished(directory, "t1", packed)
    mark_overdue(directory, "t2")
    assert reader.read() == [Mark("started", "t1"), Mark("finished", "t1", packed), Mark("overdue", "t2")]
    [name] = os.listdir(tmp_path)
    with open(tmp_path / name, "ab") as marks:
        marks.write(b"=t3 10\n01234")  # the writer is halfway through the result
    assert reader.read() == []
    with open(tmp_path / name, "ab") as marks:
        marks.write(b"56789")
    assert reader.read() == [Mark("finished", "t3", b"0123456789")]
