#!/usr/bin/env python3
"""Writes tests/data/gguf/quant_goldens.bin from the `gguf` Python package (gguf-py, the numpy
port of ggml's reference (de)quantization that ships with llama.cpp).

    /tmp/llvenv/bin/python tools/goldens/quant_goldens.py [--out tests/data/gguf/quant_goldens.bin]

Needs `gguf` and `numpy`. Deterministic: the blocks come from numpy's PCG64 with fixed seeds, so
re-running it reproduces the file byte for byte (for the same gguf/numpy versions).

Dequantization records (what tests/unit/gguf/quant_goldens_test.cc checks bit for bit against
DequantizeRowRef): pseudo-random blocks of Q4_0, Q4_1, Q8_0, Q4_K, Q6_K, F16 and BF16. Quant
bytes are uniformly random; the fp16 scales (d, m, dmin) are sane, i.e. finite with magnitudes
in [2^-10, 8) and random sign, except a few blocks with a zero or a subnormal scale. F16/BF16
rows are random bit patterns plus the special values (zeros, subnormals, largest finite,
infinities, quiet and signalling NaNs).

Quantization records (checked bit for bit against QuantizeRowRef): float rows through gguf-py's
quantizers for Q4_0, Q4_1 and Q8_0 (which follow ggml's quantize_row_*_ref), F16 (numpy's
round-to-nearest-even cast) and BF16 (ggml's rounding); they include zero, constant and
all-negative blocks and exact rounding ties. No NaN inputs: gguf-py keeps NaN payloads where
tandem writes the canonical quiet NaN.

File format, all little-endian:

    header   4 bytes  magic b"TQGD"
             u32      format version (1)
             u32      number of records
    record   u32      kind: 0 = dequantize, 1 = quantize
             u32      ggml type id (GGUF numbering: F16 = 1, Q4_0 = 2, ... BF16 = 30)
             u64      n, the number of elements (a multiple of the type's block size)
             u64      m, the number of encoded bytes (n / block size * block bytes)
             m bytes  the encoded blocks (kind 0: the input; kind 1: the expected output)
             n f32    the values (kind 0: the expected output; kind 1: the input)
"""
import argparse
import os
import struct

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf.constants import GGML_QUANT_SIZES
from gguf.quants import dequantize, quantize

MAGIC = b"TQGD"
VERSION = 1

# Byte offsets of the fp16 scales inside one block, per the ggml block layouts.
HALF_OFFSETS = {
    T.Q4_0: [0],        # d
    T.Q4_1: [0, 2],     # d, m
    T.Q8_0: [0],        # d
    T.Q4_K: [0, 2],     # d, dmin
    T.Q6_K: [208],      # d (after ql[128], qh[64], scales[16])
}

SPECIAL_HALVES = [0x0000, 0x8000, 0x0001, 0x8001, 0x03FF, 0x0400, 0x3C00, 0xBC00, 0x7BFF,
                  0xFBFF, 0x7C00, 0xFC00, 0x7E00, 0x7C01, 0xFE01, 0x3555]
SPECIAL_BF16 = [0x0000, 0x8000, 0x0001, 0x807F, 0x0080, 0x3F80, 0xBF80, 0x7F7F, 0xFF7F,
                0x7F80, 0xFF80, 0x7FC0, 0x7F81, 0xFFC1, 0x3EAB]


def sane_halves(rng, count):
    """fp16 bit patterns: random sign, exponent 5..17 (2^-10 .. 2^2), random mantissa."""
    sign = rng.integers(0, 2, count, dtype=np.uint16) << 15
    exp = rng.integers(5, 18, count, dtype=np.uint16) << 10
    mant = rng.integers(0, 1024, count, dtype=np.uint16)
    return (sign | exp | mant).astype(np.uint16)


def random_blocks(rng, qtype, n_blocks):
    block_elems, block_bytes = GGML_QUANT_SIZES[qtype]
    raw = rng.integers(0, 256, (n_blocks, block_bytes), dtype=np.uint8)
    for off in HALF_OFFSETS[qtype]:
        h = sane_halves(rng, n_blocks)
        h[1] = 0x0000                      # a zero scale
        h[2] = 0x0001 + (off % 0x3FF)      # a subnormal scale
        raw[:, off:off + 2] = h.view(np.uint8).reshape(n_blocks, 2)
    return raw.reshape(-1), n_blocks * block_elems


def dequant_record(qtype, raw, n):
    values = dequantize(raw, qtype).astype(np.float32, copy=False).reshape(-1)
    assert values.size == n, (qtype.name, values.size, n)
    return (0, int(qtype), n, raw.tobytes(), values.tobytes())


def quant_rows(rng, n_blocks):
    """Float rows for the quantizers: blocks of 32 with different shapes and scales."""
    rows = []
    for b in range(n_blocks):
        kind = b % 8
        scale = np.float32(10.0 ** rng.integers(-3, 3))
        if kind == 0:
            x = np.zeros(32, np.float32)
        elif kind == 1:
            x = np.full(32, np.float32(0.75) * scale, np.float32)
        elif kind == 2:
            x = -np.abs(rng.standard_normal(32).astype(np.float32)) * scale - scale
        elif kind == 3:
            # Exact ties for Q8_0 (d = 1: x/d = k + 0.5) and for Q4_0 (d = -1: x/d + 8.5 = k).
            x = np.array([127.0, -0.5, 0.5, 1.5, -2.5, 2.5, 3.5, -4.5] * 4, np.float32)
        elif kind == 4:
            x = np.array([-8.0, 7.0, 0.5, -0.5, 1.5, -1.5, 6.5, -7.5] * 4, np.float32) * scale
        elif kind == 5:
            x = rng.standard_normal(32).astype(np.float32) * scale
            x[rng.integers(0, 32)] = np.float32(40.0) * scale  # an outlier
        else:
            x = rng.uniform(-1, 1, 32).astype(np.float32) * scale
        rows.append(x)
    return np.concatenate(rows).astype(np.float32)


def quant_record(qtype, x):
    with np.errstate(over="ignore"):  # values past 65504 become inf in F16, on purpose
        q = quantize(x, qtype)
    raw = np.ascontiguousarray(q).view(np.uint8).reshape(-1)
    block_elems, block_bytes = GGML_QUANT_SIZES[qtype]
    assert raw.size == x.size // block_elems * block_bytes, qtype.name
    return (1, int(qtype), x.size, raw.tobytes(), x.astype(np.float32).tobytes())


def float_edge_values():
    tiny = np.float32(2.0 ** -24)
    return np.array([0.0, -0.0, 1.0, -1.0, 65504.0, 65519.0, 65520.0, 70000.0, -1e10, np.inf,
                     -np.inf, tiny, tiny * 0.5, tiny * 0.75, tiny * 1.5, 2.0 ** -14,
                     1.0 + 2.0 ** -11, 1.0 + 3 * 2.0 ** -11, 1.0 + 2.0 ** -8, 1.0 + 3 * 2.0 ** -8,
                     3.4e38, 1e-40, -1e-45, 0.1, 1.0 / 3.0], np.float32)


def build_records():
    records = []
    rng = np.random.default_rng(20240611)
    for qtype, n_blocks in [(T.Q4_0, 64), (T.Q4_1, 64), (T.Q8_0, 64), (T.Q4_K, 8), (T.Q6_K, 8)]:
        raw, n = random_blocks(rng, qtype, n_blocks)
        records.append(dequant_record(qtype, raw, n))
    for qtype, specials in [(T.F16, SPECIAL_HALVES), (T.BF16, SPECIAL_BF16)]:
        bits = rng.integers(0, 65536, 2048, dtype=np.uint16)
        bits[:len(specials)] = specials
        records.append(dequant_record(qtype, bits.view(np.uint8), 2048))

    rng = np.random.default_rng(7)
    for qtype in [T.Q4_0, T.Q4_1, T.Q8_0]:
        records.append(quant_record(qtype, quant_rows(rng, 40)))
    for qtype in [T.F16, T.BF16]:
        x = (rng.standard_normal(1024) * 10.0 ** rng.integers(-6, 5, 1024)).astype(np.float32)
        edges = float_edge_values()
        x[:edges.size] = edges
        records.append(quant_record(qtype, x))
    return records


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    default_out = os.path.join(here, "..", "..", "tests", "data", "gguf", "quant_goldens.bin")
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.normpath(default_out))
    args = ap.parse_args()

    records = build_records()
    out = bytearray(MAGIC + struct.pack("<II", VERSION, len(records)))
    for kind, type_id, n, blocks, values in records:
        out += struct.pack("<IIQQ", kind, type_id, n, len(blocks))
        out += blocks
        out += values
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "wb") as f:
        f.write(out)
    print(f"wrote {args.out}: {len(records)} records, {len(out)} bytes")


if __name__ == "__main__":
    main()
