"""The repository speaks of the product only: no words about how its work was organised."""

import re
import subprocess

from conftest import REPO

# Words about how the package's development was organised (the pattern and its examples
# below are the only place they may appear): none of them means anything to a user.
WORK_TALK = re.compile(
    r"\bsessions?\s*\d"
    r"|\b(this|that|each|every|earlier|later|next|previous|last|one|another|a)\s+session\b(?!-)"
    r"|\bsession's\b|\blent\b|\blend(s|ing)?\b|\bthis task\b|\bwork period"
    r"|\bissues?\s*#?\d",
    re.IGNORECASE)


def tracked_text_files():
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True,
                           check=True).stdout.decode().split("\0")
    for name in files:
        if not name or name == "tests/test_repository.py":
            continue
        try:
            with open(f"{REPO}/{name}", encoding="utf-8") as f:
                yield name, f.read()
        except (UnicodeDecodeError, FileNotFoundError):
            continue  # binary (pictures) or deleted in the working tree


def test_no_tracked_file_talks_about_how_the_work_was_organised():
    found = [f"{name}:{text.count(chr(10), 0, m.start()) + 1}: {m.group(0)!r}"
             for name, text in tracked_text_files() for m in WORK_TALK.finditer(text)]
    assert not found, "\n".join(found[:40])


def test_the_pattern_catches_what_it_is_for():
    for phrase in ("session 5's make run", "Sessions 4-6", "the GPU lent to us", "this task",
                   "an earlier session", "issue 5", "Issue #12", "work periods"):
        assert WORK_TALK.search(phrase), phrase
    for phrase in ('@pytest.fixture(scope="session")', "a session-scoped fixture", "talent",
                   "the issue tracker", "relentless"):
        assert not WORK_TALK.search(phrase), phrase
