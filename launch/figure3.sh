#!/usr/bin/env bash
# Figure 3: the four ablations of prompt tuning on SuperGLUE, each varying one
# setting of the default (LM-adapted model, class-label init, 100 tokens) at
# every size, mean and standard deviation over 3 runs:
#   (a) length:      prompt length 1, 5, 20, 100, 150 (PROMPT_LENGTHS); with
#                    fewer positions than class labels, the first labels
#   (b) init:        random uniform in [-0.5, 0.5], sampled vocabulary (the
#                    5,000 most common tokens), class labels (INITS)
#   (c) objective:   frozen model pretrained by span corruption, span
#                    corruption with a sentinel before every target (the
#                    tasks' _sentinel variants), LM adaptation (OBJECTIVES)
#   (d) adaptation:  LM adaptation for 0K and 100K steps are the span
#                    corruption and LM-adapted runs of (c); the 10K and 50K
#                    checkpoints were not released
#
#   OUTPUT_DIR=gs://my-bucket/runs PLATFORM=tpu_pod ... launch/figure3.sh
#   launch/figure3.sh --dry_run
#
# Runs go to OUTPUT_DIR/superglue/<size>/prompt_<objective>_<init>_len<length>/<task>/seed<k>,
# the directories Figure 1 uses: the default setting is one set of runs,
# shared by every ablation and by Figure 1 (launched once here).
# Settings of this script: ABLATIONS (default "length init objective"), TASKS,
#   PROMPT_LENGTHS, INITS, OBJECTIVES.
PAPER_SCRIPT=1
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

parse_settings "${COMMON_SETTINGS} ABLATIONS TASKS PROMPT_LENGTHS INITS OBJECTIVES" "$@"
SIZES="${SIZES:-${ALL_SIZES}}"
TASKS="${TASKS:-${SUPERGLUE_TASKS}}"
ABLATIONS="${ABLATIONS:-length init objective}"
PROMPT_LENGTHS="${PROMPT_LENGTHS:-1 5 20 100 150}"
INITS="${INITS:-random_uniform sampled_vocab class_labels}"
OBJECTIVES="${OBJECTIVES:-span_corruption span_corruption_sentinel lm100k}"
begin_runs

# The settings (objective init length) of the chosen ablations, each once.
settings=()
for ablation in ${ABLATIONS}; do
  case "${ablation}" in
    length) for length in ${PROMPT_LENGTHS}; do settings+=("lm100k class_labels ${length}"); done ;;
    init) for init in ${INITS}; do settings+=("lm100k ${init} 100"); done ;;
    objective) for objective in ${OBJECTIVES}; do settings+=("${objective} class_labels 100"); done ;;
    *) die "ABLATIONS: unknown ablation '${ablation}'; expected length, init, objective" ;;
  esac
done
declare -A seen=()
unique=()
for setting in "${settings[@]}"; do
  [[ -n "${seen[${setting}]:-}" ]] && continue
  seen[${setting}]=1
  unique+=("${setting}")
done

for size in ${SIZES}; do
  for seed in ${SEEDS}; do
    for setting in "${unique[@]}"; do
      read -r objective init length <<< "${setting}"
      for task in ${TASKS}; do
        superglue_prompt_run "${size}" "${task}" "${seed}" "${objective}" "${init}" "${length}"
      done
    done
  done
done
end_runs
