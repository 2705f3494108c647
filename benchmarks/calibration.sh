#!/usr/bin/env bash
# Numbers in docs/world.md and docs/benchmark.md (Shapes world): scene-reader accuracy and the
# calibration of the metrics by the two reference methods on a 700-case Shapes-PIE suite.
# Usage: bash benchmarks/calibration.sh [SEED] [OUT]   (about 3 minutes on 2 CPU cores)
set -euo pipefail
seed=${1:-1}
out=${2:-runs/calibration}
mkdir -p "$out"
timed() { local name=$1; shift; local t0; t0=$(date +%s.%N); "$@"; echo "$name: $(echo "$(date +%s.%N) - $t0" | bc) s"; }
rm -rf "$out/suite"
timed "world bench" retouch world bench --out "$out/suite" --n 700 --seed "$seed"
timed "bench oracle" retouch bench "$out/suite" --method oracle --json "$out/oracle.json" --clip models/world-clip
timed "bench identity" retouch bench "$out/suite" --method identity --json "$out/identity.json" --clip models/world-clip

retouch world reader-eval --n 2000 --seed 424242 | tee "$out/reader.json"
