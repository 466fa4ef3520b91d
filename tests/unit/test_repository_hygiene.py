"""The repository itself: what a merge or an editor can leave behind that no linter sees."""

import re
import subprocess

from ecom_insights.config import PROJECT_ROOT

# a conflict marker at the start of a line, as git writes it (a docstring hid one from ruff)
CONFLICT_MARKER = re.compile(r"^(<{7} |>{7} |={7}$)", re.MULTILINE)


def test_no_tracked_file_holds_a_merge_conflict_marker():
    tracked = (
        subprocess.run(["git", "ls-files", "-z"], cwd=PROJECT_ROOT, capture_output=True, check=True)
        .stdout.decode()
        .split("\0")
    )
    marked = []
    for name in filter(None, tracked):
        path = PROJECT_ROOT / name
        if not path.is_file():
            continue
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue  # binary
        marked += [
            f"{name}:{text.count(chr(10), 0, m.start()) + 1}"
            for m in CONFLICT_MARKER.finditer(text)
        ]
    assert not marked, f"merge conflict markers left in: {marked}"
