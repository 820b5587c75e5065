#!/usr/bin/env bash
# Usage: tools/slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR [args...]
# Environment: GPUS (total, default 8), GPUS_PER_NODE (8), CPUS_PER_TASK (5),
# SRUN_ARGS (extra srun arguments), PYTHON (python), AUTO_RESUME (1; 0: no
# automatic --resume).
set -euxo pipefail
PARTITION=$1
JOB_NAME=$2
CONFIG=$3
WORK_DIR=$4
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
SRUN_ARGS=${SRUN_ARGS:-""}
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
srun -p "$PARTITION" \
    --job-name="$JOB_NAME" \
    --gres=gpu:"$GPUS_PER_NODE" \
    --ntasks="$GPUS" \
    --ntasks-per-node="$GPUS_PER_NODE" \
    --cpus-per-task="$CPUS_PER_TASK" \
    --kill-on-bad-exit=1 \
    ${SRUN_ARGS} \
    "$PYTHON" -u "$(dirname "$0")/train.py" "$CONFIG" \
    --work-dir="$WORK_DIR" --launcher=slurm "${@:5}" \
    ${RESUME[@]+"${RESUME[@]}"}
