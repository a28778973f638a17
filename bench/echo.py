"""The broker ceiling's echo consumer: republish each message from a queue to the results
exchange, waiting for each publisher confirm, as a simple link would.

    python -m bench.echo AMQP_URL QUEUE ROUTING_KEY
"""

from __future__ import annotations

import sys

import amqp


def main(url: str, queue: str, routing_key: str) -> None:
    parts = url.split("/")

    def connect(**options) -> amqp.Connection:
        connection = amqp.Connection(host=parts[2].rpartition("@")[2], userid="guest", password="guest",
                                     virtual_host=parts[3], **options)
        connection.connect()
        return connection

    # Two connections: waiting for a confirm must not run the consumer's callback again.
    connection, publishing = connect(), connect(confirm_publish=True)
    consumer, producer = connection.channel(), publishing.channel()
    consumer.basic_qos(0, 256, False)

    def echo(message: amqp.Message) -> None:
        producer.basic_publish(amqp.Message(message.body, delivery_mode=2), exchange="results",
                               routing_key=routing_key)  # confirm_publish: waits for the broker's ack
        consumer.basic_ack(message.delivery_tag)

    consumer.basic_consume(queue, callback=echo)
    while True:
        connection.drain_events()


if __name__ == "__main__":
    main(*sys.argv[1:4])
