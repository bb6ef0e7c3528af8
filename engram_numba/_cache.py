"""Keep numba's on-disk cache honest about this package's code.

numba keys a cached function on its own source file only.  A kernel that
inlines our intrinsics or layout constants would keep running stale machine
code after engram-numba changes.  Two guards:

* :data:`FINGERPRINT`, a hash of every source file of the package, is part of
  the numba type of every object we pass into kernels (metric sets, tracers),
  so a cached kernel taking one of them no longer matches after any change.
* Our own ``cache=True`` functions get a cache locator whose source stamp
  includes the fingerprint.  That includes the recording functions generated
  per metric and event shape (:func:`._kernel_arg.generate`): each is written
  once to a file of :func:`generated_dir` (a directory per fingerprint, the
  file named by a hash of its text and of every name it uses) and compiled
  from there, so numba caches it like a function of the package.  One whose
  names cannot be described (a user's kernel method) is marked with
  :func:`mark_uncached` and compiles in every process, as before.

Where no cache location is writable (a read-only install, no writable home,
``NUMBA_CACHE_DIR`` unusable), numba would refuse to define a ``cache=True``
function at all ("no locator available"), and nothing of the package would
import.  Our functions then compile without an on-disk cache instead, and one
``RuntimeWarning`` says so.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

from ._compat import cache_impl_class

_PACKAGE_DIR = Path(__file__).resolve().parent


def _fingerprint() -> str:
    digest = hashlib.sha256()
    for path in sorted(_PACKAGE_DIR.rglob("*.py")):
        digest.update(path.relative_to(_PACKAGE_DIR).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


FINGERPRINT = _fingerprint()


def _install_locator() -> None:
    try:
        from numba.core import caching
        impl = cache_impl_class(caching)
        base = caching._CacheLocator
    except (ImportError, AttributeError):
        # numba's internals moved: cached kernels could run stale code after an
        # upgrade of this package, so say so instead of failing silently
        import warnings
        warnings.warn("engram-numba could not key numba's on-disk cache on its own version; "
                      "clear __pycache__ after upgrading engram-numba", RuntimeWarning,
                      stacklevel=2)
        return

    class PackageCacheLocator(base):
        """Wraps numba's locator for our files and adds the package fingerprint."""

        def __init__(self, inner):
            self._inner = inner

        def ensure_cache_path(self):
            self._inner.ensure_cache_path()

        def get_cache_path(self):
            path = self._inner.get_cache_path()
            _package_cache_paths.add(os.path.abspath(path))
            return path

        def get_source_stamp(self):
            return (self._inner.get_source_stamp(), FINGERPRINT)

        def get_disambiguator(self):
            return self._inner.get_disambiguator()

        @classmethod
        def from_function(cls, py_func, py_file):
            if getattr(py_func, _UNCACHED, False):
                return _Uncached(py_file)       # generated from names we cannot key on
            try:
                where = Path(py_file).resolve()
                gen = _generated_dir
                inside = where.is_relative_to(_PACKAGE_DIR) or (
                    gen is not None and where.is_relative_to(gen))
            except (OSError, ValueError):
                return None
            if not inside:
                return None
            for other in impl._locator_classes:
                if other is cls:
                    continue
                inner = other.from_function(py_func, py_file)
                if inner is None:
                    continue
                try:
                    inner.ensure_cache_path()       # numba's own test: a writable place
                except OSError:
                    continue
                return cls(inner)
            return _Uncached.for_file(py_file)

    class _Uncached(base):
        """No writable cache location: nothing is loaded (the index is never found) and
        nothing saved (see the ``check_cachable`` guard below); warned about once."""

        _path = os.path.join(os.sep, f".engram-numba-no-cache-{uuid.uuid4().hex}")
        _warned = False

        def __init__(self, py_file):
            self._py_file = py_file

        @classmethod
        def for_file(cls, py_file):
            if not cls._warned:
                cls._warned = True
                import warnings
                warnings.warn("engram-numba: no writable cache location (package directory, "
                              "NUMBA_CACHE_DIR, the user's cache directory); compiled code is "
                              "not cached on disk and compiles again in every process",
                              RuntimeWarning, stacklevel=2)
            return cls(py_file)

        @classmethod
        def from_function(cls, py_func, py_file):
            return None                        # only ever made by PackageCacheLocator

        def ensure_cache_path(self):
            pass

        def get_cache_path(self):
            return self._path                  # never created: loading finds nothing

        def get_source_stamp(self):
            return ("uncached", FINGERPRINT)

        def get_disambiguator(self):
            return "uncached"

    for cls in {impl, *_subclasses(impl)}:
        check = cls.__dict__.get("check_cachable")
        if check is not None and not getattr(check, "_engram_guard", False):
            def guarded_check(self, data, _check=check):
                if isinstance(getattr(self, "_locator", None), _Uncached):
                    return False               # nowhere to save it
                return _check(self, data)
            guarded_check._engram_guard = True
            cls.check_cachable = guarded_check

    # A cached body of the package is shared by every program that records the same
    # shape, so its index can hold signatures with another program's types (an IntEnum
    # label of a module this program cannot import), and numba unpickles the whole
    # index before it looks for an entry.  For the package's cache paths, an index
    # that cannot be read counts as empty: the body compiles and the index is rewritten.
    index_file = getattr(caching, "IndexDataCacheFile", None)
    load_index = getattr(index_file, "_load_index", None)
    if load_index is not None and not getattr(load_index, "_engram_guard", False):
        def guarded_load_index(self, _load=load_index):
            try:
                return _load(self)
            except Exception:  # unpickling names what this program lacks
                if os.path.abspath(getattr(self, "_cache_path", "")) in _package_cache_paths:
                    return {}
                raise
        guarded_load_index._engram_guard = True
        index_file._load_index = guarded_load_index

    if not any(getattr(c, "__name__", "") == "PackageCacheLocator" for c in impl._locator_classes):
        impl._locator_classes = [PackageCacheLocator, *impl._locator_classes]


_UNCACHED = "_engram_numba_uncached"


def mark_uncached(py_func):
    """Compile ``py_func`` without an on-disk cache even where ``cache=True`` is asked for."""
    setattr(py_func, _UNCACHED, True)
    return py_func


_generated_dir = None
_generated_checked = False


def generated_dir():
    """The directory of generated sources for this package version (created on first use):
    ``$NUMBA_CACHE_DIR`` or the user's cache directory, then ``engram-numba-generated/<FINGERPRINT>``;
    None when neither is writable (generated functions then compile in every process)."""
    global _generated_dir, _generated_checked
    if _generated_checked:
        return _generated_dir
    _generated_checked = True
    from numba.core import config
    roots = [config.CACHE_DIR] if config.CACHE_DIR else []
    roots.append(os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"),
                                                                  ".cache"))
    for root in roots:
        # a name that is no Python identifier: never imported as a package from there
        path = Path(root) / "engram-numba-generated" / FINGERPRINT
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(path, os.W_OK | os.X_OK):
            _generated_dir = path.resolve()
            break
    return _generated_dir


def generated_file(text: str, identity: str):
    """The path of a generated source file holding ``text`` (written now if absent), named
    by a hash of ``identity`` (the text and everything it refers to); None when no
    directory is writable."""
    where = generated_dir()
    if where is None:
        return None
    name = "gen_" + hashlib.sha256(f"{FINGERPRINT}\n{identity}".encode()).hexdigest()[:24]
    path = where / f"{name}.py"
    if path.exists():
        return path
    # written whole, then linked into place: never a half-written file, never rewritten
    # (numba stamps a source by its modification time)
    tmp = where / f".{name}.{os.getpid()}.{uuid.uuid4().hex}.tmp"
    try:
        tmp.write_text(text)
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
    except OSError:
        return path if path.exists() else None
    finally:
        try:
            tmp.unlink()
        except OSError:
            pass
    return path


_package_cache_paths: set = set()


def _subclasses(cls) -> set:
    out = set()
    for sub in cls.__subclasses__():
        out |= {sub} | _subclasses(sub)
    return out


def guarded(dispatcher) -> bool:
    """Whether a ``cache=True`` dispatcher of this package is keyed on :data:`FINGERPRINT`."""
    locator = getattr(getattr(getattr(dispatcher, "_cache", None), "_impl", None), "_locator", None)
    return type(locator).__name__ == "PackageCacheLocator"


_install_locator()


# -- pickling of our numba types --------------------------------------------------
# numba's cache index pickles the signatures of compiled kernels and unpickles
# the whole index *before* checking whether it is stale.  Our types therefore
# pickle as plain data (class references as module/qualname strings) and
# rebuild through :func:`rebuild_type`, which never raises: a class that no
# longer exists, or a type whose constructor changed, becomes a StaleType that
# equals nothing, so the old entry is simply never used.

def class_ref(cls):
    return None if cls is None else (cls.__module__, cls.__qualname__)


def resolve_class(ref):
    if ref is None:
        return None
    import importlib
    module, qualname = ref
    obj = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def rebuild_type(factory, args):
    try:
        return factory(*args)
    except Exception:  # anything stale: never matches a live type
        from numba.core import types

        class StaleType(types.Opaque):
            pass

        return StaleType(f"stale<{factory.__name__}{args!r}>")
