"""Each endpoint gets a RabbitMQ user of its own (where the management API answers),
allowed only its own task queue and the results and heartbeats exchanges."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

import amqp.exceptions
import kombu
import pytest
import requests


def register(service, headers, name) -> dict:
    response = requests.post(f"{service.url}/v3/endpoints", headers=headers, json={"endpoint_name": name},
                             timeout=10)
    response.raise_for_status()
    return response.json()


def consume_once(url: str, queue: str) -> None:
    with kombu.Connection(url, connect_timeout=5) as connection:
        channel = connection.channel()
        channel.basic_consume(queue=queue, callback=lambda m: None, no_ack=False, consumer_tag="probe")


def test_an_endpoint_user_reaches_only_its_own_queue(start_service, broker_url, rabbitmq_management):
    service = start_service()
    headers = {"Authorization": f"Bearer {service.token('alice')}"}
    first, second = register(service, headers, "one"), register(service, headers, "two")
    url = first["task_queue_info"]["connection_url"]
    parts = urlsplit(url)
    vhost = urlsplit(broker_url).path[1:]
    assert unquote(parts.username) == f"ep-{first['endpoint_id']}@{vhost}" and parts.password not in ("guest", "", None)
    assert url == first["result_queue_info"]["connection_url"]
    assert urlsplit(second["task_queue_info"]["connection_url"]).password != parts.password

    consume_once(url, f"{first['endpoint_id']}.tasks")  # its own tasks: allowed
    with kombu.Connection(url) as connection:  # results and heartbeats: it may publish, with confirms
        producer = kombu.Producer(connection.channel())
        for key in ("results", "heartbeats"):
            producer.publish(b"x", exchange=key, routing_key=f"{first['endpoint_id']}.{key}", mandatory=True)
    for queue in (f"{second['endpoint_id']}.tasks", "results", "heartbeats"):
        with pytest.raises(amqp.exceptions.AccessRefused):
            consume_once(url, queue)
    with pytest.raises(amqp.exceptions.AccessRefused), kombu.Connection(url) as connection:
        connection.channel().basic_publish(amqp.Message(b"x"), exchange="tasks",
                                           routing_key=f"{second['endpoint_id']}.tasks")
        connection.drain_events(timeout=2)  # the refusal arrives as a channel close

    # Re-registration rotates the password; deleting the endpoint removes the user.
    again = requests.put(f"{service.url}/v3/endpoints/{first['endpoint_id']}", headers=headers,
                         json={"endpoint_name": "one"}, timeout=10).json()
    assert urlsplit(again["task_queue_info"]["connection_url"]).password != parts.password
    with pytest.raises(amqp.exceptions.AccessRefused):
        consume_once(url, f"{first['endpoint_id']}.tasks")
    assert requests.delete(f"{service.url}/v2/endpoints/{first['endpoint_id']}", headers=headers,
                           timeout=10).status_code == 200
    users = requests.get(f"{rabbitmq_management}/users", auth=("guest", "guest"), timeout=10).json()
    assert f"ep-{first['endpoint_id']}@{vhost}" not in {u["name"] for u in users}
    assert f"ep-{second['endpoint_id']}@{vhost}" in {u["name"] for u in users}


def test_shared_credentials_when_asked(start_service, broker_url, rabbitmq_management, tmp_path):
    from tests.conftest import RunningService

    (tmp_path / "shared").mkdir()
    service = RunningService(tmp_path / "shared", None, broker_url, extra_args=["--shared-broker-credentials"])
    try:
        headers = {"Authorization": f"Bearer {service.token('bob')}"}
        assert urlsplit(register(service, headers, "ep")["task_queue_info"]["connection_url"]).username == "guest"
    finally:
        service.stop()


def test_two_services_on_one_rabbitmq_never_share_or_reset_each_others_broker_users(
        start_service, broker_url, vhost_admin, rabbitmq_management, tmp_path):
    """Finding (critical): broker user names were global (`ep-<id>`), so a user of service B who
    registered there the id of a victim's endpoint on service A got the victim's broker user,
    with a new password, and read the victim's tasks on A's vhost."""
    import uuid

    from tests.conftest import RunningService

    victim_service = start_service()
    other_vhost = f"test-{uuid.uuid4().hex[:12]}"
    vhost_admin.create(other_vhost)
    (tmp_path / "b").mkdir()
    other_service = RunningService(tmp_path / "b", None, broker_url.rsplit("/", 1)[0] + "/" + other_vhost)
    try:
        victim = {"Authorization": f"Bearer {victim_service.token('alice')}"}
        attacker = {"Authorization": f"Bearer {other_service.token('alice')}"}  # the same identity name, too
        registered = register(victim_service, victim, "victim")
        endpoint_id = registered["endpoint_id"]
        victims_url = registered["task_queue_info"]["connection_url"]

        taken = requests.put(f"{other_service.url}/v3/endpoints/{endpoint_id}", headers=attacker,
                             json={"endpoint_name": "mine now"}, timeout=10)
        assert taken.status_code == 200, taken.text  # B may register the id: it is B's user it gets
        attackers_url = taken.json()["task_queue_info"]["connection_url"]
        assert urlsplit(attackers_url).username != urlsplit(victims_url).username
        on_victims_vhost = attackers_url.rsplit("/", 1)[0] + "/" + urlsplit(broker_url).path[1:]
        with pytest.raises((amqp.exceptions.AccessRefused, amqp.exceptions.NotAllowed, ConnectionError)):
            consume_once(on_victims_vhost, f"{endpoint_id}.tasks")
        consume_once(victims_url, f"{endpoint_id}.tasks")  # the victim's password was not reset

        # One identity name on two services: two SDK broker users, neither reaching the other vhost.
        sdk_a = requests.get(f"{victim_service.url}/v2/get_amqp_result_connection_url", headers=victim,
                             timeout=10).json()["connection_url"]
        sdk_b = requests.get(f"{other_service.url}/v2/get_amqp_result_connection_url", headers=attacker,
                             timeout=10).json()["connection_url"]
        assert urlsplit(sdk_a).username != urlsplit(sdk_b).username
        with pytest.raises((amqp.exceptions.AccessRefused, amqp.exceptions.NotAllowed, ConnectionError)), \
                kombu.Connection(sdk_b.rsplit("/", 1)[0] + "/" + urlsplit(broker_url).path[1:]) as connection:
            connection.connect()

        # A user that already holds permissions on another vhost is never reset or handed out.
        planted_id = str(uuid.uuid4())
        planted = f"ep-{planted_id}@{other_vhost}"
        api, auth = rabbitmq_management, ("guest", "guest")
        from urllib.parse import quote

        requests.put(f"{api}/users/{quote(planted, safe='')}", auth=auth, json={"password": "p", "tags": ""},
                     timeout=10).raise_for_status()
        requests.put(f"{api}/permissions/{quote(urlsplit(broker_url).path[1:], safe='')}/{quote(planted, safe='')}",
                     auth=auth, json={"configure": "", "write": "", "read": ".*"}, timeout=10).raise_for_status()
        refused = requests.put(f"{other_service.url}/v3/endpoints/{planted_id}", headers=attacker,
                               json={"endpoint_name": "planted"}, timeout=10)
        assert refused.status_code == 409 and "another vhost" in refused.json()["error"], refused.text
        with kombu.Connection(broker_url.replace("guest:guest", f"{quote(planted, safe='')}:p")) as connection:
            connection.connect()  # its password is as it was
        requests.delete(f"{api}/users/{quote(planted, safe='')}", auth=auth, timeout=10)
    finally:
        other_service.stop()
        vhost_admin.delete(other_vhost)
