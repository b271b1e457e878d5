"""The README and docs/ name only what exists, and the README stays a front door.

Docs lag the code when a file moves and the prose still names its old place (issue 28). So
every repository path written in backticks (``screening/imaging/dicom.py``,
``tests/e2e/test_viewer.py::test_x``, ``viewer/*.js``, ``tests/screening/{ai,audit}/``) must
exist, every relative markdown link must reach a file, and every ``#anchor`` a heading. Each
check reports every problem at once, as ``file:line``.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
README_MAX_LINES = 300

# Backticked words that start with one of these are repository paths.
REPO_DIRS = (
    "screening/",
    "ml/",
    "tests/",
    "templates/",
    "static/",
    "viewer/",
    "benchmarks/",
    "scripts/",
    "docs/",
    "deploy/",
    "mammo_portal/",
    ".ci/",
)
INLINE_CODE = re.compile(r"`([^`\n]+)`")
# A path is made of these characters only; braces and a star are expanded, not matched.
PATH_CHARS = re.compile(r"^[\w./*{},\-]+$")
PLACEHOLDER = re.compile(r"<[^>]*>|\.\.\.|…")
# [text](target) and ![alt](target), with an optional "title".
LINK = re.compile(r"!?\[[^\]]*\]\(\s*([^)\s]+)(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def documents() -> list[Path]:
    return [README, *sorted((ROOT / "docs").glob("*.md"))]


def prose_lines(text: str) -> list[tuple[int, str]]:
    """Numbered lines outside fenced code blocks (a shell comment there is no heading)."""
    lines, fenced = [], False
    for number, line in enumerate(text.splitlines(), start=1):
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
            continue
        if not fenced:
            lines.append((number, line))
    return lines


def expand_braces(word: str) -> list[str]:
    """``a/{b,c}/d`` is ``a/b/d`` and ``a/c/d``, as the shell reads it (one level per group)."""
    parts = re.split(r"\{([^{}]*)\}", word)
    choices = [[part] if i % 2 == 0 else part.split(",") for i, part in enumerate(parts)]
    return ["".join(combination) for combination in itertools.product(*choices)]


def named_paths(line: str) -> list[str]:
    """The repository paths a line names in backticks, suffixes and punctuation stripped."""
    paths = []
    for code in INLINE_CODE.findall(line):
        for word in code.split():
            if PLACEHOLDER.search(word):
                continue
            word = word.strip("'\"(").rstrip(".,;:!?)'\"")
            word = word.split("::", 1)[0].split("#", 1)[0]
            if not word.startswith(REPO_DIRS):
                continue
            if PATH_CHARS.match(word):
                paths.extend(expand_braces(word))
    return paths


def exists(path: str, root: Path) -> bool:
    if "*" in path:
        return any(root.glob(path.rstrip("/")))
    return (root / path).exists()


def missing_paths(document: Path, root: Path = ROOT) -> list[str]:
    problems = []
    for number, line in prose_lines(document.read_text(encoding="utf-8")):
        for path in named_paths(line):
            if not exists(path, root):
                problems.append(f"{document.name}:{number}: no such path {path}")
    return problems


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text only
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


def anchors(document: Path) -> set[str]:
    """Each heading's slug; a repeated one gets -1, -2, ... as on GitHub."""
    counts: dict[str, int] = {}
    found = set()
    for _, line in prose_lines(document.read_text(encoding="utf-8")):
        match = HEADING.match(line)
        if match:
            base = slug(match.group(2))
            repeat = counts.get(base, 0)
            found.add(f"{base}-{repeat}" if repeat else base)
            counts[base] = repeat + 1
    return found


def broken_links(document: Path) -> list[str]:
    problems = []
    for number, line in prose_lines(document.read_text(encoding="utf-8")):
        for code in INLINE_CODE.findall(line):
            line = line.replace(f"`{code}`", "")
        for target in LINK.findall(line):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):
                continue  # http:, https:, mailto:
            path, _, anchor = target.partition("#")
            linked = (document.parent / path).resolve() if path else document
            if not linked.exists():
                problems.append(f"{document.name}:{number}: link to a missing file {target}")
            elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
                problems.append(f"{document.name}:{number}: link to a missing heading {target}")
    return problems


def test_every_path_the_readme_and_docs_name_exists() -> None:
    problems = [problem for document in documents() for problem in missing_paths(document)]
    assert not problems, "\n".join(problems)


def test_every_relative_link_reaches_a_file_and_its_heading() -> None:
    problems = [problem for document in documents() for problem in broken_links(document)]
    assert not problems, "\n".join(problems)


def test_the_readme_is_under_300_lines() -> None:
    lines = len(README.read_text(encoding="utf-8").splitlines())
    assert lines < README_MAX_LINES, f"README.md has {lines} lines: move depth into docs/"


def test_the_checker_reports_each_missing_path_and_link_with_its_line(tmp_path: Path) -> None:
    (tmp_path / "screening").mkdir()
    (tmp_path / "screening" / "pathway.py").write_text("")
    document = tmp_path / "page.md"
    document.write_text(
        "# Page\n"
        "The rules live in `screening/pathway.py` and `screening/reading/pathway.py`.\n"
        "```bash\n"
        "cat screening/in_a_fence.py   # `screening/in_a_fence.py`\n"
        "```\n"
        "See [the page](page.md#page), [gone](gone.md), [no heading](#nowhere) and"
        " [the web](https://example.org/x).\n",
        encoding="utf-8",
    )
    assert missing_paths(document, tmp_path) == [
        "page.md:2: no such path screening/reading/pathway.py"
    ]
    assert broken_links(document) == [
        "page.md:6: link to a missing file gone.md",
        "page.md:6: link to a missing heading #nowhere",
    ]


def test_the_checker_skips_placeholders_and_expands_braces_and_globs(tmp_path: Path) -> None:
    for name in ("ai", "audit"):
        (tmp_path / "tests" / name).mkdir(parents=True)
        (tmp_path / "tests" / name / "test_x.py").write_text("")
    document = tmp_path / "page.md"
    document.write_text(
        "`screening/<cap>/serializers.py`, `docs/...`, `tests/ai/test_x.py::test_it`,\n"
        "`tests/*/test_x.py`, `tests/{ai,audit,ops}/` and `DATABASE_URL=x scripts/none`.\n",
        encoding="utf-8",
    )
    assert missing_paths(document, tmp_path) == [
        "page.md:2: no such path tests/ops/",
        "page.md:2: no such path scripts/none",
    ]
