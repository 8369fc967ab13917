"""The Hub's HTTP API (FastAPI): a thin layer over the services; errors mapped in one place."""
