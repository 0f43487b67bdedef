"""FastAPI's WebSockets tutorial on plain Starlette."""

__version__ = "0.1.0"
