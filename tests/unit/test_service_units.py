"""`clinic-pbx install-service`: the systemd units install below a root, `systemd-analyze verify`
accepts them (and refuses a broken one), and they keep Asterisk and the server apart."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from pbx.cli.main import main
from tests.conftest import require

UNITS = ("clinic-pbx.service", "clinic-pbx-asterisk.service", "clinic-pbx-check.service", "clinic-pbx-check.timer",
         "clinic-pbx-backup.service", "clinic-pbx-backup.timer")


def verify(folder: Path, names: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["systemd-analyze", "verify", *names], cwd=folder, capture_output=True, text=True,
                          timeout=60)


def test_units_install_and_verify(tmp_path: Path) -> None:
    require("systemd-analyze", shutil.which("systemd-analyze") is not None, "apt-get install systemd")
    root = tmp_path / "root"
    assert main(["install-service", "--root", str(root)]) == 0
    folder = root / "etc" / "systemd" / "system"
    assert sorted(p.name for p in folder.iterdir()) == sorted(UNITS)
    config = root / "etc" / "clinic-pbx" / "clinic-pbx.toml"
    assert config.exists() and oct(config.stat().st_mode & 0o777) == "0o600"
    result = verify(folder, [f"./{n}" for n in UNITS])
    assert result.returncode == 0 and result.stderr == "", result.stderr  # not even a warning
    server = (folder / "clinic-pbx.service").read_text()
    asterisk = (folder / "clinic-pbx-asterisk.service").read_text()
    # two services: the server only wants Asterisk (a restart of one never stops the other), and
    # stopping the server kills only its own process
    assert "Wants=network-online.target clinic-pbx-asterisk.service" in server and "Requires=" not in server
    assert "KillMode=process" in server and "Restart=on-failure" in server and "LimitNOFILE=65536" in server
    assert "--config /etc/clinic-pbx/clinic-pbx.toml run" in server and "asterisk start" in asterisk
    assert "PIDFile=" in asterisk and "Type=forking" in asterisk
    # the checker bites: a bad setting is reported, a binary that is not there refused
    (folder / "odd.service").write_text(server.replace("Type=simple", "Type=sometimes"))
    assert "Failed to parse service type" in verify(folder, ["./odd.service"]).stderr
    (folder / "broken.service").write_text(server.replace(str(Path(server.split("ExecStart=")[1].split()[0])),
                                                          "/nonexistent/clinic-pbx"))
    assert verify(folder, ["./broken.service"]).returncode != 0


def test_the_units_get_the_settings_in_effect(tmp_path: Path, monkeypatch, capsys) -> None:
    """The unit's configuration is written from the file the command was given (not a bare
    state folder), with the state folder first; environment settings are named as not carried."""
    mine = tmp_path / "mine.toml"
    mine.write_text("[web]\nport = 8099\n")
    monkeypatch.setenv("CLINIC_PBX_WEB_HOST", "127.0.0.1")
    root = tmp_path / "root"
    assert main(["--config", str(mine), "install-service", "--root", str(root)]) == 0
    import tomllib

    installed = tomllib.loads((root / "etc" / "clinic-pbx" / "clinic-pbx.toml").read_text())
    assert installed["web"]["port"] == 8099 and installed["state_dir"]
    assert "do not see environment settings (CLINIC_PBX_WEB_HOST)" in capsys.readouterr().out
    # an existing configuration is never overwritten
    (root / "etc" / "clinic-pbx" / "clinic-pbx.toml").write_text("[web]\nport = 8100\n")
    assert main(["--config", str(mine), "install-service", "--root", str(root)]) == 0
    assert "8100" in (root / "etc" / "clinic-pbx" / "clinic-pbx.toml").read_text()
