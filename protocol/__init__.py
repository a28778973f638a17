"""Wire formats shared by the endpoint, its workers and the local service."""
