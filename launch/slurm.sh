#!/usr/bin/env bash
# Trains on a multi-node GPU cluster under SLURM: one process per GPU, which
# `jax.distributed` connects by itself from SLURM's environment
# (--multiprocess_gpu; the coordinator is the job's first node). Every task
# sees all GPUs of its node and JAX takes GPU number SLURM_LOCALID, so the
# job step must not bind GPUs to tasks (no --gpus-per-task).
#
#   NODES=2 GPUS_PER_NODE=8 launch/slurm.sh --gin_file=... --gin.X=...
#
# Outside an allocation it submits a batch job (sbatch) and returns; inside
# one (salloc, or an sbatch script of yours) it runs the job step with srun.
# The repository must be installed (pip install -e .) where the nodes run it,
# and MODEL_DIR, TFDS data and checkpoints must be on storage every node sees.
#
# Arguments: as launch/local.sh (--dry_run; --num_devices=N sizes the job:
#   ceil(N / GPUS_PER_NODE) nodes, one task per GPU).
# Environment:
#   NODES (default 1), GPUS_PER_NODE (default 8): the job's size, unless
#     --num_devices is given
#   SBATCH_ARGS   more sbatch options, shell words (e.g. "--partition=a100
#                 --time=24:00:00 --account=me")
#   SLURM_LOG_DIR where sbatch writes the job's output (default ./slurm_logs)
#   JOB_NAME      (default prompt_tuning, or the --name given)
#   PYTHON        the Python on the nodes (default python3)
#   ENTRY         the module to run (default prompt_tuning.train)
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

split_platform_args "$@"
GPUS_PER_NODE="${GPUS_PER_NODE:-8}"
devices="$(dry_arg num_devices)"
if [[ -n "${devices}" ]]; then
  NODES=$(( (devices + GPUS_PER_NODE - 1) / GPUS_PER_NODE ))
  (( devices < GPUS_PER_NODE )) && GPUS_PER_NODE="${devices}"
else
  NODES="${NODES:-1}"
  DRY_ARGS+=("--num_devices=$((NODES * GPUS_PER_NODE))")
fi
name="$(dry_arg name)"
JOB_NAME="${JOB_NAME:-${name:-prompt_tuning}}"
JOB_NAME="${JOB_NAME//\//_}"

step=(srun --nodes="${NODES}" --ntasks-per-node="${GPUS_PER_NODE}"
      --kill-on-bad-exit=1
      "${PYTHON}" -m "${ENTRY}" --multiprocess_gpu "${TRAIN_ARGS[@]}")
if [[ -n "${SLURM_JOB_ID:-}" ]]; then
  run_or_show "${step[@]}"
else
  sbatch_args=()
  [[ -n "${SBATCH_ARGS:-}" ]] && eval "sbatch_args=(${SBATCH_ARGS})"
  log_dir="${SLURM_LOG_DIR:-./slurm_logs}"
  is_dry_run || mkdir -p "${log_dir}"
  run_or_show sbatch --job-name="${JOB_NAME}" --nodes="${NODES}" \
    --ntasks-per-node="${GPUS_PER_NODE}" --gpus-per-node="${GPUS_PER_NODE}" \
    --output="${log_dir}/%x-%j.out" "${sbatch_args[@]+"${sbatch_args[@]}"}" \
    --wrap="$(remote_env)$(quote_args "${step[@]}")"
fi
