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


def test_no_module_of_screening_imports_itself_through_others():
    assert circles("screening") == []


def test_the_check_finds_a_circle(tmp_path, monkeypatch):
    """The walk itself: two modules importing each other, one inside a function."""
    package = tmp_path / "circled"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from . import b\n")
    (package / "b.py").write_text("def f():\n    from . import a\n    return a\n")
    (package / "c.py").write_text("from . import a\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert circles("circled") == [["circled.a", "circled.b"]]


CAPABILITIES = ("intake", "reading", "ai", "interop", "audit", "ops")


def arrows_both_ways(package: str, members: tuple[str, ...]) -> list[tuple[str, str]]:
    """Pairs of ``package``'s sub-packages that each import the other, through any modules."""
    graph = grimp.build_graph(package, cache_dir=None)
    arrows = set()
    for source in members:
        for target in members:
            if source != target and graph.find_matching_direct_imports(
                import_expression=f"{package}.{source}.** -> {package}.{target}.**"
            ):
                arrows.add((source, target))
    return sorted((a, b) for a, b in arrows if a < b and (b, a) in arrows)


def test_no_two_capabilities_import_each_other() -> None:
    """Each arrow between capabilities points one way (docs/architecture.md, "Floors and
    arrows"); what must flow back goes through the kernel's hooks."""
    assert arrows_both_ways("screening", CAPABILITIES) == []


def test_the_check_finds_two_packages_pointing_at_each_other(tmp_path, monkeypatch) -> None:
    package = tmp_path / "paired"
    for sub in ("x", "y", "z"):
        (package / sub).mkdir(parents=True)
        (package / sub / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "x" / "one.py").write_text("from ..y import two\n")
    (package / "y" / "two.py").write_text("def f():\n    from ..x import three\n    return three\n")
    (package / "x" / "three.py").write_text("")
    (package / "z" / "four.py").write_text("from ..x import three\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert arrows_both_ways("paired", ("x", "y", "z")) == [("x", "y")]
