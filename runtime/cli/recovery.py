"""``hubctl recovery list``: the sentinel's recovery events as the Hub imported them (on the Hub)."""

from __future__ import annotations

import typer

from runtime.cli import output
from runtime.cli.common import JsonOption, database_from_settings, examples

app = typer.Typer(
    help="Recovery events the sentinel journaled on the Hub VM, imported by the Hub.",
    no_args_is_help=True,
    epilog=examples("hubctl recovery list", "hubctl recovery list --json"),
)


@app.callback()
def recovery() -> None:
    """Recovery events the sentinel journaled on the Hub VM, imported by the Hub."""


@app.command("list")
def list_events(
    json_output: JsonOption = False,
    refresh: bool = typer.Option(
        False, "--refresh", help="Import from the Hub VM's description first (needs Proxmox)."
    ),
) -> None:
    """Every recovery event, oldest first, including those after the Hub's own checkpoint."""
    from runtime.sentinel.hub_import import import_recovery_journal, recovery_events

    output.set_json(json_output)
    if refresh:
        from runtime.cli.common import services_from_settings

        import_recovery_journal(services_from_settings())
    events = recovery_events(database_from_settings())
    lines = [
        f"{e['at']}  {e['kind']}  {e['outcome']}  {e['checkpoint'] or '-'}  {e['detail']}" for e in events
    ]
    output.emit({"events": events}, "\n".join(lines) if lines else "no recovery events")
