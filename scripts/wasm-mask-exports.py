#!/usr/bin/env python3
"""Hides exports of a .wasm module from the host, in place.

Why: Envoy calls `proxy_on_upstream_connection_close` on a network filter's context after it
has already called `proxy_on_delete` for it (the "upstream close" of a network filter is
synthesised from a write with end_stream=true, which can come after the downstream close has
destroyed the context). The proxy-wasm Rust SDK (0.2.5) panics on a callback for an unknown
context id, and a panic aborts the VM: every connection of that worker dies. Our filters do not
use that callback (the end of the bridge stream arrives as `end_of_stream` in
`on_upstream_data`), so the export is renamed and Envoy, which looks callbacks up by export
name, never calls it.

The rename keeps the name's length, so only bytes inside the export section change.
Usage: wasm-mask-exports.py FILE.wasm NAME [NAME...]
"""
import sys


def leb128(buf, pos):
    result = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return result, pos


def main():
    path, names = sys.argv[1], [n.encode() for n in sys.argv[2:]]
    data = bytearray(open(path, "rb").read())
    if data[:4] != b"\0asm":
        sys.exit(f"{path}: not a wasm module")
    pos, masked = 8, set()
    while pos < len(data):
        section, pos = data[pos], pos + 1
        size, pos = leb128(data, pos)
        end = pos + size
        if section == 7:  # export section
            count, p = leb128(data, pos)
            for _ in range(count):
                nlen, p = leb128(data, p)
                name = bytes(data[p:p + nlen])
                if name in names:
                    # Same length, cannot collide with a proxy_on_* callback name.
                    new = (b"geomesh_masked_" + name)[:nlen]
                    data[p:p + nlen] = new
                    masked.add(name)
                p += nlen
                p += 1  # export kind
                _, p = leb128(data, p)  # index
        pos = end
    missing = [n.decode() for n in names if n not in masked and n]
    open(path, "wb").write(data)
    for n in sorted(masked):
        print(f"{path}: export {n.decode()} masked")
    if missing:
        print(f"{path}: not exported (nothing to mask): {', '.join(missing)}")


if __name__ == "__main__":
    main()
