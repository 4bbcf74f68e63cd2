"""Pure hash-chain rules: the hash of a record and the verification of a run of records.

hash(n) = SHA-256( canonical_json({"prev": hash(n-1), "record": record(n)}) ), hex encoded, where
record(n) is {"seq", "ts", "kind", "actor", "target", "ip", "device", "details"}. The first record
chains from GENESIS (64 zeros); after a retention purge, from the anchor (the last purged record).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from paigham.domain.canonical_json import encode

GENESIS = "0" * 64
FIELDS = ("seq", "ts", "kind", "actor", "target", "ip", "device", "details")


@dataclass(frozen=True, slots=True)
class Record:
    seq: int
    ts: int
    kind: str
    actor: str | None
    target: str | None
    ip: str | None
    device: str | None
    details: dict[str, Any]
    prev_hash: str = ""
    hash: str = ""

    def body(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in FIELDS}

    def to_json(self) -> dict[str, Any]:
        return {**self.body(), "prev_hash": self.prev_hash, "hash": self.hash}


def record_hash(prev_hash: str, body: dict[str, Any]) -> str:
    return hashlib.sha256(encode({"prev": prev_hash, "record": body})).hexdigest()


@dataclass(frozen=True, slots=True)
class Broken:
    """The first broken link: the sequence number where verification failed, and why."""

    seq: int
    reason: str


@dataclass(slots=True)
class Verifier:
    """Feed records in sequence order; the first break is kept in `broken`."""

    expected_seq: int
    expected_prev: str
    checked: int = 0
    broken: Broken | None = None

    def feed(self, records: Iterable[Record]) -> bool:
        """False once a break is found (stop reading)."""
        for r in records:
            if self.broken is not None:
                return False
            if r.seq != self.expected_seq:
                if r.seq > self.expected_seq:
                    missing = (
                        f"record {self.expected_seq} is missing"
                        if r.seq == self.expected_seq + 1
                        else f"records {self.expected_seq}..{r.seq - 1} are missing"
                    )
                    self.broken = Broken(self.expected_seq, missing)
                else:
                    self.broken = Broken(r.seq, f"record {r.seq} is out of order or duplicated")
                return False
            if r.prev_hash != self.expected_prev:
                self.broken = Broken(r.seq, f"record {r.seq} does not link to the record before it")
                return False
            if record_hash(r.prev_hash, r.body()) != r.hash:
                self.broken = Broken(r.seq, f"record {r.seq} was altered (its hash does not match its content)")
                return False
            self.expected_seq = r.seq + 1
            self.expected_prev = r.hash
            self.checked += 1
        return True

    def finish(self, head_seq: int, head_hash: str) -> Broken | None:
        """After the last record: the head must point at it (else records were removed at the end)."""
        if self.broken is None and (self.expected_seq - 1 != head_seq or self.expected_prev != head_hash):
            if self.expected_seq - 1 < head_seq:
                self.broken = Broken(
                    self.expected_seq, f"records {self.expected_seq}..{head_seq} are missing from the end"
                )
            else:
                self.broken = Broken(head_seq, "the chain head does not match the last record")
        return self.broken
