"""Regions: alignment, file permissions, and refusal of bad files with clear errors."""

import os
import stat

import numpy as np
import pytest

from engram_numba._region import (HEADER_DTYPE, HEADER_SIZE, KIND_METRICS, KIND_TRACE, Region,
                                  RegionError)

DESC = '{"format": "test"}'


@pytest.mark.parametrize("alignment", [64, 128])
def test_anonymous_region_is_aligned_and_zeroed(alignment):
    r = Region.anonymous(KIND_METRICS, 1000, DESC, alignment)
    assert r.address % alignment == 0
    assert r.size % alignment == 0 and r.size >= 1000
    assert not r.data.any()


def test_bad_alignment_is_refused():
    with pytest.raises(ValueError, match="alignment"):
        Region.anonymous(KIND_METRICS, 64, DESC, 32)


def test_file_region_roundtrip_permissions_and_sharing(tmp_path):
    path = tmp_path / "r.bin"
    r = Region.create(path, KIND_METRICS, 256, DESC, 128)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert r.address % 128 == 0
    r.data[:8] = 7
    with pytest.raises(RegionError, match="bad magic"):
        Region.attach(path, KIND_METRICS)   # not published yet
    r.publish()
    other = Region.attach(path, KIND_METRICS)
    assert other.description == DESC and other.alignment == 128
    assert other.data[:8].tolist() == [7] * 8
    other.data[8] = 9                      # shared mapping: visible to the creator
    assert r.data[8] == 9
    ro = Region.attach(path, KIND_METRICS, writable=False)
    assert not ro.data.flags.writeable
    for region in (r, other, ro):
        region.close()
        assert region.closed


def test_create_never_overwrites(tmp_path):
    path = tmp_path / "r.bin"
    path.write_bytes(b"precious")
    with pytest.raises(FileExistsError):
        Region.create(path, KIND_METRICS, 64, DESC)
    assert path.read_bytes() == b"precious"


def _published(tmp_path):
    path = tmp_path / "r.bin"
    r = Region.create(path, KIND_METRICS, 256, DESC)
    r.publish()
    r.close()
    return path


def _patch_header(path, **fields):
    raw = bytearray(path.read_bytes())
    h = np.frombuffer(raw, dtype=HEADER_DTYPE, count=1).copy()
    for k, v in fields.items():
        h[k] = v
    raw[:HEADER_SIZE] = h.tobytes()
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("damage, message", [
    (lambda p: p.write_bytes(b""), "too short"),
    (lambda p: p.write_bytes(b"x" * 10), "too short"),
    (lambda p: p.write_bytes(os.urandom(8192)), "bad magic"),
    (lambda p: p.write_bytes(b"\x7fELF" + bytes(4092)), "bad magic"),
    (lambda p: os.truncate(p, os.path.getsize(p) - 1), "truncated"),
    (lambda p: os.truncate(p, HEADER_SIZE + 4), "truncated"),
    (lambda p: _patch_header(p, version=99), "version 99"),
    (lambda p: _patch_header(p, kind=KIND_TRACE), "holds trace rings"),
    (lambda p: _patch_header(p, alignment=48), "alignment"),
    (lambda p: _patch_header(p, data_offset=10), "corrupt header"),
    (lambda p: _patch_header(p, data_size=1 << 40), "truncated"),
    (lambda p: _patch_header(p, description_size=1 << 20), "corrupt header"),
    (lambda p: _patch_header(p, sha256=np.zeros(32, np.uint8)), "checksum"),
])
def test_damaged_or_foreign_files_are_refused_clearly(tmp_path, damage, message):
    path = _published(tmp_path)
    damage(path)
    with pytest.raises(RegionError, match=message):
        Region.attach(path, KIND_METRICS)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no region file"):
        Region.attach(tmp_path / "nope", KIND_METRICS)


def test_corrupt_description_bytes_with_matching_hash_are_refused(tmp_path):
    import hashlib
    path = _published(tmp_path)
    raw = bytearray(path.read_bytes())
    bad = b"\xff" * len(DESC)
    raw[HEADER_SIZE:HEADER_SIZE + len(DESC)] = bad
    path.write_bytes(bytes(raw))
    _patch_header(path, sha256=np.frombuffer(hashlib.sha256(bad).digest(), np.uint8))
    with pytest.raises(RegionError, match="unreadable"):
        Region.attach(path, KIND_METRICS)
