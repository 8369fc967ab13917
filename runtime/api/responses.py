"""A JSON answer encoded once, by the standard library, as FastAPI's own ``JSONResponse`` does
(UTF-8, no spaces). For routes that build their document in the public shape themselves and return
it as a ``Response``, so FastAPI neither re-validates it against the response model nor walks it with
its generic encoder (``jsonable_encoder``): on a 50-row page that walk cost more than the read."""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import Response


class JsonBody(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()
