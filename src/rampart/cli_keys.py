"""``rampart keys create|list|revoke``: manage the guard service's API keys.

The store is a JSON file of hashes (``rampart.serve.keys.KeyStore``); ``create`` prints the
new key once. A running ``rampart serve`` picks up a revocation from its next request.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

keys_app = typer.Typer(help="Create, list and revoke the guard service's API keys (stored "
                       "hashed).", no_args_is_help=True)

STORE = typer.Option(Path("keys.json"), "--store", envvar="RAMPART_KEY_STORE",
                     help="The key store file (JSON of hashes; default keys.json, or "
                     "$RAMPART_KEY_STORE).")
AS_JSON = typer.Option(False, "--json", help="Print one JSON object instead.")
WARNING = "Store this key now: it cannot be shown again (only its hash is kept in {store})."


@keys_app.command("create")
def create(
    name: str = typer.Argument(..., help="Who or what uses the key, e.g. billing-service."),
    rate: str | None = typer.Option(None, "--rate", help="This key's rate limit in inputs, "
                                    "e.g. 600/min, 10/s or 5000/h (default: the service's)."),
    budget: int | None = typer.Option(None, "--budget", help="Total inputs this key may send "
                                      "(default: the service's)."),
    store: Path = STORE,
    as_json: bool = AS_JSON,
) -> None:
    """Create a key and print it once."""
    from rampart.cli import _user_errors, err, out
    from rampart.serve.keys import KeyStore
    from rampart.serve.limits import parse_rate

    with _user_errors():
        per_minute = None if rate is None else parse_rate(rate)
        key, record = KeyStore(store).create(name, rate_per_minute=per_minute,
                                             query_budget=budget)
        warning = WARNING.format(store=store)
        if as_json:
            out.print_json(data={"key": key, "record": record.to_dict(), "store": str(store),
                                 "warning": warning})
            return
        out.print(key, highlight=False, soft_wrap=True)
        err.print(f"[yellow]{escape(warning)}[/]", highlight=False, soft_wrap=True)
        err.print(f"key id {record.key_id} ({escape(record.name)}); clients send it as "
                  "'Authorization: Bearer <key>' or 'X-API-Key: <key>'.", highlight=False,
                  soft_wrap=True)


@keys_app.command("list")
def list_keys(store: Path = STORE, as_json: bool = AS_JSON) -> None:
    """List the keys (ids, names, limits, revoked or not); never the keys themselves."""
    from rampart.cli import _user_errors, out
    from rampart.serve.keys import KeyStore

    with _user_errors():
        records = KeyStore(store).records()
        if as_json:
            out.print_json(data={"store": str(store), "keys": [r.to_dict() for r in records]})
            return
        if not records:
            out.print(f"no keys in {escape(str(store))}; create one with: rampart keys create "
                      f"NAME --store {escape(str(store))}", highlight=False, soft_wrap=True)
            return
        table = Table(title=f"API keys in {escape(str(store))}")
        table.add_column("key id", no_wrap=True)
        for column in ("name", "created (UTC)", "status", "rate/min", "budget"):
            table.add_column(column, overflow="fold")
        for r in records:
            table.add_row(r.key_id, escape(r.name), r.created[:16].replace("T", " "),
                          "[red]revoked[/]" if r.revoked else "[green]active[/]",
                          "default" if r.rate_per_minute is None else f"{r.rate_per_minute:g}",
                          "default" if r.query_budget is None else str(r.query_budget))
        out.print(table)


@keys_app.command("revoke")
def revoke(
    key_id: str = typer.Argument(..., help="The key id (k_...), as `rampart keys list` shows."),
    store: Path = STORE,
    as_json: bool = AS_JSON,
) -> None:
    """Revoke a key; a running server refuses it from its next request."""
    from rampart.cli import _user_errors, out
    from rampart.serve.keys import KeyStore

    with _user_errors():
        ks = KeyStore(store)
        before = ks.get(key_id)
        record = ks.revoke(key_id)
        already = before is not None and before.revoked
        if as_json:
            out.print_json(data={"store": str(store), "record": record.to_dict(),
                                 "already_revoked": already})
            return
        what = "was already revoked" if already else "is revoked"
        out.print(f"{record.key_id} ({escape(record.name)}) {what}; a running server refuses it "
                  "from its next request.", highlight=False, soft_wrap=True)
