"""A plain ASGI entry point, for any ASGI server: ``uvicorn service.asgi:app``.

Settings come from the POLINGO_* environment (read once); the engine loads in the
background at startup. ``polingo serve`` (service/serve.py) adds option parsing, JSON
logs, the CPU defaults for vLLM and a clean exit when the engine cannot start.
"""

from core.settings import Settings
from service.app import create_app

app = create_app(Settings.from_env())
