"""Unit tests of compute_endpoint.endpoint."""
