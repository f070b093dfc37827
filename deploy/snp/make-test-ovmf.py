#!/usr/bin/env python3
"""Writes a small SYNTHETIC firmware file that sev-snp-measure (and the sev crate's measurement
module) accept as an AmdSev OVMF build: for tests of deploy/snp/measure only. It does not boot.

Why: an SNP launch with `kernel-hashes=on` needs an OVMF built from edk2's
OvmfPkg/AmdSev/AmdSevX64.dsc, whose SEV metadata has an SNP_KERNEL_HASHES section. Debian's
`ovmf` package (bookworm 2022.11, trixie 2025.02) ships only OvmfPkgX64 builds, which have SEV
metadata but no such section, and no AmdSev build is installable from Debian or PyPI. The
measurement only reads the parts below, so a file holding exactly them measures like a real one.

The format, as sevsnpmeasure/ovmf.py (sev-snp-measure 0.0.13) parses it, from the file's end:
  - the last 32 bytes: the reset vector area (not parsed);
  - before them the footer entry: u16 size of the whole GUIDed table (entries + this 18-byte
    entry), then the 16-byte OVMF_TABLE_FOOTER_GUID 96b582de-1fb2-45f7-baea-a366c55a082d;
  - before it the table, read backwards: each entry is its data, then u16 entry size (data +
    18), then its 16-byte GUID (little-endian UUID bytes):
      SEV_ES_RESET_BLOCK_GUID 00f771de-1a7e-4fcb-890e-68c77e2fb44e: u32 AP reset EIP;
      SEV_HASH_TABLE_RV_GUID 7255371f-3a3b-4b04-927b-1da6efa8d454: u32 GPA, u32 size of the
        table QEMU fills with the kernel, initrd and command-line SHA-256 hashes;
      OVMF_SEV_META_DATA_GUID dc886566-984a-4798-a75e-5585a7bf67cc: u32 offset, from the end of
        the file, of the SEV metadata;
  - the SEV metadata: "ASEV", u32 size (16 + 12 n), u32 version 1, u32 n, then n sections of
    u32 GPA, u32 size, u32 type (1 SNP_SEC_MEM, 2 SNP_SECRETS, 3 CPUID, 0x10 SNP_KERNEL_HASHES).
The firmware is loaded so that it ends at 4 GiB; its size must be a multiple of 4 KiB.
The sections here are those of edk2's AmdSev build (OvmfPkg/ResetVector/X64/OvmfSevMetadata.asm
with the AmdSev memory map); the rest of the file is deterministic filler from --seed.

Usage: make-test-ovmf.py OUT [--seed TEXT] [--size BYTES]
"""

import argparse
import hashlib
import struct
import uuid

FOOTER = "96b582de-1fb2-45f7-baea-a366c55a082d"
HASH_TABLE = "7255371f-3a3b-4b04-927b-1da6efa8d454"
RESET_BLOCK = "00f771de-1a7e-4fcb-890e-68c77e2fb44e"
METADATA = "dc886566-984a-4798-a75e-5585a7bf67cc"

SNP_SEC_MEM, SNP_SECRETS, CPUID, SNP_KERNEL_HASHES = 1, 2, 3, 0x10
SECTIONS = [
    (0x800000, 0x9000, SNP_SEC_MEM),
    (0x809000, 0x1000, SNP_SECRETS),
    (0x80A000, 0x1000, CPUID),
    (0x80B000, 0x4000, SNP_SEC_MEM),
    (0x80F000, 0x1000, SNP_KERNEL_HASHES),
]
HASH_TABLE_GPA, HASH_TABLE_SIZE = 0x80FC00, 0x400
AP_RESET_EIP = 0xFFFFF000


def entry(guid: str, data: bytes) -> bytes:
    return data + struct.pack("<H", len(data) + 18) + uuid.UUID(guid).bytes_le


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out")
    p.add_argument("--seed", default="bastion test ovmf")
    p.add_argument("--size", type=int, default=256 * 1024)
    a = p.parse_args()
    if a.size % 4096 or a.size < 16 * 1024:
        raise SystemExit("--size must be a multiple of 4096, at least 16 KiB")

    metadata = b"ASEV" + struct.pack("<III", 16 + 12 * len(SECTIONS), 1, len(SECTIONS))
    metadata += b"".join(struct.pack("<III", *s) for s in SECTIONS)
    # Layout of the last 4 KiB: [filler][metadata][table][footer entry][32-byte reset area].
    table = entry(RESET_BLOCK, struct.pack("<I", AP_RESET_EIP))
    table += entry(HASH_TABLE, struct.pack("<II", HASH_TABLE_GPA, HASH_TABLE_SIZE))
    tail_len = 18 + 32
    meta_offset_from_end = len(metadata) + 22 + len(table) + tail_len  # 22: metadata entry
    table = entry(METADATA, struct.pack("<I", meta_offset_from_end)) + table
    footer = struct.pack("<H", len(table) + 18) + uuid.UUID(FOOTER).bytes_le
    reset_area = b"\x90" * 16 + b"\xeb\xfe" + b"\x00" * 14  # nops, jmp $: never executed
    tail = metadata + table + footer + reset_area
    assert len(tail) == meta_offset_from_end

    filler = bytearray()
    counter = 0
    while len(filler) < a.size - len(tail):
        filler += hashlib.sha256(f"{a.seed}/{counter}".encode()).digest()
        counter += 1
    image = bytes(filler[: a.size - len(tail)]) + tail
    assert len(image) == a.size
    with open(a.out, "wb") as f:
        f.write(image)


if __name__ == "__main__":
    main()
