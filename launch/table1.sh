#!/usr/bin/env bash
# Table 1: zero-shot domain transfer in question answering. Prompt tuning and
# model tuning trained on SQuAD v1.1, evaluated on SQuAD and the six MRQA 2019
# out-of-domain dev sets (TextbookQA, BioASQ, RACE, RE, DuoRC, DROP), F1,
# mean and standard deviation over 3 runs.
#
#   OUTPUT_DIR=gs://my-bucket/runs PLATFORM=tpu_pod ... launch/table1.sh
#   launch/table1.sh --dry_run
#
# Each run trains on the squad_v110_to_mrqa_v100 mixture (SQuAD's train
# split) and evaluates all seven sets every EVAL_PERIOD steps (eval/
# metrics.jsonl). The paper selects the step by SQuAD validation F1 and
# reports the other sets at that step: SELECTION_TASKS names squad_v110, so
# best_prompt.json holds that step.
# Runs: OUTPUT_DIR/mrqa/<size>/{prompt_lm100k_sampled_vocab_len100,model_tuning}/squad_v110_to_mrqa_v100/seed<k>.
# Extractive QA has no class labels, so the prompt starts from sampled
# vocabulary. SIZES defaults to xxl (the paper's text does not name the size;
# its in-domain F1 of 94.8-94.9 is XXL's).
# Settings of this script: METHODS (default "prompt model").
PAPER_SCRIPT=1
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

parse_settings "${COMMON_SETTINGS} METHODS" "$@"
SIZES="${SIZES:-xxl}"
METHODS="${METHODS:-prompt model}"
begin_runs
# The best step is chosen on the in-domain set only, as the paper does.
EXTRA+=("--gin.SELECTION_TASKS=['squad_v110']")

task=squad_v110_to_mrqa_v100
for size in ${SIZES}; do
  for seed in ${SEEDS}; do
    for method in ${METHODS}; do
      case "${method}" in
        prompt)
          prompt_run "mrqa/${size}/prompt_lm100k_sampled_vocab_len100/${task}/seed${seed}" \
            "${size}" "${task}" none "$(target_length squad)" "${seed}" lm100k sampled_vocab 100 ;;
        model)
          model_run "mrqa/${size}/model_tuning/${task}/seed${seed}" "${size}" "${task}" \
            "$(target_length squad)" "${seed}" ;;
        *) die "METHODS: unknown method '${method}'; expected prompt, model" ;;
      esac
    done
  done
done
end_runs
