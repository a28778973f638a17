"""The Compute HTTP API that the endpoint and the official SDK speak.

Every route but the version and the OpenAPI document needs ``Authorization: Bearer
<token>`` with a token from ``compute-service token create``. Errors are JSON
``{"error": "..."}`` naming what was wrong.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI

from ..protocol import messages
from ..protocol.urls import is_embedded
from .broker import Broker
from .broker_users import BrokerUsers
from .http import ERROR_RESPONSES, BodyLimit, install_error_handlers
from .result_consumer import ResultConsumer
from .results import ResultRecorder
from .routes import endpoints, functions, oauth, tasks
from .settings import ServiceConfigError, ServiceSettings
from .store import Store
from .user_endpoints import Reclaimer

log = logging.getLogger(__name__)

MAX_BODY_BYTES = messages.MAX_MESSAGE_BYTES


def create_app(settings: ServiceSettings, store: Store | None = None) -> FastAPI:
    store = store or Store(settings.db_url)
    broker = Broker(settings.broker_url, settings.public_broker_url, _broker_users(settings))
    consumer = ResultConsumer(settings.broker_url, ResultRecorder(store))
    reclaimer = Reclaimer(store, broker, settings.reclaim_user_endpoints_after_s)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        broker.declare_topology()
        consumer.start()
        reclaimer.start()
        yield
        reclaimer.stop()
        consumer.stop()
        consumer.join(timeout=5)
        broker.close()

    app = FastAPI(title="compute-service", version=oauth.API_VERSION, lifespan=lifespan,
                  description=__doc__, responses=ERROR_RESPONSES)
    app.add_middleware(BodyLimit, limit=MAX_BODY_BYTES)
    app.state.settings, app.state.store, app.state.broker, app.state.consumer = settings, store, broker, consumer
    install_error_handlers(app)
    for area in (oauth, endpoints, functions, tasks):
        app.include_router(area.router)
    return app


def _broker_users(settings: ServiceSettings) -> BrokerUsers | None:
    """A broker user of its own for each endpoint and SDK client, unless the operator chose
    shared credentials (or the embedded broker, which has no users)."""
    if is_embedded(settings.broker_url):
        return None
    if not settings.endpoint_broker_users:
        log.warning("--shared-broker-credentials: every endpoint and SDK client gets the service's own broker "
                    "credentials, and can read and publish any endpoint's tasks and results")
        return None
    users = BrokerUsers(settings.broker_url, settings.management_url)
    if not users.available():
        raise ServiceConfigError(
            f"RabbitMQ's management API does not answer at {users.api} (or the service's broker user "
            "may not manage users), so endpoints and SDK clients cannot get broker users of their own, and "
            "handing them the service's credentials would let any of them read and forge everyone's tasks. "
            "Enable it (rabbitmq-plugins enable rabbitmq_management), or, on a machine whose only user is "
            "you, start with --shared-broker-credentials.")
    return users
