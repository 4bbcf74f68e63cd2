"""The composition root builds each object once with what it needs: nothing is patched afterwards.

A structural check over the wiring code (src/paigham/app.py's Server and create_app, every plug-in's
wiring module, the CLI's start-up): no statement assigns to an attribute of another
object, and none adds to another object's hook list or registers on it. Plus: building a Server
leaves its configuration as given (the secrets are kept beside it).
"""

from __future__ import annotations

import ast
import asyncio
from collections.abc import Iterator
from pathlib import Path

import msgspec

from paigham.app import Server
from paigham.config import Config

SRC = Path(__file__).resolve().parents[1] / "src" / "paigham"
WIRING_FILES = [SRC / "cli" / "common.py", *sorted(SRC.glob("*/wiring.py"))]
APP_SCOPES = ("Server", "create_app")
# Calls that add to a collection or register a callback on the object they are called on.
REGISTERING = {"append", "extend", "insert", "add", "update", "setdefault", "subscribe", "on_resume", "every"}


def _scopes() -> Iterator[tuple[str, ast.AST]]:
    app = ast.parse((SRC / "app.py").read_text(encoding="utf-8"))
    found = [n for n in app.body if isinstance(n, (ast.ClassDef, ast.FunctionDef)) and n.name in APP_SCOPES]
    assert sorted(n.name for n in found) == sorted(APP_SCOPES)
    for node in found:
        yield f"app.py:{node.name}", node
    for path in WIRING_FILES:
        yield str(path.relative_to(SRC)), ast.parse(path.read_text(encoding="utf-8"))


def _targets(node: ast.AST) -> Iterator[ast.expr]:
    if isinstance(node, ast.Assign):
        for target in node.targets:
            yield from _flatten(target)
    elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
        yield from _flatten(node.target)


def _flatten(target: ast.expr) -> Iterator[ast.expr]:
    if isinstance(target, (ast.Tuple, ast.List)):
        for element in target.elts:
            yield from _flatten(element)
    else:
        yield target


def _patches(tree: ast.AST) -> Iterator[str]:
    for node in ast.walk(tree):
        for target in _targets(node):
            # `self.name = ...` builds the object itself; anything else changes another object.
            own = isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name) and target.value.id == "self"
            if isinstance(target, (ast.Attribute, ast.Subscript)) and not own:
                yield f"line {target.lineno}: {ast.unparse(target)} = ..."
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id == "setattr":
                yield f"line {node.lineno}: {ast.unparse(node)}"
            if (
                isinstance(func, ast.Attribute)
                and func.attr in REGISTERING
                and (isinstance(func.value, ast.Attribute) or func.attr in {"subscribe", "on_resume", "every"})
            ):
                yield f"line {node.lineno}: {ast.unparse(func)}(...)"


def test_the_wiring_patches_no_object_after_construction() -> None:
    found = {where: list(_patches(tree)) for where, tree in _scopes()}
    assert {where: lines for where, lines in found.items() if lines} == {}


def test_the_check_finds_patching() -> None:
    code = """
def connect(auth, bus, writer):
    auth.announce = bus.publish
    self.rooms.creation_hooks.append(check)
    bus.subscribe(listener)
    setattr(auth, "x", 1)
    self.auth = AuthService(config)
    hooks = []
    hooks.append(check)
"""
    assert len(list(_patches(ast.parse(code)))) == 4


def test_no_extension_point_is_left_for_the_composition_root_to_set() -> None:
    said = [p for p in SRC.rglob("*.py") if "set by the composition root" in p.read_text(encoding="utf-8")]
    assert said == []


def test_building_a_server_leaves_its_configuration_as_given(tmp_path: Path) -> None:
    config = Config(data_dir=str(tmp_path / "data"), create_admin=False)
    before = msgspec.to_builtins(config)
    srv = Server(config)
    try:
        assert msgspec.to_builtins(config) == before
        assert config.registration_shared_secret == ""
        # The generated secret is kept in the data dir and beside the configuration, not in it.
        kept = (tmp_path / "data" / "registration-shared-secret").read_text(encoding="utf-8").strip()
        assert srv.secrets.registration_shared_secret == kept != ""
    finally:
        asyncio.run(srv.db.close())


def test_a_configured_shared_secret_is_the_one_used(tmp_path: Path) -> None:
    srv = Server(Config(data_dir=str(tmp_path), create_admin=False, registration_shared_secret="s3cret"))
    try:
        assert srv.secrets.registration_shared_secret == "s3cret"
        assert not (tmp_path / "registration-shared-secret").exists()
    finally:
        asyncio.run(srv.db.close())
