"""amqps:// as on the hosted path: the endpoint verifies the broker's certificate chain and
host name (sending SNI) before it takes a task, and says why it refuses one. A TLS
listener with certificates from a test authority stands in front of the test RabbitMQ."""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit

import pytest

from compute_endpoint.endpoint.exit_codes import Exit
from tests.endpoint_harness import EndpointHarness
from tests.sdk import sdk_client
from tests.tls import Authority, TlsProxy

pytestmark = pytest.mark.slow


def double(x):
    return 2 * x


@pytest.fixture
def trusted_authority(tmp_path, monkeypatch) -> Authority:
    """A test authority that this process and its children trust, through $SSL_CERT_FILE."""
    authority = Authority("compute-endpoint test CA")
    monkeypatch.setenv("SSL_CERT_FILE", str(authority.write(tmp_path / "trusted-ca.pem")))
    return authority


@pytest.fixture
def tls_front(broker_url):
    """Start a TLS listener with the given certificate; its amqps:// URL for the same vhost."""
    proxies = []

    def start(cert_and_key) -> tuple[TlsProxy, str]:
        proxy = TlsProxy(*cert_and_key)
        proxy.start()
        proxies.append(proxy)
        vhost = urlsplit(broker_url).path
        return proxy, f"amqps://guest:guest@localhost:{proxy.port}{vhost}"

    yield start
    for proxy in proxies:
        proxy.close()


def test_a_verified_broker_works_end_to_end_through_the_sdk(trusted_authority, tls_front, start_service,
                                                            tmp_path):
    proxy, amqps_url = tls_front(trusted_authority.issue(tmp_path, "localhost"))
    service = start_service(public_broker_url=amqps_url)
    endpoint = EndpointHarness(service, tmp_path / "gc")
    started = endpoint.start()
    try:
        assert "amqps://" in started.stdout and f"localhost:{proxy.port}" in started.stdout
        from globus_compute_sdk import Executor
        from globus_compute_sdk.serialize import PureSourceDill

        client = sdk_client(service.url, endpoint.token, code_serialization_strategy=PureSourceDill())
        with Executor(endpoint_id=endpoint.endpoint_id, client=client, task_group_id=uuid.uuid4()) as executor:
            assert [f.result(timeout=60) for f in [executor.submit(double, i) for i in range(5)]] == [0, 2, 4, 6, 8]
        # The endpoint's links (and the SDK) named the host they expected: SNI.
        assert proxy.server_names.count("localhost") >= 3
    finally:
        endpoint.stop()
        endpoint.kill_everything()


@pytest.mark.parametrize("certificate, cause", [
    ("wrong-name", "its certificate is not issued for 'localhost' (name mismatch)"),
    ("untrusted-issuer", "its certificate is issued by a certificate authority this host does not trust"),
    ("expired", "its certificate has expired"),
])
def test_a_broker_that_fails_verification_is_refused_at_start(certificate, cause, trusted_authority, tls_front,
                                                              start_service, tmp_path):
    issued = {
        "wrong-name": lambda: trusted_authority.issue(tmp_path, "wronghost"),
        "untrusted-issuer": lambda: Authority("someone else's CA").issue(tmp_path, "localhost"),
        "expired": lambda: trusted_authority.issue(tmp_path, "localhost", expired=True),
    }[certificate]()
    proxy, amqps_url = tls_front(issued)
    service = start_service(public_broker_url=amqps_url)
    endpoint = EndpointHarness(service, tmp_path / "gc")
    result = endpoint.cli("start", endpoint.name)
    try:
        assert result.returncode == Exit.UNAVAILABLE, result.stdout + result.stderr
        assert "Refusing the broker at amqps://" in result.stderr
        assert f"the broker at localhost failed TLS verification: {cause}" in result.stderr
        assert "Traceback" not in result.stderr
        assert endpoint.status() != "Running"
    finally:
        endpoint.kill_everything()
