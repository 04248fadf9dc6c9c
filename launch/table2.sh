#!/usr/bin/env bash
# Table 2: zero-shot domain transfer between paraphrase tasks, QQP -> MRPC and
# MRPC -> QQP (GLUE, TFDS 1.0.0), prompt tuning and model tuning, accuracy and
# F1, mean and standard deviation over 3 runs.
#
#   OUTPUT_DIR=gs://my-bucket/runs PLATFORM=tpu_pod ... launch/table2.sh
#   launch/table2.sh --dry_run
#
# Each run trains on the source task and evaluates the source and the target
# every EVAL_PERIOD steps (the taskless_glue_<source>_to_<target>_v002
# mixture: QQP recast in MRPC's format, so one prompt reads both). The paper
# selects the step on the source's validation set and reports the target at
# that step: SELECTION_TASKS names the source's task, so best_prompt.json
# holds that step.
# Runs: OUTPUT_DIR/paraphrase/<size>/{prompt_lm100k_class_labels_len100,model_tuning}/<direction>/seed<k>.
# SIZES defaults to xxl (as table1.sh).
# Settings of this script: METHODS (default "prompt model"), DIRECTIONS
#   (default "qqp_to_mrpc mrpc_to_qqp").
PAPER_SCRIPT=1
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

parse_settings "${COMMON_SETTINGS} METHODS DIRECTIONS" "$@"
SIZES="${SIZES:-xxl}"
METHODS="${METHODS:-prompt model}"
DIRECTIONS="${DIRECTIONS:-qqp_to_mrpc mrpc_to_qqp}"
begin_runs

for size in ${SIZES}; do
  for seed in ${SEEDS}; do
    for direction in ${DIRECTIONS}; do
      case "${direction}" in
        qqp_to_mrpc|mrpc_to_qqp) ;;
        *) die "DIRECTIONS: unknown direction '${direction}'; expected qqp_to_mrpc, mrpc_to_qqp" ;;
      esac
      task="taskless_glue_${direction}_v002"
      # The best step is chosen on the in-domain (source) validation set.
      case "${direction}" in
        qqp_to_mrpc) in_domain=taskless_glue_qqp_as_mrpc_v002 ;;
        mrpc_to_qqp) in_domain=taskless_glue_mrpc_v002 ;;
      esac
      base_extra=("${EXTRA[@]+"${EXTRA[@]}"}")
      EXTRA+=("--gin.SELECTION_TASKS=['${in_domain}']")
      for method in ${METHODS}; do
        case "${method}" in
          prompt)
            prompt_run "paraphrase/${size}/prompt_lm100k_class_labels_len100/${direction}/seed${seed}" \
              "${size}" "${task}" mrpc 8 "${seed}" lm100k class_labels 100 ;;
          model)
            model_run "paraphrase/${size}/model_tuning/${direction}/seed${seed}" "${size}" \
              "${task}" 8 "${seed}" ;;
          *) die "METHODS: unknown method '${method}'; expected prompt, model" ;;
        esac
      done
      EXTRA=("${base_extra[@]+"${base_extra[@]}"}")
    done
  done
done
end_runs
