#!/usr/bin/env bash
# Three companies fine-tune one GPT-2 with DP on their confidential text, each on its own node
# (a local process on the simulated TEE). Without --checkpoint, a small GPT-2 is first
# pre-trained here WITHOUT privacy on a generated public corpus; with --checkpoint DIR (a
# Hugging Face GPT-2 directory: config.json, model.safetensors, tokenizer.json), LoRA
# fine-tuning of it. Prints perplexity per company before and after, epsilon per company, and
# three sampled continuations. Everything lands in examples/gpt-finetune/work/.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$here/../.."
checkpoint=""
pretrain_steps=150
while [ $# -gt 0 ]; do
    case "$1" in
        --checkpoint) checkpoint="$(cd "$2" && pwd)"; shift 2 ;;
        --pretrain-steps) pretrain_steps="$2"; shift 2 ;;
        -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
        *) echo "unknown argument $1 (try --help)" >&2; exit 2 ;;
    esac
done
source "$root/scripts/env.sh"
cargo build --release --locked -p bastion-runtime --bin bastion
bastion="$root/target/release/bastion"
work="$here/work"
corpora="$work/corpora"
mkdir -p "$work"
companies=(acme-bank northwind-health globex-legal)

echo "== 1. each company's corpus (and a public one), generated" >&2
python3 "$here/make_corpora.py" --out "$corpora"
# The model owner's held-out text: records none of the companies trains on.
cat "${companies[@]/#/$corpora/}"/heldout.jsonl 2>/dev/null > "$corpora/model-owner-heldout.jsonl" ||
    for c in "${companies[@]}"; do cat "$corpora/$c/heldout.jsonl"; done > "$corpora/model-owner-heldout.jsonl"
# Plain text of each company's held-out records, for `bastion model perplexity`.
for c in "${companies[@]}"; do
    python3 -c 'import json,sys; [print(json.loads(l)["text"]) for l in open(sys.argv[1])]' \
        "$corpora/$c/heldout.jsonl" > "$corpora/$c/heldout.txt"
done

if [ -z "$checkpoint" ]; then
    job="$here/job.toml"
    base="$work/base"
    if [ ! -f "$base/model.safetensors" ]; then
        echo "== 2. the base model: pre-trained WITHOUT privacy on public text only" >&2
        "$bastion" model pretrain --checkpoint "$base" --text "$corpora/public.txt" \
            --layers 4 --width 256 --heads 4 --seq 128 --vocab 4096 --steps "$pretrain_steps" >&2
    fi
else
    job="$here/job-lora.toml"
    base="$work/gpt2"
    ln -sfn "$checkpoint" "$base"
    echo "== 2. the base model: $checkpoint (LoRA on c_attn)" >&2
fi

perplexities() {
    for c in "${companies[@]}"; do
        "$bastion" model perplexity --checkpoint "$1" --text "$corpora/$c/heldout.txt" |
            python3 -c 'import json,sys; print(json.load(sys.stdin)["perplexity"])'
    done
}
echo "== 3. held-out perplexity of the base model" >&2
mapfile -t before < <(perplexities "$base")

echo "== 4. DP fine-tuning on the three companies' nodes" >&2
report="$("$bastion" cluster up --fresh --dir "$work/cluster" --job "$job" \
    --dataset "acme-bank=jsonl:$corpora/acme-bank/train.jsonl" \
    --dataset "northwind-health=jsonl:$corpora/northwind-health/train.jsonl" \
    --dataset "globex-legal=jsonl:$corpora/globex-legal/train.jsonl")"
release="$work/cluster/node-0/release"
mapfile -t after < <(perplexities "$release")

echo "== 5. the report" >&2
mapfile -t prompts < "$corpora/prompts.txt"
continuations=()
for p in "${prompts[@]}"; do
    continuations+=("$("$bastion" model generate --checkpoint "$release" --prompt "$p" --max-new-tokens 24)")
done
python3 - "$report" "$release" "${companies[@]}" -- "${before[@]}" -- "${after[@]}" -- "${continuations[@]}" <<'PY'
import json, sys
args = sys.argv[1:]
report, release = json.loads(args[0]), args[1]
rest = args[2:]
cut = [i for i, a in enumerate(rest) if a == "--"]
companies = rest[:cut[0]]
before = [float(x) for x in rest[cut[0] + 1:cut[1]]]
after = [float(x) for x in rest[cut[1] + 1:cut[2]]]
continuations = [json.loads(c) for c in rest[cut[2] + 1:]]
epsilon = {d["dataset"]: d for d in report["privacy"]}
out = {
    "status": report["status"],
    "steps": report["steps"],
    "companies": [
        {
            "company": c,
            "perplexity_before": round(b, 3),
            "perplexity_after": round(a, 3),
            "epsilon": epsilon[c]["epsilon"],
            "epsilon_budget": epsilon[c]["epsilon_budget"],
            "delta": epsilon[c]["delta"],
        }
        for c, b, a in zip(companies, before, after)
    ],
    "continuations": [{"prompt": c.get("prompt"), "text": c.get("text")} for c in continuations],
    "release": release,
    "seconds": report["seconds"],
    "simulated_tee": report["simulated_tee"],
}
print(json.dumps(out, indent=2, ensure_ascii=False))
PY
