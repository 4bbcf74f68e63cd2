"""Compressed answers for slow links (api/compression.py): JSON past the threshold in the coding the
client prefers, small bodies, media and clients without Accept-Encoding as they are; a /sync of many
rooms sent in parts (http.JSONInParts) and compressed part by part."""

from __future__ import annotations

import gzip
import json
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import brotli
import msgspec
import pytest
import zstandard
from prometheus_client import REGISTRY

from paigham.api import http
from paigham.api.compression import IN_PARTS, choose
from paigham.api.http import JSONInParts
from paigham.sync import sections
from tests.api.conftest import Harness, User, serve

V3 = "/_matrix/client/v3"


def test_choose_follows_q_values_then_preference() -> None:
    available = ("zstd", "br", "gzip")
    assert choose("gzip, deflate, br, zstd", available) == "zstd"
    assert choose("gzip, br", available) == "br"
    assert choose("gzip;q=1.0, zstd;q=0.5", available) == "gzip"
    assert choose("zstd;q=0, gzip", available) == "gzip"
    assert choose("*;q=0.3, gzip;q=0", available) == "zstd"  # * stands for those not named
    assert choose("identity", available) is None
    assert choose("", available) is None
    assert choose("gzip;q=bogus", available) is None
    assert choose("GZIP", ("gzip",)) == "gzip"


async def _big_sync(hs: Harness, name: str = "alice") -> tuple[User, str]:
    alice = await hs.register(name)
    for i in range(8):
        room = await hs.create_room(alice, name=f"Room number {i}")
        for k in range(3):
            await hs.send(alice, room, f"message {k} in room {i}, long enough to be worth compressing")
    return alice, f"{V3}/sync"


async def _raw(hs: Harness, path: str, user: User, coding: str) -> tuple[dict[str, str], bytes]:
    """The answer's headers and its bytes as sent (no decoding)."""
    async with hs.http.stream(
        "GET",
        path,
        headers={"Authorization": f"Bearer {user.token}", "Accept-Encoding": coding},
    ) as r:
        assert r.status_code == 200
        body = b"".join([chunk async for chunk in r.aiter_raw()])
        return dict(r.headers), body


@pytest.mark.parametrize(
    ("accept", "coding", "decode"),
    [
        ("zstd, gzip", "zstd", lambda b: zstandard.ZstdDecompressor().decompressobj().decompress(b)),
        ("br, gzip", "br", brotli.decompress),
        ("gzip", "gzip", gzip.decompress),
    ],
)
async def test_json_answers_are_compressed_in_the_preferred_coding(
    database_url: str, tmp_path: Path, accept: str, coding: str, decode: object
) -> None:
    async with serve(database_url, tmp_path) as hs:
        alice, path = await _big_sync(hs)
        plain_headers, plain = await _raw(hs, path, alice, "identity")
        assert "content-encoding" not in plain_headers and "Accept-Encoding" in plain_headers["vary"]
        headers, sent = await _raw(hs, path, alice, accept)
        assert headers["content-encoding"] == coding and int(headers["content-length"]) == len(sent)
        assert "Accept-Encoding" in headers["vary"]
        assert len(sent) * 3 < len(plain)  # a /sync of repeated keys compresses well
        body = json.loads(decode(sent))  # type: ignore[operator]
        assert set(body["rooms"]["join"]) == set(json.loads(plain)["rooms"]["join"])


async def test_small_bodies_media_and_setting_off_go_out_as_they_are(database_url: str, tmp_path: Path) -> None:
    async with serve(database_url, tmp_path) as hs:
        alice = await hs.register("alice")
        headers, _ = await _raw(hs, f"{V3}/account/whoami", alice, "gzip")
        assert "content-encoding" not in headers  # under compress_min_bytes
        blob = b'{"not": "json, an upload"}' * 200  # compressible bytes, but media
        up = await hs.ok(
            "POST",
            "/_matrix/media/v3/upload",
            alice,
            content=blob,
            headers={"Content-Type": "application/octet-stream"},
        )
        server_name, media_id = up["content_uri"][len("mxc://") :].split("/")
        headers, sent = await _raw(hs, f"/_matrix/client/v1/media/download/{server_name}/{media_id}", alice, "gzip")
        assert "content-encoding" not in headers and sent == blob
    async with serve(database_url, tmp_path / "off", compress_min_bytes=0) as hs:
        alice, path = await _big_sync(hs, "bob")
        headers, _ = await _raw(hs, path, alice, "gzip")
        assert "content-encoding" not in headers


def _ageless(value: Any) -> Any:
    """`value` without the events' `unsigned.age` (time passes between two syncs)."""
    if isinstance(value, dict):
        return {k: _ageless(v) for k, v in value.items() if k != "age"}
    if isinstance(value, list):
        return [_ageless(v) for v in value]
    return value


def _counted(coding: str, kind: str) -> float:
    return REGISTRY.get_sample_value("paigham_http_compressed_bytes_total", {"coding": coding, "size": kind}) or 0.0


async def _send_of(response: JSONInParts) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(dict(message))

    async def receive() -> MutableMapping[str, Any]:
        raise AssertionError("not read")

    await response({"type": "http"}, receive, send)
    return sent


async def test_json_in_parts_sends_the_same_bytes_as_the_whole_in_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http, "PART_BYTES", 100)
    rooms = {f"!room{i}:test": {"events": [{"body": f"message {i} ✓", "n": i}]} for i in range(12)}
    whole = msgspec.json.encode({"next": "s1", "rooms": {"join": rooms, "leave": {}}, "after": [1]})
    members = [(k, msgspec.Raw(msgspec.json.encode(v))) for k, v in rooms.items()]
    response = JSONInParts(
        {"next": "s1", "rooms": {"join": JSONInParts.hole_object(), "leave": {}}, "after": [1]}, members
    )
    sent = await _send_of(response)
    start, *bodies = sent
    assert start["type"] == "http.response.start" and start[IN_PARTS] is True
    assert dict(start["headers"])[b"content-length"] == str(len(whole)).encode()
    assert len(bodies) > 3 and [b["more_body"] for b in bodies] == [True] * (len(bodies) - 1) + [False]
    assert b"".join(b["body"] for b in bodies) == whole
    assert response._members == []  # each member let go once sent

    empty = await _send_of(JSONInParts({"join": JSONInParts.hole_object()}, []))
    assert empty[1]["body"] == b'{"join":{}}' and dict(empty[0]["headers"])[b"content-length"] == b"11"
    with pytest.raises(ValueError):
        JSONInParts({"join": {}}, members)  # no hole


@pytest.mark.parametrize(
    ("accept", "decode"),
    [
        ("zstd", lambda b: zstandard.ZstdDecompressor().decompressobj().decompress(b)),
        ("br", brotli.decompress),
        ("gzip", gzip.decompress),
        ("identity", lambda b: b),
    ],
)
async def test_a_sync_of_many_rooms_goes_in_parts_compressed_as_they_pass(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, accept: str, decode: Any
) -> None:
    async with serve(database_url, tmp_path) as hs:
        alice, path = await _big_sync(hs)
        _, whole = await _raw(hs, path, alice, "identity")  # 8 rooms: one piece
        monkeypatch.setattr(sections, "ENCODE_ROOMS_OVER", 2)  # each room JSON at once: sent in parts
        monkeypatch.setattr(http, "PART_BYTES", 1024)
        raw_before = _counted(accept, "raw")
        headers, sent = await _raw(hs, path, alice, accept)
    assert int(headers["content-length"]) == len(sent)
    body = json.loads(decode(sent))
    assert _ageless(body["rooms"]["join"]) == _ageless(json.loads(whole)["rooms"]["join"])
    if accept == "identity":
        assert "content-encoding" not in headers
    else:
        assert headers["content-encoding"] == accept and len(sent) * 3 < len(decode(sent))
        assert _counted(accept, "raw") - raw_before == len(decode(sent))  # the parts' bytes, all counted
