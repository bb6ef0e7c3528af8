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


def native_asm(dispatcher, signature=None) -> list:
    """Instructions of the native function compiled for ``signature`` (default: the only one)."""
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
        body.append(line)
    names: dict = {}

    def rename(match):
        return names.setdefault(match.group(0), f"S{len(names)}")

    out = []
    for line in body:
        code = line.split("#", 1)[0].rstrip()
        if not code.strip() or code.lstrip().startswith("."):
            if not re.match(r"^\.L\w+:", code.strip()):
                continue
        out.append(_SYMBOL.sub(rename, code))
    return out
