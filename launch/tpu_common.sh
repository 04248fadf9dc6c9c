# The gcloud command of tpu_vm.sh and tpu_pod.sh (sourced by them, after
# split_platform_args; TPU_WORKER set).
if ! is_dry_run; then
  [[ -n "${TPU_NAME:-}" ]] || die "TPU_NAME is required (the TPU VM's name)"
  [[ -n "${TPU_ZONE:-}" ]] || die "TPU_ZONE is required (e.g. europe-west4-a)"
fi
REMOTE_REPO_DIR="${REMOTE_REPO_DIR:-~/prompt-tuning}"
REMOTE_PYTHON="${REMOTE_PYTHON:-python3}"
gcloud_args=(gcloud compute tpus tpu-vm ssh "${TPU_NAME:-<TPU_NAME>}"
             --zone="${TPU_ZONE:-<TPU_ZONE>}" --worker="${TPU_WORKER}")
[[ -n "${TPU_PROJECT:-}" ]] && gcloud_args+=(--project="${TPU_PROJECT}")
# The directory is left unquoted so that ~ expands on the worker.
remote="cd ${REMOTE_REPO_DIR} && $(remote_env)$(quote_args "${REMOTE_PYTHON}" -m "${ENTRY}" "${TRAIN_ARGS[@]}")"
run_or_show "${gcloud_args[@]}" --command="${remote}"
