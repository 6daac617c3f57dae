"""Settings: file < environment < overrides, generated secrets kept private and unprinted."""

from __future__ import annotations

import dataclasses
import stat
from pathlib import Path

import pytest

from pbx.asterisk.config import render_config
from pbx.settings import load_settings


def test_file_env_and_generated_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "clinic-pbx.toml"
    cfg.write_text(
        f'state_dir = "{tmp_path / "state"}"\nclinic_name = "Улыбка"\n'
        "[web]\nport = 9000\n[asterisk]\nami_port = 6038\n"
    )
    monkeypatch.setenv("CLINIC_PBX_WEB_PORT", "9100")
    monkeypatch.setenv("CLINIC_PBX_ASTERISK_STATIC_PHONES", "false")
    s = load_settings(cfg)
    assert s.clinic_name == "Улыбка" and s.web.port == 9100 and s.asterisk.ami_port == 6038
    assert s.asterisk.static_phones is False
    assert len(s.asterisk.ami_secret) > 20 and s.asterisk.ami_secret not in repr(s)
    secrets_file = tmp_path / "state" / "secrets.json"
    assert stat.S_IMODE(secrets_file.stat().st_mode) == 0o600
    again = load_settings(cfg)
    assert again.asterisk.ami_secret == s.asterisk.ami_secret  # generated once
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.web.port = 1  # type: ignore[misc]


def test_rendered_config_has_no_placeholders_and_is_private(tmp_path: Path) -> None:
    s = load_settings(tmp_path / "none.toml", state_dir=tmp_path / "state")
    out = render_config(s)
    texts = {p.name: p.read_text() for p in out.glob("*.conf")}
    assert not [n for n, t in texts.items() if "@@" in t]
    assert s.asterisk.ami_secret in texts["manager.conf"]
    assert "bindaddr = 127.0.0.1" in texts["manager.conf"]
    assert "[directories]\n" in texts["asterisk.conf"]
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in out.glob("*.conf"))


def test_a_chain_boxs_branches_from_the_file_or_the_environment(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "clinic-pbx.toml"
    cfg.write_text(f'state_dir = "{tmp_path / "state"}"\n[asterisk]\nbranches = [2, 3]\n')
    assert load_settings(cfg).asterisk.branches == (2, 3)
    assert load_settings(tmp_path / "none.toml", state_dir=tmp_path / "state").asterisk.branches == ()
    monkeypatch.setenv("CLINIC_PBX_ASTERISK_BRANCHES", "4, 5")
    assert load_settings(cfg).asterisk.branches == (4, 5)
    for bad in ('"2"', "[2, true]", '["x"]', "[1.5]"):
        cfg.write_text(f'state_dir = "{tmp_path / "state"}"\n[asterisk]\nbranches = {bad}\n')
        monkeypatch.delenv("CLINIC_PBX_ASTERISK_BRANCHES", raising=False)
        with pytest.raises(ValueError):
            load_settings(cfg)
