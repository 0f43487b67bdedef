"""The pages' Jinja templates: setup.cfg ships this folder as the package `starlette_ws.templates`."""
