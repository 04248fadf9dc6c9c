#!/usr/bin/env bash
# Trains on a Cloud TPU pod slice (e.g. v3-32, v4-64): the same command on
# every worker (gcloud ... --worker=all); the hosts find each other through
# the TPU runtime and JAX, each loads its own shard of every batch. Each
# worker needs the repository installed at REMOTE_REPO_DIR with the `tpu`
# extra; MODEL_DIR, TFDS data and checkpoints must be on gs:// (every host
# reads them, process 0 writes).
#
#   TPU_NAME=my-v3-32 TPU_ZONE=europe-west4-a launch/tpu_pod.sh --gin_file=... --gin.X=...
#
# Arguments: as launch/local.sh (--dry_run, and the dry run's --num_devices,
#   which should be the slice's devices: cores on v2/v3, chips on v4 and
#   later).
# Environment: as launch/tpu_vm.sh.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

split_platform_args "$@"
TPU_WORKER=all
source "${LAUNCH_DIR}/tpu_common.sh"
