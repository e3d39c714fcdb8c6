"""The documentation's relative links resolve, and the README links every page in docs/.

Every Markdown link ``[text](target)`` in README.md and docs/*.md (outside code blocks and inline
code) whose target is not a URL must name a file or folder that exists in the repository, and its
``#anchor``, if any, must be a heading of the target Markdown file, slugged the way GitHub does.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
PAGES = [README, *sorted(DOCS.glob("*.md"))]

FENCE = re.compile(r"^(```|~~~)")
INLINE_CODE = re.compile(r"`[^`]*`")
LINK = re.compile(r"(?<!!)\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)  # http:, https:, mailto:, ...


def prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) of every line outside fenced code blocks."""
    lines, fenced = [], False
    for number, line in enumerate(text.splitlines(), start=1):
        if FENCE.match(line.lstrip()):
            fenced = not fenced
            continue
        if not fenced:
            lines.append((number, line))
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading keeps its text
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a Markdown file (a repeated heading gets -1, -2, ...)."""
    seen: dict[str, int] = {}
    found = set()
    for _, line in prose_lines(path.read_text(encoding="utf-8")):
        match = HEADING.match(line)
        if not match:
            continue
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(path: Path) -> list[tuple[int, str]]:
    """(line number, target) of every link in the prose of a Markdown file."""
    found = []
    for number, line in prose_lines(path.read_text(encoding="utf-8")):
        for match in LINK.finditer(INLINE_CODE.sub("", line)):
            found.append((number, match.group(1)))
    return found


def problems(page: Path, root: Path = ROOT) -> list[str]:
    """What is wrong with the relative links of ``page`` (a file under ``root``)."""
    wrong = []
    for number, target in links(page):
        if EXTERNAL.match(target):
            continue
        where = f"{page.relative_to(root)}:{number}: ({target})"
        file_part, _, anchor = target.partition("#")
        destination = (page.parent / file_part).resolve() if file_part else page
        if not destination.exists():
            wrong.append(f"{where} names {file_part}, which does not exist")
            continue
        try:
            destination.relative_to(root.resolve())
        except ValueError:
            wrong.append(f"{where} points outside the repository")
            continue
        if anchor:
            if destination.suffix != ".md":
                wrong.append(f"{where} has an anchor into a file that is not Markdown")
            elif anchor not in anchors(destination):
                wrong.append(f"{where}: no heading of {destination.name} has the anchor #{anchor}")
    return wrong


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_relative_links_resolve(page: Path) -> None:
    assert problems(page) == []


def test_the_readme_links_every_docs_page() -> None:
    linked = {
        (ROOT / target.partition("#")[0]).resolve()
        for _, target in links(README)
        if not EXTERNAL.match(target) and target.partition("#")[0]
    }
    missing = [str(p.relative_to(ROOT)) for p in sorted(DOCS.glob("*.md")) if p.resolve() not in linked]
    assert missing == [], f"docs pages the README does not link: {missing}"


def test_the_checker_finds_broken_links(tmp_path: Path) -> None:
    """The rules above can fail: a missing file and a missing anchor are both reported."""
    assert slug("Deployment: `docker compose up`") == "deployment-docker-compose-up"
    assert (
        slug("Contact state size (`benchmarks/bench_state_size.py`)")
        == "contact-state-size-benchmarksbench_state_sizepy"
    )
    (tmp_path / "README.md").write_text("# Read me\n\n## Topics\n", encoding="utf-8")
    (tmp_path / "docs").mkdir()
    page = tmp_path / "docs" / "probe.md"
    page.write_text(
        "# Probe\n\n## Same\n\n## Same\n\n[ok](#same-1) [ok](../README.md#topics) [bad](nowhere.md) [bad](#none)\n"
        "```\n[ignored](inside-a-fence.md)\n```\n`[ignored](inline.md)` [web](https://example.com/x)\n",
        encoding="utf-8",
    )
    found = problems(page, tmp_path)
    assert len(found) == 2, found
    assert "nowhere.md" in found[0] and "#none" in found[1]
