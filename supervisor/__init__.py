"""A generic OTP-style supervisor tree of processes.

Nothing here knows about AMQP, Globus or tasks: it starts children from specs, routes
their pipe messages through a pluggable dispatcher, and restarts them by policy.
"""
