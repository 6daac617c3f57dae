"""#31: the Asterisk install unmounts what mmdebstrap left mounted inside the new root (its
/proc) before it moves, sizes or removes the root: never a walk through a live /proc."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from pbx.settings import PROJECT_DIR
from tests.conftest import require

SCRIPT = PROJECT_DIR / "scripts" / "install-asterisk.sh"


def _unmount_under(root: Path) -> None:
    text = SCRIPT.read_text()
    function = text[text.index("unmount_under() {"): text.index("\n}\n", text.index("unmount_under() {")) + 3]
    subprocess.run(["bash", "-c", function + f'\nunmount_under "{root}"'], check=True)


def mounted(path: Path) -> bool:
    return subprocess.run(["mountpoint", "-q", str(path)]).returncode == 0


def test_a_proc_left_mounted_in_the_root_is_unmounted(tmp_path: Path) -> None:
    require("root", os.geteuid() == 0, "mounting needs root: run the suite as root, as `make test` does")
    root = tmp_path / "asterisk-root.partial"
    (root / "proc").mkdir(parents=True)
    (root / "dev").mkdir()
    subprocess.run(["mount", "-t", "proc", "proc", str(root / "proc")], check=True)
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(root / "dev")], check=True)
    try:
        assert mounted(root / "proc") and mounted(root / "dev")
        _unmount_under(root)
        assert not mounted(root / "proc") and not mounted(root / "dev")
        _unmount_under(tmp_path / "absent")  # nothing there: nothing done, no error
    finally:
        for sub in ("proc", "dev"):
            subprocess.run(["umount", "-l", str(root / sub)], capture_output=True)
