"""Which server the data belongs to. The server name is part of every user ID, room alias and event,
so data made under one name cannot be served under another: the name is stored with the data at the
first start, a start with another name is refused with a clear error, and the admin commands take
the name from the data (`paigham user create rsharma` on ministry.gov.example's data creates
@rsharma:ministry.gov.example, whatever the command line says by default)."""

from __future__ import annotations

from paigham.storage.server_state import ServerStateStore

KEY = "server_name"


class ServerNameMismatch(Exception):
    def __init__(self, configured: str, stored: str) -> None:
        super().__init__(
            f"this data belongs to the server {stored!r}, not {configured!r}: start with "
            f"--server-name {stored} (or server_name: {stored} in the configuration); a server's name "
            "cannot change once it has users, rooms and events"
        )
        self.configured, self.stored = configured, stored


async def stored_name(store: ServerStateStore) -> str | None:
    """The name the data belongs to: stored at the first start, or (data older than that) the server
    part of an existing account's ID; None for empty data."""
    name = await store.get(KEY)
    if name is None:
        user_id = await store.any_user_id()
        name = user_id.split(":", 1)[1] if user_id and ":" in user_id else None
    return name


async def settle(store: ServerStateStore, configured: str) -> None:
    """At start: keep the configured name with the data, or refuse if the data has another."""
    found = await stored_name(store)
    if found is not None and found != configured:
        raise ServerNameMismatch(configured, found)
    stored = await store.put_once(KEY, configured)
    if stored != configured:  # another process stored a different one first
        raise ServerNameMismatch(configured, stored)


def for_command(configured: str, default: str, stored: str | None) -> str:
    """The name an admin command works under: the data's; an explicitly configured other name is an
    error (the default is not a choice, so it yields to the data's)."""
    if stored is None or stored == configured:
        return configured
    if configured == default:
        return stored
    raise ServerNameMismatch(configured, stored)
