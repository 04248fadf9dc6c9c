#!/usr/bin/env bash
# Trains on a single-host Cloud TPU VM (e.g. v3-8, v4-8), started from your
# workstation through gcloud (on the VM itself, launch/local.sh does the
# same). The VM needs the repository installed at REMOTE_REPO_DIR with the
# `tpu` extra (pip install -e ".[tpu]"); MODEL_DIR and TFDS data are best on
# gs://.
#
#   TPU_NAME=my-v3-8 TPU_ZONE=europe-west4-a launch/tpu_vm.sh --gin_file=... --gin.X=...
#
# Arguments: as launch/local.sh (--dry_run, and the dry run's --num_devices,
#   which should be the VM's TPU cores).
# Environment:
#   TPU_NAME, TPU_ZONE (required), TPU_PROJECT (default: gcloud's)
#   REMOTE_REPO_DIR  the checkout on the VM (default ~/prompt-tuning)
#   REMOTE_PYTHON    the Python there (default python3)
#   FORWARD_ENV      names of variables to pass on (PROMPT_TUNING_T5_VOCAB is)
#   ENTRY            the module to run (default prompt_tuning.train)
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

split_platform_args "$@"
TPU_WORKER="${TPU_WORKER:-0}"
source "${LAUNCH_DIR}/tpu_common.sh"
