#!/usr/bin/env bash
# Table 3: prompt ensembling. Five prompts per SuperGLUE task on one frozen
# T5-XXL (LM-adapted, the default setting), then each task's five prompts
# evaluated together in one batched pass with majority voting: each prompt,
# their average, the best one, and the ensemble.
#
#   OUTPUT_DIR=gs://my-bucket/runs PLATFORM=tpu_pod ... launch/table3.sh
#   OUTPUT_DIR=... PLATFORM=tpu_pod ... launch/table3.sh --stage=ensemble
#   launch/table3.sh --dry_run [--stage=ensemble]
#
# STAGE=train (default) trains the prompts, seeds SEEDS (default 0 1 2 3 4;
# the paper trained 2 more per task beside the 3 of Figure 1, whose run
# directories these share):
#   OUTPUT_DIR/superglue/<size>/prompt_lm100k_class_labels_len100/<task>/seed<k>
# STAGE=ensemble, once they have finished, runs python -m
# prompt_tuning.ensemble (runs/prompt_ensemble.gin) on each task's
# best_prompt.npy files, on PLATFORM, writing
#   OUTPUT_DIR/superglue/<size>/ensemble_lm100k_class_labels_len100/<task>/
# (ensemble.md, ensemble.json, predictions). A dry run of that stage prints
# the commands only (the dry run checks training configs).
# Settings of this script: STAGE, TASKS. SIZES defaults to xxl.
PAPER_SCRIPT=1
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

parse_settings "${COMMON_SETTINGS} STAGE TASKS" "$@"
SIZES="${SIZES:-xxl}"
SEEDS="${SEEDS:-0 1 2 3 4}"
TASKS="${TASKS:-${SUPERGLUE_TASKS}}"
STAGE="${STAGE:-train}"
begin_runs

for size in ${SIZES}; do
  for task in ${TASKS}; do
    case "${STAGE}" in
      train)
        for seed in ${SEEDS}; do
          superglue_prompt_run "${size}" "${task}" "${seed}" lm100k class_labels 100
        done ;;
      ensemble)
        files=()
        for seed in ${SEEDS}; do
          files+=("$(superglue_prompt_dir "${size}" "${task}" "${seed}" lm100k class_labels 100)/best_prompt.npy")
        done
        read -r -a labels <<< "$(class_labels "${task}")"
        args=("--gin_file=models/t5_1_1_${size}_prompt.gin"
              "--gin_file=runs/prompt_ensemble.gin")
        while read -r line; do args+=("${line}"); done < <(checkpoint_args lm100k "${size}")
        args+=("--gin.MIXTURE_OR_TASK_NAME='taskless_super_glue_${task}_v102'"
               "--gin.PROMPT_FILES=$(gin_list "${files[@]}")"
               "--gin.ENSEMBLE_OUTPUT_DIR='${OUTPUT_DIR}/superglue/${size}/ensemble_lm100k_class_labels_len100/${task}'"
               "--gin.TASK_FEATURE_LENGTHS={'inputs': 512, 'targets': $(target_length "${task}")}"
               "--gin.CLASS_LABELS=$(gin_list "${labels[@]}")")
        ENTRY=prompt_tuning.ensemble
        launch_train "superglue/${size}/ensemble/${task}" "${size}" prompt "${args[@]}" ;;
      *) die "STAGE=${STAGE}: expected train or ensemble" ;;
    esac
  done
done
end_runs
