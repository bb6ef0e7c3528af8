"""Normalized native assembly of a compiled kernel, to prove code is identical.

Two kernels compile to the same machine code when their native functions'
instructions match after dropping comments and assembler directives and
renaming mangled symbols and local labels by order of first appearance.  The
CPython wrapper numba generates around the native function is not compared:
it unboxes the arguments and differs by construction.
"""

from __future__ import annotations

import re

_SYMBOL = re.compile(r"_ZN[\w$.]+|\.LBB\w+|\.LCPI\w+|\.Ltmp\w+|\.LJTI\w+|\.L__unnamed_\w+")


def native_lines(dispatcher, signature=None) -> list:
    """The native function's instructions and local labels, comments and directives dropped."""
    if signature is None:
        if len(dispatcher.signatures) != 1:
            raise ValueError(f"{dispatcher} has {len(dispatcher.signatures)} signatures; pass one")
        signature = dispatcher.signatures[0]
    cres = dispatcher.overloads[tuple(signature)]
    name = cres.fndesc.mangled_name
    lines = dispatcher.inspect_asm(tuple(signature)).splitlines()
    try:
        start = lines.index(f"{name}:") + 1
    except ValueError:
        raise RuntimeError(f"native function {name} not found in the assembly") from None
    body = []
    for line in lines[start:]:
        if line.startswith(".Lfunc_end"):
            break
        code = line.split("#", 1)[0].rstrip()
        if not code.strip():
            continue
        if code.lstrip().startswith(".") and not re.match(r"^\.L\w+:", code.strip()):
            continue
        body.append(code)
    return body


_JUMP = re.compile(r"^\s+j[a-z]+\s+(\.L\w+)\s*$")


def loops(lines: list) -> list:
    """``(first, last)`` line ranges of the loops in :func:`native_lines` output.

    A loop is a backward jump: from line ``last`` to a label at line ``first``;
    every instruction executed on each trip lies between them (LLVM lays a
    loop's blocks out contiguously; cold blocks it moves out of the range are
    not executed on each trip).
    """
    labels = {line.strip()[:-1]: i for i, line in enumerate(lines) if line.strip().endswith(":")}
    out = []
    for i, line in enumerate(lines):
        m = _JUMP.match(line)
        if m and labels.get(m.group(1), i + 1) <= i:
            out.append((labels[m.group(1)], i))
    return out


def native_asm(dispatcher, signature=None) -> list:
    """Instructions of the native function compiled for ``signature`` (default: the only one),
    with symbols and labels renamed by order of first appearance."""
    body = native_lines(dispatcher, signature)
    names: dict = {}

    def rename(match):
        return names.setdefault(match.group(0), f"S{len(names)}")

    return [_SYMBOL.sub(rename, line) for line in body]
