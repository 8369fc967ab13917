"""``hubctl token ...``: API bearer tokens."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from runtime.cli import output
from runtime.cli.common import JsonOption, database_from_settings

if TYPE_CHECKING:
    from runtime.tokens import TokenStore

app = typer.Typer(help="API bearer tokens.", no_args_is_help=True)


def _store() -> TokenStore:
    from runtime.tokens import TokenStore

    return TokenStore(database_from_settings())


@app.command("create")
def create(
    name: Annotated[str | None, typer.Option("--name", help="A name to recognise and revoke it by.")] = None,
    json_output: JsonOption = False,
) -> None:
    """Create an API token; it is shown once and stored only as a hash."""
    output.set_json(json_output)
    created = _store().create(name=name, actor="hubctl")
    output.emit(created, f"token {created['name']}: {created['token']}\n(shown once; store it now)")


@app.command("list")
def list_(json_output: JsonOption = False) -> None:
    """API tokens (names and dates, never the secrets)."""
    output.set_json(json_output)
    tokens = _store().list()
    lines = [
        f"{t['name']:<24} created {t['created_at']}  "
        + (f"revoked {t['revoked_at']}" if t["revoked_at"] else f"last used {t['last_used_at'] or 'never'}")
        for t in tokens
    ]
    output.emit({"tokens": tokens}, "\n".join(lines) or "no tokens")


@app.command("revoke")
def revoke(name: Annotated[str, typer.Argument(help="Token name.")], json_output: JsonOption = False) -> None:
    """Revoke a token: every later request with it gets 401."""
    output.set_json(json_output)
    revoked = _store().revoke(name=name, actor="hubctl")
    output.emit(revoked, f"token {revoked['name']} revoked at {revoked['revoked_at']}")
