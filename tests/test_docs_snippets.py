"""Every shell and Python block in README.md and docs/ runs exactly as written, so none can drift.

The convention (docs/development.md repeats it for authors):

- Blocks fenced as ``sh``, ``bash``, ``shell`` or ``python`` are executed; ``text``, ``json``,
  ``yaml``, ``dockerfile`` and the rest are not.
- Each page gets a fresh temporary directory; its blocks run there in order, so a later block may
  use files an earlier one wrote (nothing else carries over: each block is its own process).
- The project's virtual environment's ``bin/`` is first on PATH, so ``python`` and
  ``marketplace-entitlement`` are the package's. Shell blocks run under ``bash -euo pipefail``,
  Python blocks under that ``python``. ``AWS_*`` and ``MARKETPLACE_*`` variables of the test run are
  removed, so a block sets whatever it needs itself.
- A block must exit 0 within 60 seconds.
- ``<!-- snippet: skip (reason) -->`` on the line directly above the opening fence skips a block
  that cannot run here (needs AWS or Docker, runs forever, is an excerpt); the reason is required.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
RUN_LANGUAGES = {"sh": "shell", "bash": "shell", "shell": "shell", "python": "python"}
TIMEOUT_SECONDS = 60
FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>```+|~~~+)\s*(?P<info>[^`\s]*)")
MARKER = re.compile(r"^<!--\s*snippet\b(?P<rest>.*)")
SKIP = re.compile(r"^<!-- snippet: skip \((?P<reason>[^)]*\S[^)]*)\) -->$")
# Pages other branches add; linked already, present once merged.
PAGES_ARRIVING_ELSEWHERE = frozenset(
    {"docs/security.md", "docs/supervision.md", "docs/metering.md", "docs/saas.md"}
)


@dataclass(frozen=True)
class Block:
    """One fenced block of a Markdown page."""

    page: Path
    line: int  # 1-based line of the opening fence
    language: str
    code: str
    skip_reason: str | None

    @property
    def runnable(self) -> bool:
        """Executed by this test: a shell or Python block without a skip marker."""
        return self.language in RUN_LANGUAGES and self.skip_reason is None

    def where(self) -> str:
        """``docs/page.md:12`` for failure messages."""
        return f"{self.page.relative_to(ROOT)}:{self.line}"


class MarkerError(Exception):
    """A snippet marker that is malformed or not directly above a fence."""


def parse_blocks(page: Path, text: str | None = None) -> list[Block]:
    """The fenced blocks of ``page`` in order, with their skip markers; raise on a bad marker."""
    lines = (page.read_text() if text is None else text).splitlines()
    blocks: list[Block] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        marker = MARKER.match(line.strip())
        if marker:
            skip = SKIP.match(line.strip())
            if skip is None:
                raise MarkerError(
                    f"{page}:{index + 1}: a marker must read `<!-- snippet: skip (reason) -->` "
                    f"with a reason: {line.strip()!r}"
                )
            following = lines[index + 1] if index + 1 < len(lines) else ""
            if not FENCE.match(following):
                raise MarkerError(
                    f"{page}:{index + 1}: a skip marker must be directly above a fence"
                )
        fence = FENCE.match(line)
        if not fence:
            index += 1
            continue
        closing = fence.group("fence")
        indent = len(fence.group("indent"))
        body: list[str] = []
        end = index + 1
        while end < len(lines) and not lines[end].strip().startswith(closing):
            body.append(lines[end][indent:] if lines[end][:indent].isspace() else lines[end])
            end += 1
        previous = lines[index - 1].strip() if index > 0 else ""
        skip = SKIP.match(previous)
        blocks.append(
            Block(
                page=page,
                line=index + 1,
                language=fence.group("info").lower(),
                code="\n".join(body) + "\n",
                skip_reason=skip.group("reason") if skip else None,
            )
        )
        index = end + 1
    return blocks


def documentation_pages() -> list[Path]:
    """README.md and every Markdown page under docs/."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def snippet_environment() -> dict[str, str]:
    """The test run's environment as a seller's shell would have it, the venv's bin/ first on PATH.

    Without AWS_* and MARKETPLACE_* variables, nor coverage's and pytest's own.
    """
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("AWS_", "MARKETPLACE_", "COV_CORE_", "COVERAGE_", "PYTEST_"))
    }
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(BIN.parent)
    return env


def run_block(block: Block, workdir: Path) -> subprocess.CompletedProcess[str]:
    """Run one block in ``workdir`` as the convention says."""
    if RUN_LANGUAGES[block.language] == "shell":
        command = ["bash", "-euo", "pipefail", "-c", block.code]
    else:
        command = [str(BIN / "python"), "-c", block.code]
    return subprocess.run(
        command,
        cwd=workdir,
        env=snippet_environment(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_SECONDS,
        stdin=subprocess.DEVNULL,
        check=False,
    )


@pytest.mark.parametrize(
    "page", documentation_pages(), ids=lambda page: str(page.relative_to(ROOT))
)
def test_every_snippet_of_the_page_runs_as_written(page: Path, tmp_path: Path) -> None:
    """Each runnable block of the page, in order in one fresh directory, exits 0 within 60 s."""
    for block in parse_blocks(page):
        if not block.runnable:
            continue
        try:
            result = run_block(block, tmp_path)
        except subprocess.TimeoutExpired as expired:
            pytest.fail(f"{block.where()}: still running after {TIMEOUT_SECONDS}s: {expired}")
        assert result.returncode == 0, (
            f"{block.where()} exited {result.returncode}\n--- code\n{block.code}"
            f"--- stdout\n{result.stdout}--- stderr\n{result.stderr}"
        )


def test_documentation_has_runnable_snippets() -> None:
    """The extractor finds the pages' blocks: README and docs hold shell and Python to run."""
    blocks = [block for page in documentation_pages() for block in parse_blocks(page)]
    languages = {block.language for block in blocks if block.runnable}
    assert {"sh", "python"} <= languages
    assert len([block for block in blocks if block.runnable]) >= 10


def test_skip_markers_need_a_reason(tmp_path: Path) -> None:
    """A skip marker without a reason, or not directly above a fence, fails the page."""
    page = tmp_path / "page.md"
    with pytest.raises(MarkerError, match="reason"):
        parse_blocks(page, "<!-- snippet: skip -->\n```sh\nfalse\n```\n")
    with pytest.raises(MarkerError, match="reason"):
        parse_blocks(page, "<!-- snippet: skip () -->\n```sh\nfalse\n```\n")
    with pytest.raises(MarkerError, match="directly above"):
        parse_blocks(page, "<!-- snippet: skip (later) -->\n\n```sh\nfalse\n```\n")
    (block,) = parse_blocks(page, "<!-- snippet: skip (needs AWS) -->\n```sh\nfalse\n```\n")
    assert block.skip_reason == "needs AWS"
    assert not block.runnable


def test_only_shell_and_python_blocks_run(tmp_path: Path) -> None:
    """Output and configuration blocks are not executed; indented fences keep their code."""
    page = tmp_path / "page.md"
    text = "```text\nnot run\n```\n\n1. step\n   ```bash\n   echo hi\n   ```\n```json\n{}\n```\n"
    blocks = parse_blocks(page, text)
    assert [(b.language, b.runnable) for b in blocks] == [
        ("text", False),
        ("bash", True),
        ("json", False),
    ]
    assert blocks[1].code == "echo hi\n"


def test_every_skip_marker_in_the_docs_has_a_reason() -> None:
    """Parsing every page raises no MarkerError (so each skipped block says why)."""
    for page in documentation_pages():
        for block in parse_blocks(page):
            assert block.skip_reason is None or block.skip_reason.strip()


LINK = re.compile(r"\]\((?P<target>[^)\s]+)\)")


def test_relative_links_point_at_files_that_exist() -> None:
    """Every relative link in README and docs names a file of the repository (anchors aside).

    The four pages other branches bring (security, supervision, metering, SaaS) may be absent.
    """
    missing: list[str] = []
    for page in documentation_pages():
        for match in LINK.finditer(page.read_text()):
            target = match.group("target").split("#", 1)[0]
            if not target or re.match(r"^[a-z]+:", target):
                continue
            resolved = (page.parent / target).resolve()
            relative = (
                resolved.relative_to(ROOT).as_posix() if resolved.is_relative_to(ROOT) else ""
            )
            if not resolved.exists() and relative not in PAGES_ARRIVING_ELSEWHERE:
                missing.append(f"{page.relative_to(ROOT)} -> {match.group('target')}")
    assert missing == []


PRIVATE_REFERENCES = re.compile(r"CONTRACT\.md|FACTS\.md|\b_[a-z0-9_]+\.py\b|request_stop")


# The contributors' page describes the repository's own layout, private modules included.
CONTRIBUTOR_PAGES = frozenset({"docs/development.md"})


def test_docs_name_no_file_or_function_a_seller_does_not_have() -> None:
    """README and docs never point at the project's internal notes or private modules.

    The contributors' page (the repository's layout) is the one exception for module names.
    """
    pages = [*documentation_pages(), ROOT / "SECURITY.md", ROOT / "CHANGELOG.md"]
    found = [
        f"{page.relative_to(ROOT)}: {match.group(0)}"
        for page in pages
        if page.exists() and page.relative_to(ROOT).as_posix() not in CONTRIBUTOR_PAGES
        for match in PRIVATE_REFERENCES.finditer(page.read_text())
    ]
    assert found == []
