"""The baseline for ``benchmarks.api_latency``: a bare FastAPI app under uvicorn, none of our code.

    .venv/bin/python -m benchmarks.bare_api --port N

``GET /healthz`` and ``GET /api/v1/checkpoints``: the second answers a page of the same shape as the
Hub's (50 items of the public checkpoint document, the total, limit and offset) from memory, through
FastAPI's usual path (a sync handler with a query-parameter dependency and a bearer dependency, the
returned dict serialised by FastAPI). What the Hub adds over it is its own cost: the database read,
authentication against the token table, logging and its middleware.
"""

from __future__ import annotations

import argparse
import datetime as dt
import uuid
from typing import Annotated, Any

import uvicorn
from fastapi import Depends, FastAPI, Query
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

app = FastAPI()
bearer = HTTPBearer(auto_error=False)
_NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
ITEMS = [
    {
        "uuid": str(uuid.UUID(int=i)),
        "vm_id": 100,
        "node": "pve1",
        "snapname": f"hub-{uuid.UUID(int=i).hex}",
        "kind": "scheduled",
        "status": "completed",
        "reason": "benchmark row",
        "created_at": (_NOW - dt.timedelta(hours=i)).isoformat(),
        "completed_at": (_NOW - dt.timedelta(hours=i, seconds=-4)).isoformat(),
        "error": None,
        "protected": False,
        "upid": None,
        "label": "scheduled",
        "vmstate": False,
    }
    for i in range(1000)
]


@app.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/api/v1/checkpoints")
def checkpoints(
    _: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> dict[str, Any]:
    return {"items": ITEMS[offset : offset + limit], "total": len(ITEMS), "limit": limit, "offset": offset}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
