#!/usr/bin/env bash
# Figure 1: SuperGLUE score against model size for prompt tuning, model
# tuning and multi-task model tuning, T5 1.1 LM-adapted, mean and standard
# deviation over 3 runs.
#
#   OUTPUT_DIR=gs://my-bucket/runs PLATFORM=tpu_pod TPU_NAME=... TPU_ZONE=... \
#     launch/figure1.sh
#   launch/figure1.sh --dry_run          # check every config, no hardware
#
# For each size in SIZES (default: all five) and seed in SEEDS (0 1 2):
#   prompt tuning, each task in TASKS (default: the eight SuperGLUE tasks),
#     the paper's default setting (LM-adapted model, class-label init, 100
#     tokens): OUTPUT_DIR/superglue/<size>/prompt_lm100k_class_labels_len100/<task>/seed<k>
#   model tuning, each task (runs/model_tuning.gin):
#     OUTPUT_DIR/superglue/<size>/model_tuning/<task>/seed<k>
#   multi-task model tuning, one model on the super_glue_v102 mixture with
#     task prefixes (runs/model_tuning_multitask.gin):
#     OUTPUT_DIR/superglue/<size>/model_tuning_multitask/seed<k>
# Each run records its validation metrics (eval/metrics.jsonl) and its best
# step (best_prompt.json); the figure's point per method and size is the
# SuperGLUE average of the tasks' best scores, mean and deviation over seeds.
# Settings of this script: TASKS, METHODS (default "prompt model multitask").
PAPER_SCRIPT=1
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

parse_settings "${COMMON_SETTINGS} TASKS METHODS" "$@"
SIZES="${SIZES:-${ALL_SIZES}}"
TASKS="${TASKS:-${SUPERGLUE_TASKS}}"
METHODS="${METHODS:-prompt model multitask}"
begin_runs

for size in ${SIZES}; do
  for seed in ${SEEDS}; do
    for method in ${METHODS}; do
      case "${method}" in
        prompt)
          for task in ${TASKS}; do
            superglue_prompt_run "${size}" "${task}" "${seed}" lm100k class_labels 100
          done ;;
        model)
          for task in ${TASKS}; do
            model_run "superglue/${size}/model_tuning/${task}/seed${seed}" "${size}" \
              "taskless_super_glue_${task}_v102" "$(target_length "${task}")" "${seed}"
          done ;;
        multitask)
          model_run "superglue/${size}/model_tuning_multitask/seed${seed}" "${size}" \
            super_glue_v102 32 "${seed}" multitask ;;
        *) die "METHODS: unknown method '${method}'; expected prompt, model, multitask" ;;
      esac
    done
  done
done
end_runs
