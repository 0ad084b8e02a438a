"""Issue 21, items 9 and 13: the README's install commands work as written (edgerec is not
on an index), and its demo time says how it was measured, by a command in the repository."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _pip_installs() -> list[str]:
    commands = re.findall(r"pip install [^`\n&]+", README)
    assert commands
    return [c.strip() for c in commands]


def test_every_pip_install_of_edgerec_names_a_clone_or_a_git_url():
    for command in _pip_installs():
        for spec in re.findall(r'"([^"]+)"', command):
            if spec.startswith("edgerec"):  # from an index, which has no edgerec yet
                assert "@ git+" in spec, command
            else:
                assert spec.startswith("."), command  # the clone itself


def test_the_readme_says_how_to_install_from_a_clone_and_from_git():
    assert 'pip install -e ".[train,cpu,dev]"' in README
    assert 'pip install ".[cpu]"' in README
    assert '"edgerec[cpu] @ git+<repo-url>"' in README
