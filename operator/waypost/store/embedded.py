"""A throwaway local Postgres server for `waypost dev`, the tests and the benchmarks.

Uses PostgreSQL server binaries from, in this order: the directory named by
``WAYPOST_PG_BIN``; Debian's ``postgresql`` package; ``initdb`` on ``PATH``;
the ``pgserver`` wheel (Postgres binaries on PyPI, in the ``dev`` extra), so
``pip install 'waypost[dev]'`` is enough on a machine without a Postgres
package. Postgres
refuses to run as root, so when we are root the server runs as the ``postgres``
system user (created by the package) and its data directory is given to it.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import importlib.util
import os
import pwd
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path


class EmbeddedPostgresError(RuntimeError):
    pass


def find_bin_dir() -> Path:
    """The directory holding ``initdb``, ``pg_ctl`` and ``postgres``."""
    candidates: list[str] = []
    if os.environ.get("WAYPOST_PG_BIN"):
        candidates.append(os.environ["WAYPOST_PG_BIN"])
    candidates += sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]), reverse=True
    )
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(str(Path(initdb).resolve().parent))
    wheel = _pgserver_bin_dir()
    if wheel is not None:
        candidates.append(str(wheel))
    for candidate in candidates:
        if (Path(candidate) / "initdb").exists() and (Path(candidate) / "pg_ctl").exists():
            return Path(candidate)
    raise EmbeddedPostgresError(
        "no PostgreSQL server binaries found: pip install 'waypost[dev]' (brings the pgserver "
        "wheel), or install the 'postgresql' package (make deps does this on Debian), or set "
        "WAYPOST_PG_BIN to the folder with initdb, or set WAYPOST_DATABASE_URL to use an "
        "existing server"
    )


def _pgserver_bin_dir() -> Path | None:
    """The binaries inside the pgserver wheel, found without importing it (its import
    pulls in more than we use: only the binaries are needed)."""
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "pginstall" / "bin"
        if (candidate / "initdb").exists():
            return candidate
    return None


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on now (the OS picks it)."""
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class EmbeddedPostgres:
    """One Postgres cluster in ``data_dir``, listening on 127.0.0.1:``port``."""

    data_dir: Path
    port: int = field(default_factory=free_port)
    durable: bool = True
    settings: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.data_dir = self.data_dir.resolve()
        self.bin_dir = find_bin_dir()
        self._run_as: str | None = None
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError as exc:
                raise EmbeddedPostgresError(
                    "running as root needs the 'postgres' system user to own the server; "
                    "install the 'postgresql' package or run as a normal user"
                ) from exc
            self._run_as = "postgres"
            if not self._reachable_by_server_user(self.data_dir.parent):
                # Folders such as /root or pytest's tmp are closed to other users; keep
                # the cluster in a place the server's user can reach, one per path.
                digest = hashlib.sha256(str(self.data_dir).encode()).hexdigest()[:16]
                self.data_dir = Path("/var/tmp/waypost-postgres") / digest
                self.data_dir.parent.mkdir(parents=True, exist_ok=True)
                os.chmod(self.data_dir.parent, 0o755)

    def _reachable_by_server_user(self, folder: Path) -> bool:
        folder.mkdir(parents=True, exist_ok=True)
        probe = subprocess.run(self._cmd("test", "-x", str(folder)),
                               capture_output=True, check=False)
        return probe.returncode == 0

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def dsn_for(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _cmd(self, *args: str) -> list[str]:
        if self._run_as:
            return ["runuser", "-u", self._run_as, "--", *args]
        return list(args)

    def _run(self, *args: str) -> None:
        proc = subprocess.run(self._cmd(*args), capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise EmbeddedPostgresError(
                f"{Path(args[0]).name} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}"
            )

    def start(self) -> EmbeddedPostgres:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._run_as:
            user = pwd.getpwnam(self._run_as)
            os.chown(self.data_dir, user.pw_uid, user.pw_gid)
        if not (self.data_dir / "PG_VERSION").exists():
            init_args = [str(self.bin_dir / "initdb"), "-D", str(self.data_dir), "-U", "postgres",
                         "-A", "trust", "-E", "UTF8", "--locale=C"]
            if not self.durable:
                init_args.append("--no-sync")
            self._run(*init_args)
        options = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            # TCP only: socket paths have a short length limit deep folders exceed.
            "unix_socket_directories": "''",
            "max_connections": "200",
            "shared_buffers": "128MB",
        }
        if not self.durable:
            # Tests and dev do not need crash safety; a benchmark must never use this.
            options.update(fsync="off", synchronous_commit="off", full_page_writes="off")
        options.update(self.settings)
        opt_text = " ".join(f"-c {k}={v}" for k, v in options.items())
        self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-l",
                  str(self.data_dir / "server.log"), "-o", opt_text, "-w", "-t", "60", "start")
        self._wait_ready()
        return self

    def _wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(
                ("127.0.0.1", self.port), timeout=1
            ):
                return
            time.sleep(0.1)
        raise EmbeddedPostgresError(f"postgres did not accept connections on port {self.port}")

    def stop(self, mode: str = "fast") -> None:
        if (self.data_dir / "postmaster.pid").exists():
            self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-m", mode,
                      "-w", "stop")

    def restart(self) -> None:
        self.stop()
        self.start()

    def destroy(self) -> None:
        with contextlib.suppress(EmbeddedPostgresError):
            self.stop("immediate")
        shutil.rmtree(self.data_dir, ignore_errors=True)
