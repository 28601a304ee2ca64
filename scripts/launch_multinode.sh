#!/bin/bash
# Multi-node training without a scheduler: run this on every node with the same RUN_ID.
#   node 0:  RUN_ID=exp42 NNODES=2 NODE_RANK=0 MASTER_ADDR=10.0.0.1 scripts/launch_multinode.sh +exp=NAME launcher=zero3
#   node 1:  RUN_ID=exp42 NNODES=2 NODE_RANK=1 MASTER_ADDR=10.0.0.1 scripts/launch_multinode.sh +exp=NAME launcher=zero3
# Node 0 resolves the config and run directory once (runs/<exp>/$RUN_ID/config.yaml, on a
# shared filesystem); the other nodes wait for it, then `accelerate launch` (or torchrun, with
# launcher=torchrun) starts launcher.nproc_per_node ranks per node on the frozen file.
set -euo pipefail
: "${RUN_ID:?set RUN_ID to the same value on every node}"
: "${NNODES:?set NNODES}" "${NODE_RANK:?set NODE_RANK}" "${MASTER_ADDR:?set MASTER_ADDR (node 0)}"
export RUN_ID NNODES NODE_RANK MASTER_ADDR MASTER_PORT="${MASTER_PORT:-29500}"
cd "$(dirname "$0")/.."
exec "${PYTHON:-.venv/bin/python}" -m train "$@"
