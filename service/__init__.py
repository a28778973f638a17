"""The self-hostable Compute web service used by the demo, the tests and air-gapped sites."""
