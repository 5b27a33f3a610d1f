"""linft.packages: the one package locator and sha256 cache shared by the model files and the data sources."""

import hashlib
import os

from linft import packages


def test_file_sha256_is_cached_until_the_file_changes(tmp_path):
    path = tmp_path / "blob.bin"
    path.write_bytes(b"first")
    assert packages.file_sha256(path) == hashlib.sha256(b"first").hexdigest()
    assert packages.file_sha256(str(path)) == hashlib.sha256(b"first").hexdigest()  # str paths too
    path.write_bytes(b"other")
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))  # a new mtime even on a coarse clock
    assert packages.file_sha256(path) == hashlib.sha256(b"other").hexdigest()


def test_package_dir_finds_installed_packages_without_importing_them():
    assert packages.package_dir("linft") is not None and (packages.package_dir("linft") / "packages.py").is_file()
    assert packages.package_dir("no_such_package_xyz") is None
    assert packages.find_spec("no_such_package_xyz.child") is None  # a missing parent answers None, never raises
