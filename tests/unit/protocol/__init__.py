"""Unit tests of compute_endpoint.protocol."""
