"""The README's generated reference tables (policy catalogue, reason codes) are current."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from service.docs import SECTIONS, policy_table, reasons_table, replace_between, write_tables
from service.domain.envelope import Reason
from service.domain.policy import load_policy

README = Path(__file__).resolve().parents[1] / "README.md"
REGENERATE = "uv run python -m service.docs README.md"


@pytest.mark.parametrize("name", SECTIONS)
def test_the_readme_tables_are_current(name: str) -> None:
    start, end, generate = SECTIONS[name]
    text = README.read_text(encoding="utf-8")
    assert start in text, f"README.md has no {start} ... {end} section"
    assert end in text.split(start, 1)[1], f"README.md has no {end} after {start}"
    shown = text.split(start, 1)[1].split(end, 1)[0]
    assert shown == "\n" + generate(), f"README.md's table is stale: run `{REGENERATE}`"


def test_the_policy_table_lists_every_moment_and_segment() -> None:
    policy = load_policy()
    table = policy_table(policy)
    for name in [*policy.moments, *policy.segments]:
        assert f"| `{name}` |" in table
    assert "| `survey.nps` | empathy | by `data.score`: 0–6 → -12, 7–8 → 0, 9–10 → +10 |" in table
    assert "| `sla.breached` | time_and_effort | -10 |" in table


def test_every_reason_code_is_explained() -> None:
    table = reasons_table()
    assert [line.split("`")[1] for line in table.splitlines()[2:]] == [r.value for r in Reason]


def test_write_tables_replaces_a_stale_table(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    sections = "".join(f"{start}\nSTALE\n{end}\n" for start, end, _ in SECTIONS.values())
    readme.write_text(f"# x\n{sections}tail\n", encoding="utf-8")
    assert write_tables(readme)
    text = readme.read_text(encoding="utf-8")
    assert "STALE" not in text
    assert text.endswith("tail\n")
    assert policy_table() in text
    assert reasons_table() in text
    assert not write_tables(readme)


def test_replace_between_needs_both_markers() -> None:
    with pytest.raises(ValueError, match="no <a>"):
        replace_between("<a> only", "<a>", "<b>", "x")


def _anchor(heading: str) -> str:
    """The fragment a Markdown renderer (GitHub's) gives a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_readme_link_stays_in_the_repository() -> None:
    text = README.read_text(encoding="utf-8")
    anchors = {_anchor(h) for h in re.findall(r"^#+ (.+)$", text, flags=re.MULTILINE)}
    root = README.parent
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        path, _, fragment = target.partition("#")
        if not path:
            assert fragment in anchors, f"README.md links to #{fragment}, no such heading"
            continue
        assert "://" not in path, f"README.md links outside the repository: {target}"
        resolved = (root / path).resolve()
        assert resolved.is_relative_to(root), f"README.md links outside the repository: {target}"
        assert resolved.exists(), f"README.md links to {path}, which does not exist"
