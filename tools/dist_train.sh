#!/usr/bin/env bash
# Usage: tools/dist_train.sh CONFIG NUM_PROCS [train.py args...]
# Environment: AUTO_RESUME (1; 0: no automatic --resume), NNODES, NODE_RANK,
# PORT, MASTER_ADDR, PYTHON.
# Starts NUM_PROCS processes per node with torchrun (torch.distributed.run;
# the deprecated torch.distributed.launch is not used). On a machine without
# a GPU the processes use the gloo backend on CPU.
set -euo pipefail
CONFIG=$1
NPROC=$2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}
PYTHON=${PYTHON:-python}
# A job started again (requeued after preemption, or by hand) continues
# from the newest checkpoint of its work directory that loads: --resume is
# passed unless the arguments hold one or AUTO_RESUME=0; with no checkpoint
# there the run starts from the beginning.
RESUME=()
if [[ "${AUTO_RESUME:-1}" != 0 ]] && \
    ! printf '%s\n' "$@" | grep -qE '^--resume(=|$)'; then
  RESUME=(--resume)
fi

PYTHONPATH="$(dirname "$0")/..":${PYTHONPATH:-} \
"$PYTHON" -m torch.distributed.run \
    --nnodes="$NNODES" \
    --node_rank="$NODE_RANK" \
    --master_addr="$MASTER_ADDR" \
    --master_port="$PORT" \
    --nproc_per_node="$NPROC" \
    "$(dirname "$0")/train.py" "$CONFIG" --launcher pytorch "${@:3}" \
    ${RESUME[@]+"${RESUME[@]}"}
