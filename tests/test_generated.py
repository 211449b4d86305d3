"""The sync faces written by scripts/gen_sync.py from the async code are up to date."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_generated_sync_code_is_not_stale() -> None:
    checked = subprocess.run(
        [sys.executable, "scripts/gen_sync.py", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_check_sees_a_hand_edited_sync_part(tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import gen_sync
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    source = (ROOT / "pgjobs" / "client.py").read_text()
    edited = tmp_path / "client.py"
    # The first one is Client's, in the generated part.
    edited.write_text(source.replace("self._opened = True", "self._opened = 1 == 1", 1))
    assert gen_sync.generated(edited) == source
