"""deploy/snp/measure: the expected SEV-SNP launch measurement of the node image, written into a
verification policy for `bastion attest verify --policy` and printed as node.toml's
`[tee] measurements` line. Run it through ./measure (which installs sev-snp-measure first).

The digest is computed by sev-snp-measure's CLI (PyPI `sev-snp-measure`, pinned in
scripts/deploy-venv.sh) in `snp` mode, once per (vCPU count, vCPU type): the launch digest
covers one VMSA per vCPU, and the VMSA holds the CPUID signature of the vCPU type, so each
launch shape has its own measurement. The inputs must be byte-for-byte those the QEMU launch
uses (deploy/snp/launch): the same OVMF, kernel, initrd and command line (default: the file
deploy/snp/cmdline, which launch reads too). With --node-policy FILE, both append
` bastion.policy_sha256=<SHA-256 of FILE>` to that line: the node refuses to start unless its
config's policy file (node.toml `policy = ...`: peer measurements, minimum TCB, parties) has
exactly that hash, so the measurement covers the policy although the config disk is not measured.
"""

import argparse
import hashlib
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
HEX96 = re.compile(r"^[0-9a-f]{96}$")
TCB_FIELDS = ("bootloader", "tee", "snp", "microcode", "fmc")
# The kernel command line parameter the node checks its policy file against (actors/src/config.rs).
POLICY_PIN = "bastion.policy_sha256"


def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def measure(tool: str, a, vcpus: int, vcpu_type: str) -> str:
    cmd = [tool, "--mode", "snp", "--vcpus", str(vcpus), "--vcpu-type", vcpu_type]
    cmd += ["--ovmf", a.ovmf, "--kernel", a.kernel, "--initrd", a.initrd, "--append", a.append]
    cmd += ["--output-format", "hex"]
    if a.guest_features:
        cmd += ["--guest-features", a.guest_features]
    if a.vmm_type:
        cmd += ["--vmm-type", a.vmm_type]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"measure: sev-snp-measure failed: {out.stderr.strip() or out.stdout.strip()}")
    digest = out.stdout.strip().lower()
    if not HEX96.match(digest):
        sys.exit(f"measure: sev-snp-measure printed {digest!r}, not 96 hex digits")
    return digest


def parse_tcb(text: str) -> dict:
    tcb = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, _, value = part.partition("=")
        if key not in TCB_FIELDS or not value.isdigit() or int(value) > 255:
            sys.exit(f"measure: --min-tcb: {part!r} is not one of {', '.join(TCB_FIELDS)}=0..255")
        tcb[key] = int(value)
    if not any(tcb.get(k, 0) for k in ("bootloader", "tee", "snp", "microcode")):
        sys.exit("measure: --min-tcb must set a minimum (all zero accepts any firmware)")
    return tcb


def main() -> None:
    p = argparse.ArgumentParser(
        prog="deploy/snp/measure",
        description="Expected SEV-SNP launch measurement of the node image, as a verification "
        "policy and a node.toml line.",
    )
    p.add_argument("--ovmf", required=True, help="the AmdSev OVMF the host launches (-bios)")
    p.add_argument("--kernel", required=True, help="the guest kernel (-kernel)")
    p.add_argument("--initrd", required=True, help="the initrd with bastion and libtorch (-initrd)")
    cmdline = p.add_mutually_exclusive_group()
    cmdline.add_argument("--append", help="the kernel command line (-append)")
    cmdline.add_argument(
        "--append-file",
        default=os.path.join(HERE, "cmdline"),
        help="file whose first line is the command line (default: deploy/snp/cmdline)",
    )
    p.add_argument("--vcpus", type=int, action="append", help="vCPU count (repeatable; default 4)")
    p.add_argument(
        "--vcpu-type",
        action="append",
        help="QEMU CPU model: EPYC-v4, EPYC-Milan, EPYC-Genoa, EPYC-Turin, ... (repeatable; "
        "default EPYC-v4)",
    )
    p.add_argument(
        "--vmm-type",
        help="QEMU (default), or ec2 / gce for those clouds' SNP VMs with their published OVMF",
    )
    p.add_argument("--guest-features", help="SEV features in the VMSA (sev-snp-measure's default 0x1)")
    p.add_argument(
        "--add-measurement",
        action="append",
        default=[],
        metavar="HEX",
        help="also allow this measurement (96 hex digits), e.g. a previous image during a rollout",
    )
    p.add_argument(
        "--node-policy",
        metavar="FILE",
        help=f"the nodes' policy file (node.toml's `policy`): appends {POLICY_PIN}=<its SHA-256> "
        "to the command line, as deploy/snp/launch --node-policy does",
    )
    p.add_argument("--policy", metavar="FILE", help="write the verification policy here")
    p.add_argument(
        "--min-tcb",
        metavar="FIELD=N,...",
        help="the policy's [min_tcb], e.g. bootloader=3,tee=0,snp=8,microcode=115 (required "
        "with --policy: AMD's roots need a minimum)",
    )
    a = p.parse_args()
    if a.append is None:
        with open(a.append_file, encoding="utf-8") as f:
            a.append = f.readline().rstrip("\n")
    if a.node_policy:
        if POLICY_PIN in a.append:
            sys.exit(
                f"measure: the command line already has {POLICY_PIN}; "
                "give --node-policy or the pin, not both"
            )
        try:
            a.append += f" {POLICY_PIN}={sha256(a.node_policy)}"
        except OSError as e:
            sys.exit(f"measure: --node-policy: {e}")
    vcpus = a.vcpus or [4]
    types = a.vcpu_type or ["EPYC-v4"]
    if any(n < 1 or n > 512 for n in vcpus):
        sys.exit("measure: --vcpus must be 1..512")
    extra = [m.strip().lower() for m in a.add_measurement]
    for m in extra:
        if not HEX96.match(m):
            sys.exit(f"measure: --add-measurement {m!r} is not 96 hex digits (48 bytes)")
    tcb = None
    if a.policy:
        if not a.min_tcb:
            sys.exit("measure: --policy needs --min-tcb (e.g. bootloader=3,tee=0,snp=8,microcode=115)")
        tcb = parse_tcb(a.min_tcb)

    tool = os.path.join(os.path.dirname(sys.executable), "sev-snp-measure")
    version = subprocess.run([tool, "--version"], capture_output=True, text=True).stdout.strip()
    inputs = [
        f"ovmf {os.path.basename(a.ovmf)} sha256 {sha256(a.ovmf)}",
        f"kernel {os.path.basename(a.kernel)} sha256 {sha256(a.kernel)}",
        f"initrd {os.path.basename(a.initrd)} sha256 {sha256(a.initrd)}",
        f"append {a.append!r}",
    ]
    if a.node_policy:
        inputs.append(f"node policy {os.path.basename(a.node_policy)} (pinned in append)")
    measured = []
    for t in types:
        for n in vcpus:
            measured.append((measure(tool, a, n, t), f"{n} vCPUs {t}"))

    allowed = []
    comments = {}
    for digest, shape in measured + [(m, "--add-measurement") for m in extra]:
        if digest not in comments:
            allowed.append(digest)
            comments[digest] = shape

    if a.policy:
        lines = [
            "# Written by deploy/snp/measure: the expected SEV-SNP launch measurements of the",
            f"# node image ({version}, mode snp). Inputs:",
        ]
        lines += [f"#   {i}" for i in inputs]
        lines += ["# Read by `bastion attest verify --policy` (attestation/src/policy.rs).", ""]
        lines.append("allowed_measurements = [")
        lines += [f'    "{d}", # {comments[d]}' for d in allowed]
        lines += ["]", "", "[min_tcb]"]
        lines += [f"{k} = {tcb[k]}" for k in TCB_FIELDS if k in tcb]
        tmp = a.policy + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        os.replace(tmp, a.policy)

    print(f"# SEV-SNP launch measurements ({version}, mode snp)")
    for i in inputs:
        print(f"#   {i}")
    for digest, shape in measured:
        print(f"#   {shape}: {digest}")
    if a.policy:
        print(f"# verification policy written to {a.policy}")
    if a.node_policy:
        # The digest hashes the node policy through the pin, so that policy cannot list it.
        print("# for verify.toml, or another node policy; not for the node policy it pins:")
    else:
        print("# for node.toml (the measurements this node's peers may have):")
    print("[tee]")
    print("measurements = [" + ", ".join(f'"{d}"' for d in allowed) + "]")


if __name__ == "__main__":
    main()
