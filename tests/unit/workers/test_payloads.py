"""Large bodies kept once, in private files; small ones travel as they are."""

from __future__ import annotations

import os
import pickle
import stat
import uuid

import pytest

from compute_endpoint.workers.payloads import INLINE_MAX, PayloadStore, Stored, load, size_of


def test_small_bodies_stay_bytes_and_large_ones_go_to_a_private_file(tmp_path):
    store = PayloadStore(tmp_path / "bodies")
    small, large = b"x" * INLINE_MAX, os.urandom(INLINE_MAX + 1)
    task_id = str(uuid.uuid4())
    assert store.keep(str(uuid.uuid4()), small) is small
    kept = store.keep(task_id, large)
    assert isinstance(kept, Stored) and size_of(kept) == len(large) and load(kept) == large
    assert pickle.loads(pickle.dumps(kept)) == kept  # what crosses the pipes and a process pool
    assert stat.S_IMODE(os.stat(store.directory).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(kept.path).st_mode) == 0o600
    assert store.stored() == [(task_id, kept)]


def test_a_task_id_never_names_a_path_outside_the_folder(tmp_path):
    with pytest.raises(ValueError):
        PayloadStore(tmp_path / "bodies").write("../../etc/passwd", b"x")


def test_discard_and_clear_remove_only_payloads(tmp_path):
    store = PayloadStore(tmp_path / "bodies")
    ids = [str(uuid.uuid4()) for _ in range(3)]
    refs = [store.write(i, b"body") for i in ids]
    (store.directory / "notes.txt").write_text("not ours")
    store.discard(ids[0])
    store.discard(ids[0])  # twice: no error
    with pytest.raises(FileNotFoundError):
        load(refs[0])
    assert store.clear() == 2
    assert sorted(p.name for p in store.directory.iterdir()) == ["notes.txt"]


def test_rewriting_a_body_never_shows_a_reader_half_a_file(tmp_path):
    store = PayloadStore(tmp_path / "bodies")
    task_id = str(uuid.uuid4())
    ref = store.write(task_id, b"a" * 100_000)
    with open(ref.path, "rb") as reader:  # a worker reading while a redelivery writes it again
        store.write(task_id, b"b" * 100_000)
        assert reader.read() == b"a" * 100_000
    assert load(ref) == b"b" * 100_000


def test_a_body_that_cannot_be_written_is_held_in_memory_all_the_same(tmp_path):
    (tmp_path / "not-a-folder").write_text("a file where the folder should be")
    store = PayloadStore(tmp_path / "not-a-folder")
    large = os.urandom(INLINE_MAX + 1)
    assert store.keep(str(uuid.uuid4()), large) is large
