"""Keeping numba's disk cache of the kernels in step with their source.

numba revalidates a cached kernel against its own source file only (its
modification time and size), not against the helpers in other files that
it inlined: after editing ``_datafits.py``, ``_newton.solve_tasks`` would
load from the cache with the old datafit compiled in. So the cache is
stamped with a digest of every kernel source file, and a changed digest
clears the kernels' cached files before anything loads them. Reading and
hashing the sources costs about a millisecond per import.
"""

import hashlib
from pathlib import Path

from numba.core import caching

_HERE = Path(__file__).resolve().parent
_STAMP = "skmeta-kernels.stamp"


def source_digest():
    """Digest of the kernel package's source files."""
    digest = hashlib.blake2b(digest_size=16)
    for path in sorted(_HERE.glob("*.py")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def cache_folders():
    """Where numba may keep this package's cached kernels (existing folders)."""
    # numba's own rules (its locators), asked about a function of this folder
    impl = getattr(caching, "CacheImpl", None) or caching._CacheImpl
    here = str(_HERE / "_cache.py")
    folders = []
    for locator_class in impl._locator_classes:
        try:
            locator = locator_class.from_function(source_digest, here)
        except Exception:  # a locator that does not apply to this file
            continue
        if locator is not None:
            folder = Path(locator.get_cache_path())
            if folder.is_dir() and folder not in folders:
                folders.append(folder)
    return folders


def clear_stale_cache():
    """Delete the cached kernels compiled from other sources than these."""
    digest = source_digest()
    for folder in cache_folders():
        stamp = folder / _STAMP
        try:
            if stamp.is_file() and stamp.read_text() == digest:
                continue
            for cached in folder.glob("_*.nb[ic]"):
                cached.unlink(missing_ok=True)
            stamp.write_text(digest)
        except OSError:  # a read-only or vanished folder: numba looks elsewhere
            continue
