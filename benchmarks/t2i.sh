#!/usr/bin/env bash
# Text-to-image accuracy of the shipped Shapes models (docs/backbone.md): captions -> generate -> score.
# 500 detailed captions from a caption seed never used in training (training scenes come from
# integer seeds seed*1_000_003+k; `world captions` draws from the string seed "captions/SEED"), plus
# the 52 hand-written paraphrases of tests/fixtures/paraphrases.jsonl.
# Usage: bash benchmarks/t2i.sh [SEED] [N] [OUT]
set -euo pipefail
seed=${1:-99}
n=${2:-500}
out=${3:-runs/t2i}
mkdir -p "$out"
timed() { local name=$1; shift; local t0; t0=$(date +%s.%N); "$@"; echo "$name: $(echo "$(date +%s.%N) - $t0" | bc) s"; }
retouch world captions --n "$n" --seed "$seed" --out "$out/captions.jsonl"
run() {  # name model steps prompts field
  local name=$1 model=$2 steps=$3 prompts=$4 field=$5
  rm -rf "${out:?}/$name"
  timed "generate $name" retouch generate --prompts "$prompts" --field "$field" --out "$out/$name" --model "$model" --steps "$steps"
  retouch world score "$out/$name" --against "$prompts" --json "$out/$name.json" > /dev/null
  python -c "import json,sys; r=json.load(open(sys.argv[1])); print(sys.argv[2], 'exact_scene', r['exact_scene'], 'attr_accuracy', r['attr_accuracy'])" "$out/$name.json" "$name"
}
run teacher models/shapes-teacher 25 "$out/captions.jsonl" detailed
run turbo4 models/shapes-turbo 4 "$out/captions.jsonl" detailed
run turbo1 models/shapes-turbo 1 "$out/captions.jsonl" detailed
run para-teacher models/shapes-teacher 25 tests/fixtures/paraphrases.jsonl caption
run para-turbo4 models/shapes-turbo 4 tests/fixtures/paraphrases.jsonl caption
