"""The app's Panel-worker bridge (webapp/panel_bridge.py) relies on names Panel and Bokeh
keep private. Each is checked here against the pinned Panel and Bokeh (build/lock.toml),
by import and signature, so moving the pin to a release that drops or changes one fails
here rather than in a browser. No other app module may use a private Panel or Bokeh name.
"""

from __future__ import annotations

import ast
import importlib.util
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WEBAPP = ROOT / "webapp"

panel = pytest.importorskip("panel")
bokeh = pytest.importorskip("bokeh")


def bridge_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("panel_bridge", WEBAPP / "panel_bridge.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def pinned(name: str) -> str:
    lock = tomllib.loads((ROOT / "build" / "lock.toml").read_text())
    return next(pin["version"] for pin in lock["wheel"] if pin["name"] == name)


def test_the_installed_panel_and_bokeh_are_the_pinned_ones():
    # The names below are checked on what is installed: it must be what the site ships.
    assert panel.__version__ == pinned("panel")
    assert bokeh.__version__ == pinned("bokeh")


def definition(path: str, qualified: str) -> ast.AST | None:
    """The def (or ``self.x =`` assignment) of a name in the installed package's source.

    Read, not imported: panel.io.pyodide imports Pyodide's ``js`` module, absent here."""
    origin = importlib.util.find_spec(path.removesuffix(".py").replace("/", ".")).origin
    scope: ast.AST = ast.parse(Path(origin).read_text())
    *owners, name = qualified.split(".")
    for owner in owners:
        scope = next((n for n in scope.body if isinstance(n, ast.ClassDef) and n.name == owner), None)
        if scope is None:
            return None
    for node in ast.walk(scope):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name:
            return node
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Attribute) and t.attr == name and isinstance(t.value, ast.Name) and t.value.id == "self"
                for t in node.targets):
            return node
    return None


@pytest.mark.parametrize("path, qualified, parameters", bridge_module().PRIVATE_NAMES)
def test_every_private_name_exists_with_the_signature_relied_on(path, qualified, parameters):
    node = definition(path, qualified)
    assert node is not None, f"{qualified} is gone from {path} in Panel {panel.__version__} / Bokeh {bokeh.__version__}"
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        actual = tuple(a.arg for a in node.args.posonlyargs + node.args.args + node.args.kwonlyargs)
        assert actual[: len(parameters)] == parameters, f"{qualified}{actual} no longer takes {parameters}"


def test_the_documents_template_variables_take_the_stylesheet_url():
    from bokeh.document import Document

    document = Document()
    document._template_variables["dist_url"] = "./static/panel/"
    assert document.template_variables["dist_url"] == "./static/panel/"


def defined_names(path: Path) -> set[str]:
    """Functions, classes and attributes a module of the app defines itself."""
    tree = ast.parse(path.read_text())
    own = {node.name for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
    return own | {target.attr for node in ast.walk(tree) if isinstance(node, (ast.Assign, ast.AnnAssign))
                  for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
                  if isinstance(target, ast.Attribute)}


def private_names_used(path: Path) -> set[str]:
    """Private names imported from panel/bokeh, and private attributes read off anything
    (the caller drops those the app defines itself)."""
    tree = ast.parse(path.read_text())
    used = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in ("panel", "bokeh"):
            used |= {f"{node.module}.{alias.name}" for alias in node.names if alias.name.startswith("_")}
        elif isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            used.add(node.attr)
    return used


def test_no_other_app_module_uses_a_private_panel_or_bokeh_name():
    modules = [p for p in WEBAPP.rglob("*.py") if p.name != "panel_bridge.py" and "editor" not in p.parts]
    assert modules
    own = set().union(*(defined_names(p) for p in WEBAPP.rglob("*.py")))
    offenders = {str(p.relative_to(WEBAPP)): names - own for p in modules if private_names_used(p) - own}
    assert offenders == {}
    # ...and the bridge declares every private name it uses.
    declared = {qualified.rpartition(".")[2] for _, qualified, _ in bridge_module().PRIVATE_NAMES}
    bridge = WEBAPP / "panel_bridge.py"
    used = {name.rpartition(".")[2] for name in private_names_used(bridge) - defined_names(bridge)}
    assert used <= declared, used - declared


def test_changes_made_in_a_batch_reach_the_page_as_one_patch_after_it():
    """A conversion's end changes several views; each patch costs the page a layout of the
    whole document, so the changes made in ``batched()`` go as one patch, with only the
    last value of each attribute, when the block ends (a change outside goes at once)."""
    from bokeh.document import Document
    from bokeh.models import Div

    bridge = bridge_module().Bridge()
    bridge.document = Document()
    first, second = Div(text="a"), Div(text="b")
    bridge.document.add_root(first)
    bridge.document.add_root(second)
    sent = []
    bridge._dispatch = sent.append  # the page's side of the worker (needs Pyodide's js module)
    bridge.link(send_patch=lambda *_: None)
    sent.clear()  # what linking itself sent
    with bridge.batched():
        first.text = "one"
        second.text = "two"
        first.text = "three"
        assert sent == []  # nothing before the block ends
    assert len(sent) == 1
    assert sorted((event.model.text, event.attr) for event in sent[0]) == [("three", "text"), ("two", "text")]
    second.text = "alone"
    assert len(sent) == 2 and [event.model.text for event in sent[1]] == ["alone"]
