"""Links between the project's Markdown files resolve: every relative link in README.md, CONTRIBUTING.md and docs/
names a file of this checkout, and every ``#anchor`` a heading of the file it points to (GitHub's heading slugs).
A moved section or a renamed file fails here instead of leaving a reader on a dead link."""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FILES = sorted([ROOT / "README.md", ROOT / "CONTRIBUTING.md", *(ROOT / "docs").rglob("*.md")])


def _prose(path: Path) -> str:
    return re.sub(r"```.*?```", "", path.read_text(), flags=re.S)  # links inside code blocks are not links


def heading_slugs(path: Path) -> set[str]:
    """GitHub's anchors: lower case, punctuation other than '-' and '_' dropped, spaces to '-', repeats numbered."""
    slugs, seen = set(), {}
    for line in _prose(path).splitlines():
        heading = re.match(r"#{1,6}\s+(.*)", line)
        if heading:
            slug = re.sub(r"[^\w\- ]", "", heading.group(1).strip().lower()).replace(" ", "-")
            slugs.add(f"{slug}-{seen[slug]}" if slug in seen else slug)
            seen[slug] = seen.get(slug, 0) + 1
    return slugs


def relative_links(path: Path) -> list[str]:
    targets = re.findall(r"\]\(([^)\s]+)\)", _prose(path))
    return [t for t in targets if not re.match(r"[a-z][a-z0-9+.-]*:", t)]  # http:, https:, mailto: are not ours


def test_heading_slugs_follow_github():
    page = ROOT / "README.md"
    assert "set-up-two-commands" in heading_slugs(page)  # "## Set-up: two commands"


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(path):
    broken = []
    for target in relative_links(path):
        name, _, anchor = target.partition("#")
        linked = (path.parent / name).resolve() if name else path
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif anchor and linked.suffix == ".md" and anchor not in heading_slugs(linked):
            broken.append(f"{target}: no heading with that anchor")
    assert not broken, f"{path.relative_to(ROOT)}: " + "; ".join(broken)
