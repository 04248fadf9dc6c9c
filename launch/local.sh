#!/usr/bin/env bash
# Trains on this machine: its CPU, or all its GPUs (or TPU cores, on a TPU VM)
# in one process.
#
#   launch/local.sh --gin_file=models/t5_1_1_base_prompt.gin \
#     --gin_file=prompts/from_class_labels.gin \
#     --gin_file=runs/prompt_finetune.gin \
#     --gin_file=models/pretrained/t5_1_1_lm100k_base.gin \
#     --gin.MODEL_DIR="'/tmp/rte'" \
#     --gin.MIXTURE_OR_TASK_NAME="'taskless_super_glue_rte_v102'" \
#     --gin.CLASS_LABELS="['entailment', 'not_entailment']"
#
# Every argument goes to `python -m prompt_tuning.train`, except:
#   --dry_run (or DRY_RUN=1)  print the command and check the config with
#                             prompt_tuning.dry_run instead of training
#   --num_devices=N, --num_partitions=M, --mesh=data:D,model:M,
#   --device_memory_gib=G, --name=LABEL
#                             the dry run's target mesh and labels (ignored
#                             otherwise; the real mesh is this machine's
#                             devices and the config's NUM_PARTITIONS)
# Environment: PYTHON (default python3); ENTRY, the module to run (default
#   prompt_tuning.train; e.g. prompt_tuning.ensemble, which takes the same flags).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

split_platform_args "$@"
run_or_show "${PYTHON}" -m "${ENTRY}" "${TRAIN_ARGS[@]}"
