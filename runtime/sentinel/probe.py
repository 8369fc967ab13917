"""One readiness probe of the Hub: ``GET <hub-url>/readyz`` (interfaces.md).

The answer's JSON carries ``status`` (healthy|degraded|critical), 200 when not critical, 503 when
critical. No answer (refused, timed out, not JSON) is ``None``: whether that is critical depends on
what Proxmox says of the VM, which the caller checks. The standard library only: the sentinel
probes every few seconds and must not drag a web stack in.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass

VERDICTS = ("healthy", "degraded", "critical")


@dataclass(frozen=True, slots=True)
class Probe:
    status: str | None  # healthy | degraded | critical, or None: no usable answer
    detail: str


def readiness(hub_url: str, *, timeout: float) -> Probe:
    url = hub_url.rstrip("/") + "/readyz"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body = response.read(65536)
            code = response.status
    except urllib.error.HTTPError as exc:  # 503 is an answer: the Hub says it is critical
        body, code = exc.read(65536), exc.code
    except (OSError, ValueError) as exc:  # refused, reset, timeout, bad URL
        return Probe(None, f"no answer from {url}: {exc}")
    try:
        status = json.loads(body).get("status")
    except (ValueError, AttributeError):
        return Probe(None, f"{url} answered {code} without a JSON status")
    if status not in VERDICTS:
        return Probe(None, f"{url} answered {code} with status {status!r}")
    return Probe(str(status), f"{url} answered {code}: {status}")
