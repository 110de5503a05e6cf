"""The repository's own documentation: it points nowhere outside the repository, and its links hold.

README.md and docs/*.md are what a user reads. The design notes the project started from live
outside the repository, so no file in it may name them (docs/ is where that text goes); every
relative link of the pages must lead to a file or folder of the checkout and, when it names a
heading of a Markdown page, to a heading that page has (GitHub's anchors); docs/README.md indexes
every page of docs/.
"""

from __future__ import annotations

import re
import subprocess
import unicodedata
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import unquote

ROOT = Path(__file__).resolve().parents[1]

#: the design notes outside the repository, spelled in parts so that this file does not name them
OUTSIDE_NOTES: tuple[str, ...] = tuple(f"{stem}.md" for stem in ("DESIGN", "PAPERS", "STYLE"))

_FENCE = re.compile(r"^\s*(```|~~~)")
_CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1")
_INLINE_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFERENCE_DEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$")
_HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def repository_files() -> list[str]:
    """Files of the checkout that git tracks or would track (committed, staged or new; ignored
    files such as .venv/ and data/ left out), as paths relative to the root."""
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout
    return sorted({p for p in out.decode().split("\0") if p})


def notes_mentions(root: Path, files: Iterable[str]) -> list[str]:
    """``path:line: name`` for every line of ``files`` (under ``root``) that names one of the
    outside notes; files that no longer exist are skipped."""
    found = []
    for rel in files:
        path = root / rel
        if not path.is_file():
            continue
        data = path.read_bytes()
        if not any(name.encode() in data for name in OUTSIDE_NOTES):
            continue
        for n, line in enumerate(data.decode(errors="replace").splitlines(), 1):
            for name in OUTSIDE_NOTES:
                if name in line:
                    found.append(f"{rel}:{n}: {name}")
    return found


def _prose_lines(text: str, blank_code: bool = True) -> Iterable[tuple[int, str]]:
    """``(line number, line)`` outside fenced code blocks, code spans blanked unless told."""
    fence = None
    for n, line in enumerate(text.splitlines(), 1):
        m = _FENCE.match(line)
        if m:
            if fence is None:
                fence = m.group(1)
            elif m.group(1) == fence:
                fence = None
            continue
        if fence is None:
            yield n, _CODE_SPAN.sub("code", line) if blank_code else line


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: the rendered text lower-cased, every character but
    letters, digits, marks, ``-``, ``_`` and spaces removed, spaces turned into ``-``."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links render as their text
    text = text.replace("`", "").replace("*", "").lower()
    kept = "".join(
        ch for ch in text if ch in " -_" or unicodedata.category(ch)[0] in ("L", "N", "M")
    )
    return kept.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every heading anchor of a Markdown page (repeated headings get ``-1``, ``-2``, ...)."""
    seen: dict[str, int] = {}
    out = set()
    for _, line in _prose_lines(page.read_text(), blank_code=False):
        m = _HEADING.match(line)
        if not m:
            continue
        slug = github_anchor(m.group(2))
        count = seen.get(slug, 0)
        out.add(slug if count == 0 else f"{slug}-{count}")
        seen[slug] = count + 1
    return out


def broken_links(page: Path, root: Path) -> list[str]:
    """``page:line: target (why)`` for every relative link of ``page`` that leads nowhere: a
    missing file or folder, a path outside ``root``, or a heading the target page lacks."""
    problems = []
    for n, line in _prose_lines(page.read_text()):
        targets = _INLINE_LINK.findall(line)
        ref = _REFERENCE_DEF.match(line)
        if ref:
            targets.append(ref.group(1))
        for target in targets:
            if _SCHEME.match(target) or target.startswith("//"):
                continue  # a URL (http:, https:, mailto:, ...)
            path_part, _, fragment = target.partition("#")
            dest = (page.parent / unquote(path_part)).resolve() if path_part else page.resolve()
            where = f"{page.relative_to(root)}:{n}: {target}"
            if root.resolve() not in (dest, *dest.parents):
                problems.append(f"{where} (outside the repository)")
            elif not dest.exists():
                problems.append(f"{where} (no such file)")
            elif fragment and dest.suffix == ".md" and unquote(fragment) not in anchors(dest):
                problems.append(f"{where} (no such heading)")
    return problems


def doc_pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


# --------------------------------------------------------------------------------------- tests


def test_no_file_names_the_design_notes_outside_the_repository() -> None:
    found = notes_mentions(ROOT, repository_files())
    assert not found, (
        "these lines point to notes that are not in the repository; point to the page of docs/ "
        "that holds that text instead:\n" + "\n".join(found)
    )


def test_relative_links_of_the_docs_resolve() -> None:
    problems = [p for page in doc_pages() for p in broken_links(page, ROOT)]
    assert not problems, "broken links:\n" + "\n".join(problems)


def test_docs_index_lists_every_page() -> None:
    index = ROOT / "docs" / "README.md"
    linked = {
        Path(t.partition("#")[0]).name
        for _, line in _prose_lines(index.read_text())
        for t in _INLINE_LINK.findall(line)
    }
    pages = {p.name for p in (ROOT / "docs").glob("*.md")} - {"README.md"}
    assert pages <= linked, f"docs/README.md does not list {sorted(pages - linked)}"


def test_the_checks_find_what_they_look_for(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "code.py").write_text('"""See ' + OUTSIDE_NOTES[1] + ' for why."""\n')
    (tmp_path / "notes.md").write_text("# Notes\n\nAs " + OUTSIDE_NOTES[0] + " says\n")
    (tmp_path / "docs" / "other.md").write_text("# Other page\n\n## The `prepare` step, again\n")
    page = tmp_path / "docs" / "page.md"
    page.write_text(
        "# Page\n\n"
        "[ok](other.md) [ok heading](other.md#the-prepare-step-again) [self](#page)\n"
        "[missing](nothere.md) [bad heading](other.md#nothere) [up](../../etc/passwd)\n"
        "[web](https://example.org/x.md) `[in code](nothere.md)`\n\n"
        "```text\n[in a fence](nothere.md)\n```\n\n"
        "[ref]: missing/ref.md\n"
    )
    assert notes_mentions(tmp_path, ["code.py", "notes.md", "gone.py"]) == [
        f"code.py:1: {OUTSIDE_NOTES[1]}",
        f"notes.md:3: {OUTSIDE_NOTES[0]}",
    ]
    assert broken_links(page, tmp_path) == [
        "docs/page.md:4: nothere.md (no such file)",
        "docs/page.md:4: other.md#nothere (no such heading)",
        "docs/page.md:4: ../../etc/passwd (outside the repository)",
        "docs/page.md:11: missing/ref.md (no such file)",
    ]
    assert github_anchor("The layout `--layout grid` reads") == "the-layout---layout-grid-reads"
    assert github_anchor("face-alignment's weights (`--landmarks fan`)") == (
        "face-alignments-weights---landmarks-fan"
    )
