"""Online backups of the CRM (SQLite's backup API: a consistent copy while calls are being
written) with the installation's secrets, and putting one back. A backup is a folder
``clinic-pbx-YYYYmmdd-HHMMSS/`` holding ``crm.sqlite.enc`` and ``secrets.json.enc``, encrypted
to the clinic's backup key (``crm.backup_crypto``); without a key, ``crm.sqlite`` alone: the
secrets never go into a plain backup."""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
from pathlib import Path

from crm.backup_crypto import BackupKeyError, decrypt_file, encrypt_file


def backup(db_path: Path, secrets_path: Path, target_dir: Path, *, now: float | None = None,
           public_key: str = "") -> Path:
    """Copy the live database through SQLite's backup API in one step: in WAL mode that is one
    read transaction, a consistent snapshot that the server's writers never wait for (a
    step-by-step copy would restart at every write and might never finish on a busy day).
    Check it, and copy the secrets beside it. Returns the backup folder (0700, files 0600)."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now if now is not None else time.time()))
    folder = target_dir / f"clinic-pbx-{stamp}"
    folder.mkdir(parents=True, mode=0o700, exist_ok=False)
    # an encrypted backup's plain copy is made beside the live database (the state folder, 0700),
    # never where the backups go (a NAS, a USB disk)
    out = db_path.with_name(f".backup-{stamp}.sqlite") if public_key else folder / "crm.sqlite"
    src = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30)
    dst = sqlite3.connect(out)
    try:
        src.backup(dst, pages=-1)
        check = dst.execute("PRAGMA integrity_check").fetchone()[0]
        if check != "ok":
            raise RuntimeError(f"the copy failed its integrity check: {check}")
    finally:
        dst.close()
        src.close()
    os.chmod(out, 0o600)
    if public_key:
        try:
            encrypt_file(out, folder / "crm.sqlite.enc", public_key)
            if secrets_path.exists():
                encrypt_file(secrets_path, folder / "secrets.json.enc", public_key)
        finally:
            out.unlink(missing_ok=True)
    return folder


def prune(target_dir: Path, keep: int) -> list[Path]:
    """Retention: keep the ``keep`` newest backup folders in ``target_dir`` (by their stamped
    names), delete the older ones; returns what was deleted. Other files are never touched."""
    folders = sorted(p for p in target_dir.glob("clinic-pbx-*")
                     if p.is_dir() and ((p / "crm.sqlite").exists() or (p / "crm.sqlite.enc").exists()))
    old = folders[:-keep] if keep > 0 else []
    for path in old:
        shutil.rmtree(path)
    return old


def restore(folder: Path, db_path: Path, secrets_path: Path, private_key: str = "") -> Path | None:
    """Put a backup back (the server must be stopped); an encrypted one needs the clinic's
    private backup key. The database it replaces is kept as
    ``crm.sqlite.before-restore-<time>``; returns that path (None when there was none)."""
    if (folder / "crm.sqlite.enc").exists():
        if not private_key:
            raise BackupKeyError("this backup is encrypted: give the clinic's backup key (--key FILE)")
        db_path.parent.mkdir(parents=True, exist_ok=True)
        plain = db_path.with_name(".restore-plain")
        plain.mkdir(mode=0o700, exist_ok=True)
        try:
            decrypt_file(folder / "crm.sqlite.enc", plain / "crm.sqlite", private_key)
            if (folder / "secrets.json.enc").exists():
                decrypt_file(folder / "secrets.json.enc", plain / "secrets.json", private_key)
            return restore(plain, db_path, secrets_path)
        finally:
            shutil.rmtree(plain, ignore_errors=True)
    source = folder / "crm.sqlite"
    con = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    try:
        if con.execute("PRAGMA integrity_check").fetchone()[0] != "ok":
            raise RuntimeError(f"{source} is damaged")
    finally:
        con.close()
    kept = None
    if db_path.exists():
        kept = db_path.with_name(f"{db_path.name}.before-restore-{time.strftime('%Y%m%d-%H%M%S')}")
        os.replace(db_path, kept)
        for suffix in ("-wal", "-shm"):  # the old WAL belongs to the old database
            Path(f"{db_path}{suffix}").unlink(missing_ok=True)
    db_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = db_path.with_suffix(".restoring")
    shutil.copy2(source, tmp)
    os.chmod(tmp, 0o600)
    os.replace(tmp, db_path)
    if (folder / "secrets.json").exists():
        shutil.copy2(folder / "secrets.json", secrets_path)
        os.chmod(secrets_path, 0o600)
    return kept
