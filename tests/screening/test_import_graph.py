"""No import circles anywhere in screening/, across packages too.

import-linter's acyclic_siblings contract (pyproject.toml) checks the modules of each
package among themselves; this walks every module of the app at once, counting imports
inside functions and under TYPE_CHECKING as well, so a circle cannot hide in either.
"""

from __future__ import annotations

import grimp


def circles(package: str) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan), each sorted."""
    graph = grimp.build_graph(package, cache_dir=None)
    modules = sorted(m for m in graph.modules if ".migrations" not in m)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            if ".migrations" in imported or imported not in graph.modules:
                continue
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == module:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for module in modules:
        if module not in index:
            visit(module)
    return found


def test_no_module_of_screening_imports_itself_through_others():  # type: ignore[no-untyped-def]
    assert circles("screening") == []


def test_the_check_finds_a_circle(tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    """The walk itself: two modules importing each other, one inside a function."""
    package = tmp_path / "circled"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from . import b\n")
    (package / "b.py").write_text("def f():\n    from . import a\n    return a\n")
    (package / "c.py").write_text("from . import a\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert circles("circled") == [["circled.a", "circled.b"]]
