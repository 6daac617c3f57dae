"""A throwaway PostgreSQL cluster for the tests and benches: Debian's binaries, ``initdb`` in a
temporary directory owned by the ``postgres`` system user (the server refuses root), listening
on 127.0.0.1 only at a free port, trust authentication for local TCP; stopped and removed at the
end. Each test asks it for a fresh database."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

PG_ROOT = Path("/usr/lib/postgresql")


def pg_bin() -> Path | None:
    """The newest installed server's bin directory (bookworm: 15)."""
    if not PG_ROOT.is_dir():
        return None
    versions = sorted((p for p in PG_ROOT.iterdir() if (p / "bin" / "pg_ctl").exists()),
                      key=lambda p: int(p.name) if p.name.isdigit() else 0)
    return versions[-1] / "bin" if versions else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgCluster:
    def __init__(self, bin_dir: Path) -> None:
        self.bin = bin_dir
        self.port = _free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="clinic-pbx-pg-"))
        self._seq = 0

    def _as_postgres(self, *args: str) -> subprocess.CompletedProcess[str]:
        user = pwd.getpwnam("postgres")

        def demote() -> None:
            os.setgid(user.pw_gid)
            os.setuid(user.pw_uid)

        return subprocess.run(args, preexec_fn=demote if os.getuid() == 0 else None, capture_output=True,
                              text=True, check=True, cwd=self.dir, timeout=120)

    def start(self) -> None:
        if os.getuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        data = self.dir / "data"
        self._as_postgres(str(self.bin / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust",
                          "-E", "UTF8", "--locale=C.UTF-8")
        self.start_server()

    def stop_server(self) -> None:
        """The server down (as a centre that became unreachable), its data kept."""
        self._as_postgres(str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"), "-m", "fast", "-w", "stop")

    def start_server(self) -> None:
        data = self.dir / "data"
        self._as_postgres(str(self.bin / "pg_ctl"), "-D", str(data), "-l", str(self.dir / "log"), "-w",
                          "-o", f"-c listen_addresses=127.0.0.1 -c port={self.port} -k {self.dir}"
                          " -c fsync=off -c full_page_writes=off -c max_connections=200", "start")

    def stop(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError):
            self._as_postgres(str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"), "-m", "immediate",
                              "-w", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)

    def url(self, db: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{db}"

    def new_database(self) -> str:
        """A fresh, empty database; its URL."""
        import psycopg

        self._seq += 1
        name = f"t{os.getpid()}_{self._seq}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


@contextlib.contextmanager
def running_cluster() -> Iterator[PgCluster]:
    bin_dir = pg_bin()
    if bin_dir is None:
        raise RuntimeError("PostgreSQL is not installed (Debian package postgresql; make installs it)")
    cluster = PgCluster(bin_dir)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()
