#!/usr/bin/env bash
# Policy engine vs Microsoft Presidio's anonymizer, same file, same operations, one
# run: the peer first (it also generates the 100k-person input), then ours, then the
# ratio. Needs ../shared/bench (peer benchmarks only) and network access to PyPI on
# first run (the peer's virtualenv).
set -euo pipefail
cd "$(dirname "$0")/.."
bench=../shared/bench
export PEER_BENCH_DIR=$PWD/target/peer-bench
mkdir -p "$PEER_BENCH_DIR"
peer=$("$bench/presidio.sh" --runs "${RUNS:-3}" | tail -n 1)
ours=$(cargo run -q --release -p policies --example presidio_ops -- "$PEER_BENCH_DIR/persons-100k.jsonl")
echo "presidio: $peer"
echo "gateway:  $ours"
python3 - "$peer" "$ours" <<'PY'
import json, sys
import statistics
p, o = json.loads(sys.argv[1]), json.loads(sys.argv[2])
pe = p['e2e_jsonl_rps']
pe = statistics.median(pe) if isinstance(pe, list) else pe
print(f"ratio mask (1 core): {o['mask_rps'] / p['mask_rps_median']:.0f}x; "
      f"JSONL to JSONL: {o['e2e_jsonl_rps'] / pe:.0f}x")
PY
