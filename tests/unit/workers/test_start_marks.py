"""Start marks on real files: every task id a worker marks is read once, in the order each
worker marked them, whatever the writers and the reader interleave; files a writer is done
with are removed."""

from __future__ import annotations

import multiprocessing
import os

from compute_endpoint.workers import start_marks
from compute_endpoint.workers.start_marks import StartMarkReader, mark_started


def mark_many(directory: str, prefix: str, count: int) -> None:
    for i in range(count):
        mark_started(directory, f"{prefix}-{i}")


def test_each_mark_is_read_once_while_writers_move_on_to_new_files(tmp_path):
    """Three worker processes, 20,000 marks each: five files each at LINES_PER_FILE = 4,096."""
    directory = str(tmp_path)
    reader = StartMarkReader(directory)
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=mark_many, args=(directory, f"w{n}", 20_000)) for n in range(3)]
    for writer in writers:
        writer.start()
    seen: list[str] = []
    while any(writer.is_alive() for writer in writers):
        seen += reader.read()
    seen += reader.read()
    assert len(seen) == len(set(seen)) == 60_000
    for n in range(3):  # each writer's marks in its order
        assert [s for s in seen if s.startswith(f"w{n}-")] == [f"w{n}-{i}" for i in range(20_000)]
    assert len(os.listdir(directory)) == 3  # each writer's last file; those it moved on from are gone
    assert reader.read() == []


def test_a_line_being_written_waits_for_the_next_read(tmp_path, monkeypatch):
    monkeypatch.setattr(start_marks, "LINES_PER_FILE", 1)
    reader = StartMarkReader(str(tmp_path))
    mark_started(str(tmp_path), "a")
    [name] = os.listdir(tmp_path)
    with open(tmp_path / name, "ab") as marks:
        marks.write(b"half-writ")
    assert reader.read() == ["a"]
    with open(tmp_path / name, "ab") as marks:
        marks.write(b"ten\n")
    mark_started(str(tmp_path), "b")  # a new file: the first one is done
    assert reader.read() == ["half-written", "b"]
    assert len(os.listdir(tmp_path)) == 1
