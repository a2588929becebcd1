"""Raw release files: a zip archive, a directory, or one file; plus downloads and checksums.

Downloads go to a temporary file that is renamed when complete, so an interrupted download never
looks like a cached one.
"""

from __future__ import annotations

import hashlib
import io
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib

from tqdm import tqdm

from generative_recommenders.errors import UserInputError

DOWNLOAD_TIMEOUT_S = 10.0


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def verify_sha256(path: pathlib.Path, expected: str) -> None:
    """UserInputError unless ``path`` hashes to ``expected``."""
    got = sha256_file(path)
    if got != expected:
        raise UserInputError(
            f"{path}: checksum mismatch, sha256 is {got}, expected {expected} "
            "(a corrupt or different file: delete it and re-run)"
        )


class RawFiles:
    """Uniform access to the members of a zip archive, a directory, or a single file.

    Members are looked up by base name (``ratings.dat`` finds ``ml-1m/ratings.dat``).
    """

    def __init__(self, path: str | os.PathLike):
        self.path = pathlib.Path(path)
        if not self.path.exists():
            raise UserInputError(f"{self.path}: no such file or directory")
        self._zip: zipfile.ZipFile | None = None
        if self.path.is_file() and zipfile.is_zipfile(self.path):
            try:
                self._zip = zipfile.ZipFile(self.path)
            except (zipfile.BadZipFile, OSError) as e:
                raise UserInputError(
                    f"{self.path}: truncated or corrupt zip archive ({e})"
                ) from None
        elif self.path.is_file() and self.path.suffix in (".zip", ".whl"):
            raise UserInputError(
                f"{self.path}: not a valid zip archive (truncated or corrupt download?)"
            )

    @property
    def is_archive(self) -> bool:
        return self._zip is not None

    def find(self, basename: str) -> str | None:
        """The member (archive name or file path) whose base name is ``basename``, or None."""
        if self._zip is not None:
            for name in self._zip.namelist():
                if name.rsplit("/", 1)[-1] == basename:
                    return name
            return None
        if self.path.is_dir():
            for candidate in (self.path / basename, *self.path.glob(f"*/{basename}")):
                if candidate.is_file():
                    return str(candidate)
            return None
        if self.path.name == basename:
            return str(self.path)
        sibling = self.path.parent / basename
        return str(sibling) if sibling.is_file() else None

    def require(self, basename: str, what: str) -> str:
        """Like ``find`` but a UserInputError naming what was expected when absent."""
        member = self.find(basename)
        if member is None:
            raise UserInputError(f"{self.path}: no {basename} found, expected {what}")
        return member

    def display(self, member: str) -> str:
        return f"{self.path}:{member}" if self._zip is not None else member

    def opener(self, member: str):
        """A zero-argument callable returning a fresh binary handle on ``member``."""
        if self._zip is not None:
            zf = self._zip
            return lambda: zf.open(member)
        return lambda: open(member, "rb")

    def read_bytes(self, member: str) -> bytes:
        try:
            with self.opener(member)() as f:
                return f.read()
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as e:
            raise UserInputError(
                f"{self.display(member)}: truncated or corrupt archive member ({e})"
            ) from None

    def hashes(self, members: list[str]) -> dict[str, str]:
        """Base name -> sha256 of the archive itself, or of each member file used."""
        if self._zip is not None:
            return {self.path.name: sha256_file(self.path)}
        return {pathlib.Path(m).name: sha256_file(m) for m in members}


def bytes_opener(data: bytes):
    """A zero-argument callable returning a fresh BytesIO over ``data``."""
    return lambda: io.BytesIO(data)


def download(url: str, dest: pathlib.Path, flag_hint: str) -> pathlib.Path:
    """Fetch ``url`` to ``dest`` unless cached; UserInputError within seconds when offline.

    Args:
        flag_hint: what to tell the user to pass instead, e.g. "--input_file=<path to ml-1m.zip>".
    """
    if dest.is_file():
        return dest
    try:
        response = urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S)
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        raise UserInputError(
            f"could not download {url} ({reason}); download it yourself and pass {flag_hint}"
        ) from None
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        total = int(response.headers.get("Content-Length") or 0) or None
        with (
            os.fdopen(fd, "wb") as out,
            response,
            tqdm(desc=f"downloading {dest.name}", total=total, unit="B", unit_scale=True) as bar,
        ):
            for block in iter(lambda: response.read(1 << 20), b""):
                out.write(block)
                bar.update(len(block))
        os.replace(tmp_name, dest)
    except (urllib.error.URLError, OSError) as e:
        raise UserInputError(
            f"download of {url} failed ({e}); download it yourself and pass {flag_hint}"
        ) from None
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return dest


def pip_download_wheel(
    requirement: str, wheel_name: str, sha256: str, downloads: pathlib.Path, flag_hint: str
) -> pathlib.Path:
    """``pip download --no-deps requirement`` into ``downloads`` (cached), sha256-verified."""
    dest = downloads / wheel_name
    if dest.is_file():
        verify_sha256(dest, sha256)
        return dest
    downloads.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(dir=downloads, prefix=".pip-"))
    try:
        cmd = [
            sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
            "--disable-pip-version-check", "--quiet", "--dest", str(tmp), requirement,
        ]  # fmt: skip
        with tqdm(desc=f"pip download {requirement}", total=1, unit=" wheel") as bar:
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
            except subprocess.TimeoutExpired:
                raise UserInputError(
                    f"pip download {requirement} timed out; pass {flag_hint}"
                ) from None
            bar.update(1)
        got = tmp / wheel_name
        if proc.returncode != 0 or not got.is_file():
            last = (proc.stderr or proc.stdout or "").strip().splitlines()
            reason = last[-1] if last else f"exit status {proc.returncode}"
            raise UserInputError(f"pip download {requirement} failed ({reason}); pass {flag_hint}")
        verify_sha256(got, sha256)
        os.replace(got, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest
