"""The service's store on a real SQLite file: tokens, ownership, and a task's first result."""

from __future__ import annotations

import time

import pytest

from compute_endpoint.service.store import PENDING, Store, hash_token


@pytest.fixture
def store(tmp_path):
    return Store(f"sqlite:///{tmp_path / 'service.db'}")


def test_a_token_names_its_identity_until_it_expires_or_is_revoked(store):
    token = store.create_token("alice")
    short = store.create_token("alice", lifetime_s=0.05)
    assert store.identity_for_token(token) == store.identity_for_token(short) == "alice"
    assert store.identity_for_token(token + "x") is None
    time.sleep(0.1)
    assert store.identity_for_token(short) is None
    [listed, _] = store.list_tokens("alice")
    assert listed.token_sha256 == hash_token(token)  # the hash is kept, never the token
    assert store.revoke_token(hash_token(token)[:12]) == 1
    assert store.identity_for_token(token) is None
    with pytest.raises(ValueError, match="12"):
        store.revoke_token("abc")  # too short to name one token


def test_client_secrets_are_checked_not_stored(store):
    client_id, secret = store.create_client("robot")
    assert store.identity_for_client(client_id, secret) == "robot"
    assert store.identity_for_client(client_id, secret[:-1] + "?") is None


def _task(store, owner="alice", endpoint="e1"):
    store.upsert_endpoint(owner, endpoint, "ep", None, False, None)
    group = store.ensure_task_group(owner, None)
    store.create_tasks(owner, endpoint, group, {"t1": "f1"})
    return group


def test_the_first_result_of_a_task_is_kept_and_a_duplicate_changes_nothing(store):
    group = _task(store)
    [first] = store.complete_tasks([{"id": "t1", "endpoint_id": "e1", "status": "success", "result": "one",
                                     "completion_t": "1"}])
    assert (first.forward, first.owner, first.task_group_id, first.error) == (True, "alice", group, None)
    store.mark_forwarded(["t1"])
    [again] = store.complete_tasks([{"id": "t1", "endpoint_id": "e1", "status": "success", "result": "two",
                                     "completion_t": "2"}])
    assert not again.forward and again.error is None
    assert store.tasks_by_id("alice", ["t1"])["t1"].result == "one"


def test_a_result_from_another_endpoint_or_for_no_task_is_refused(store):
    _task(store)
    forged, missing = store.complete_tasks([{"id": "t1", "endpoint_id": "e2", "status": "success", "result": "forged"},
                                            {"id": "nope", "endpoint_id": "e1", "status": "success", "result": "x"}])
    assert "another endpoint" in forged.error and missing.error == "no such task"
    assert store.tasks_by_id("alice", ["t1"])["t1"].status == PENDING


def test_another_identity_sees_nothing_of_alices(store):
    group = _task(store)
    assert store.endpoint("mallory", "e1") is None
    assert store.tasks_by_id("mallory", ["t1"]) == {}
    assert store.task_group_tasks("mallory", group) is None
    assert store.delete_endpoint("mallory", "e1", "gone") == 0
    assert store.endpoint("alice", "e1") is not None


def test_deleting_an_endpoint_fails_its_pending_tasks_with_the_reason(store):
    _task(store)
    assert store.delete_endpoint("alice", "e1", "endpoint e1 was deleted before this task ran") == 1
    row = store.tasks_by_id("alice", ["t1"])["t1"]
    assert row.status == "failed" and "deleted before this task ran" in row.exception


def test_a_stored_result_not_yet_forwarded_is_forwarded_again_only_from_a_redelivered_message(store):
    """A fresh copy may be another replica's to forward this moment; a redelivered one was
    never acknowledged, so never forwarded."""
    _task(store)
    result = {"id": "t1", "endpoint_id": "e1", "status": "success", "result": "one", "completion_t": "1"}
    [first] = store.complete_tasks([result])
    [fresh_copy] = store.complete_tasks([result])
    [redelivered] = store.complete_tasks([dict(result, redelivered=True)])
    assert (first.forward, fresh_copy.forward, redelivered.forward) == (True, False, True)
    store.mark_forwarded(["t1"])
    [after] = store.complete_tasks([dict(result, redelivered=True)])
    assert not after.forward


def test_replicas_storing_copies_of_one_result_at_once_forward_it_once(postgres_url):
    """Two stores on one PostgreSQL database, as two service replicas have: created at the
    same moment (one migrates, the other waits), then each storing the same results from
    many threads at once; each task is forwarded by exactly one of them."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as pool:
        replicas = list(pool.map(lambda _: Store(postgres_url), range(2)))
    owner, endpoint = "alice", "e1"
    replicas[0].upsert_endpoint(owner, endpoint, "ep", None, False, None)
    group = replicas[0].ensure_task_group(owner, None)
    task_ids = [f"t{i}" for i in range(50)]
    replicas[1].create_tasks(owner, endpoint, group, {t: "f1" for t in task_ids})

    def store_all(replica: Store) -> list[str]:
        fates = replica.complete_tasks([{"id": t, "endpoint_id": endpoint, "status": "success", "result": "r",
                                         "completion_t": "1"} for t in task_ids])
        return [t for t, fate in zip(task_ids, fates, strict=True) if fate.forward]

    with ThreadPoolExecutor(8) as pool:
        forwarded = [t for batch in pool.map(store_all, [replicas[i % 2] for i in range(8)]) for t in batch]
    assert sorted(forwarded) == sorted(task_ids)
    for replica in replicas:
        replica.engine.dispose()


def _user_endpoint(store, endpoint="u1", owner="alice"):
    store.upsert_endpoint(owner, endpoint, f"uep.{endpoint}", None, False, None, None, {"parent": "m1"})
    assert store.touch_user_endpoint(owner, endpoint)


def test_a_user_endpoint_is_reclaimed_only_when_unused_silent_and_owed_nothing(store):
    released: list[str] = []
    _user_endpoint(store, "idle")
    _user_endpoint(store, "owed")
    store.create_tasks("alice", "owed", store.ensure_task_group("alice", None), {"t1": "f1"})
    _user_endpoint(store, "reporting")
    store.upsert_endpoint("alice", "classic", "ep", None, False, None)  # never submitted to as a user endpoint
    cutoff = time.time() + 1  # all of them last used before it
    store.record_status_report("reporting", {"active": True})
    assert sorted(store.stale_user_endpoints(cutoff)) == ["idle", "owed", "reporting"]
    assert sorted(store.stale_user_endpoints(time.time() - 60)) == []
    for endpoint in ("idle", "owed", "classic"):
        store.reclaim_user_endpoint(endpoint, cutoff, released.append)
    assert released == ["idle"]
    assert store.endpoint("alice", "idle") is None and store.endpoint("alice", "owed") is not None
    assert not store.reclaim_user_endpoint("reporting", time.time() - 60, released.append)  # heard from since
    # A release that fails keeps the record for the next sweep.
    _user_endpoint(store, "again")

    def broken(_endpoint_id):
        raise OSError("the broker is away")

    with pytest.raises(OSError):
        store.reclaim_user_endpoint("again", time.time() + 1, broken)
    assert store.endpoint("alice", "again") is not None


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_a_submit_during_a_reclaim_waits_for_it_then_registers_anew(tmp_path, request, database):
    """The reclaim releases the queues and broker user inside its transaction: a submit to that
    user endpoint meanwhile must not declare them (and then lose its tasks to the release)."""
    import threading

    url = f"sqlite:///{tmp_path / 'service.db'}" if database == "sqlite" else request.getfixturevalue("postgres_url")
    store, other_replica = Store(url), Store(url)
    _user_endpoint(store)
    touched: list[bool] = []

    def release(endpoint_id):
        submit = threading.Thread(target=lambda: touched.append(other_replica.touch_user_endpoint("alice", "u1")))
        submit.start()
        submit.join(timeout=1.0)
        assert submit.is_alive(), "the submit did not wait for the reclaim"
        release.submit = submit

    assert store.reclaim_user_endpoint("u1", time.time() + 1, release)
    release.submit.join(timeout=10)
    assert touched == [False]  # it finds no record, so it registers the user endpoint again
