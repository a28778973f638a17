"""The log that every process of the tree writes: rotated by its real size, whoever rotates."""

from __future__ import annotations

import logging
import multiprocessing

from compute_endpoint.workers.logs import SharedRotatingFileHandler


def write_lines(path: str, who: str, count: int) -> None:
    handler = SharedRotatingFileHandler(path, max_bytes=20_000, backups=3)
    record = logging.LogRecord("t", logging.INFO, __file__, 1, f"{who} %s " + "x" * 80, None, None)
    for i in range(count):
        record.args = (i,)
        handler.emit(record)
    handler.close()


def test_processes_writing_at_once_rotate_it_within_its_size_and_lose_no_line_kept(tmp_path):
    path = str(tmp_path / "endpoint.log")
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=write_lines, args=(path, f"p{n}", 300)) for n in range(3)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(30)
        assert writer.exitcode == 0
    files = sorted(tmp_path.glob("endpoint.log*"))
    names = [f.name for f in files if not f.name.endswith(".lock")]
    assert names == ["endpoint.log", "endpoint.log.1", "endpoint.log.2", "endpoint.log.3"]  # 3 backups kept
    for name in names:
        text = (tmp_path / name).read_text()
        assert (tmp_path / name).stat().st_size <= 20_000
        assert all(line.split(" ")[0] in ("p0", "p1", "p2") for line in text.splitlines())  # whole lines only
    newest = (tmp_path / "endpoint.log").read_text().splitlines()
    assert any(line.startswith(("p0 299", "p1 299", "p2 299")) for line in newest)
