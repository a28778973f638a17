"""Unit tests of compute_endpoint.service."""
