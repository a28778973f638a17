"""The broker plumbing every side uses (the endpoint's links, the service, the CLI's checks):
connections to RabbitMQ or the embedded broker, and the reconnect loop of every broker
client. Apart from protocol/ (wire formats), which stays light enough for worker nodes."""
