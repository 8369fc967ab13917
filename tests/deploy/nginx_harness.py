"""Run the real deploy/nginx/hub.conf on loopback, under Debian's nginx, as an unprivileged-port process.

The mechanism (also described in docs/deployment.md): hub.conf is an http-context include holding the
production values. Only the lines tagged ``# loopback: NAME`` differ on a test machine (the listen
ports, the certificate paths, the upstream address). ``render_loopback`` replaces exactly those
directives and refuses to render when a tag is missing, repeated or its production directive changed,
so the file under test is the file that ships, not a second copy. ``main_conf`` is a tiny main
nginx.conf shaped like the nginx image's own (mime types, sendfile, keepalive_timeout in http{}), so a
directive that would clash there clashes here too.

Used by tests/deploy and benchmarks/api_latency.py.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
HUB_CONF = REPO_ROOT / "deploy" / "nginx" / "hub.conf"
NGINX = Path(os.environ.get("HUB_TEST_NGINX", "/usr/sbin/nginx"))

# tag -> the directive as it must read in production
PRODUCTION_DIRECTIVES: dict[str, str] = {
    "upstream": "server 127.0.0.1:8080;",
    "http": "listen 80 default_server;",
    "https": "listen 443 ssl default_server;",
    "certificate": "ssl_certificate     /etc/hub/tls/hub.crt;",
    "key": "ssl_certificate_key /etc/hub/tls/hub.key;",
}
_TAG = re.compile(r"^(?P<indent>\s*)(?P<directive>[^#]*?)\s*#\s*loopback:\s*(?P<tag>\w+)\s*$")


class HarnessError(RuntimeError):
    """The shipped config no longer has the shape the loopback rendering relies on."""


@dataclass(frozen=True, slots=True)
class LoopbackValues:
    http_port: int
    https_port: int
    upstream_port: int
    cert: Path
    key: Path
    listen_address: str = "127.0.0.1"

    def directives(self) -> dict[str, str]:
        a = self.listen_address
        return {
            "upstream": f"server 127.0.0.1:{self.upstream_port};",
            "http": f"listen {a}:{self.http_port} default_server;",
            "https": f"listen {a}:{self.https_port} ssl default_server;",
            "certificate": f"ssl_certificate     {self.cert};",
            "key": f"ssl_certificate_key {self.key};",
        }


def render_loopback(text: str, values: LoopbackValues, *, overrides: Mapping[str, str] | None = None) -> str:
    """hub.conf with only the tagged directives replaced (plus explicit ``overrides``: old -> new, each
    of which must occur exactly once; the benchmark uses none, a test may use one to prove a point)."""
    wanted = values.directives()
    seen: dict[str, int] = {}
    out: list[str] = []
    for line in text.splitlines():
        match = _TAG.match(line)
        if match is None:
            out.append(line)
            continue
        tag, directive = match["tag"], match["directive"].strip()
        if tag not in PRODUCTION_DIRECTIVES:
            raise HarnessError(f"unknown loopback tag {tag!r} in hub.conf")
        if directive != PRODUCTION_DIRECTIVES[tag]:
            raise HarnessError(
                f"hub.conf's {tag} directive is {directive!r}, expected {PRODUCTION_DIRECTIVES[tag]!r}"
            )
        seen[tag] = seen.get(tag, 0) + 1
        out.append(f"{match['indent']}{wanted[tag]}")
    missing = set(PRODUCTION_DIRECTIVES) - set(seen)
    repeated = sorted(tag for tag, n in seen.items() if n > 1)
    if missing or repeated:
        raise HarnessError(f"hub.conf loopback tags: missing {sorted(missing)}, repeated {repeated}")
    rendered = "\n".join(out) + "\n"
    for old, new in (overrides or {}).items():
        if rendered.count(old) != 1:
            raise HarnessError(f"override {old!r} must occur exactly once in hub.conf")
        rendered = rendered.replace(old, new)
    return rendered


def main_conf(*, prefix: Path, include: Path) -> str:
    """A main nginx.conf like the nginx image's, with every writable path under ``prefix``."""
    # As root, nginx would switch workers to `nobody`, who cannot enter pytest's 0700 tmp directory.
    user = "user root;\n" if os.geteuid() == 0 else ""
    temp = "\n".join(
        f"    {kind}_temp_path {prefix / 'temp' / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""{user}worker_processes 1;
daemon off;
pid {prefix / "nginx.pid"};
error_log {prefix / "error.log"} info;
events {{
    worker_connections 1024;
}}
http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log {prefix / "access.log"};
    sendfile on;
    keepalive_timeout 65;
{temp}
    include {include};
}}
"""


def make_self_signed(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 / localhost (key P-256), written as hub.crt / hub.key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hub.test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "hub.crt", directory / "hub.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(port: int, *, timeout: float, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise HarnessError(f"process exited with {process.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise HarnessError(f"nothing listening on 127.0.0.1:{port} after {timeout} s")


@dataclass
class LoopbackNginx:
    """Files for one nginx instance under ``prefix``; ``start()`` runs it, ``stop()`` ends it."""

    prefix: Path
    values: LoopbackValues
    overrides: Mapping[str, str] = field(default_factory=lambda: dict[str, str]())
    process: subprocess.Popen[bytes] | None = None

    @property
    def conf(self) -> Path:
        return self.prefix / "nginx.conf"

    @property
    def error_log(self) -> Path:
        return self.prefix / "error.log"

    def write(self, source: Path = HUB_CONF) -> None:
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (self.prefix / "temp" / kind).mkdir(parents=True, exist_ok=True)
        site = self.prefix / "hub.conf"
        site.write_text(render_loopback(source.read_text(), self.values, overrides=self.overrides))
        self.conf.write_text(main_conf(prefix=self.prefix, include=site))

    def test_config(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(NGINX), "-t", "-p", str(self.prefix), "-c", str(self.conf)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    def start(self, *, timeout: float = 10.0) -> None:
        self.process = subprocess.Popen(
            [str(NGINX), "-p", str(self.prefix), "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            wait_for_port(self.values.https_port, timeout=timeout, process=self.process)
            wait_for_port(self.values.http_port, timeout=timeout, process=self.process)
        except HarnessError as exc:
            self.stop()
            raise HarnessError(f"{exc}; nginx error log:\n{self.log_tail()}") from exc

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            # SIGQUIT: graceful shutdown of nginx's master and workers.
            self.process.send_signal(signal.SIGQUIT)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        if self.process.stderr is not None:
            self.process.stderr.close()
        self.process = None

    def log_tail(self, lines: int = 30) -> str:
        if not self.error_log.exists():
            return "(no error log)"
        return "\n".join(self.error_log.read_text(errors="replace").splitlines()[-lines:])


def client_context(cert: Path) -> ssl.SSLContext:
    """Verifies nginx's certificate against the test's own self-signed one (no verify=False)."""
    return ssl.create_default_context(cafile=str(cert))


def nginx_available() -> bool:
    return NGINX.is_file() and os.access(NGINX, os.X_OK) and shutil.which(str(NGINX)) is not None
