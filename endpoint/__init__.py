"""What the user touches: CLI, config model, endpoint directory and states, lifecycle.

Imports point one way: this package may use supervisor, workers and protocol; none of
them imports it.
"""
