#!/usr/bin/env bash
# The nearest-neighbour study (paper section 7): for each learned prompt
# token, its 5 nearest vocabulary embeddings by cosine similarity, for
# prompts of each initialisation (do class-label inits persist? which words
# gather round BoolQ's prompt?).
#
#   OUTPUT_DIR=gs://my-bucket/runs PLATFORM=tpu_pod ... launch/neighbours.sh
#   OUTPUT_DIR=... launch/neighbours.sh --stage=neighbours
#   launch/neighbours.sh --dry_run [--stage=neighbours]
#
# STAGE=train (default) trains a prompt per task in TASKS (default the eight
# SuperGLUE tasks), initialisation in INITS (default class_labels
# sampled_vocab random_uniform), seed in SEEDS (default 0) and size in SIZES
# (default xxl), 100 tokens on the LM-adapted model: the runs of Figure 3's
# initialisation ablation, in the same directories
#   OUTPUT_DIR/superglue/<size>/prompt_lm100k_<init>_len100/<task>/seed<k>
# STAGE=neighbours, once they have finished, runs python -m
# prompt_tuning.interpret on each run's best_prompt.npy against the frozen
# model's embedding (read alone from the checkpoint), here (a CPU is
# enough), writing <run>/neighbours.json and printing the tables, with the
# task's class labels marked. VOCABULARY is T5's SentencePiece model (default
# PROMPT_TUNING_T5_VOCAB, else gs://t5-data/vocabs/cc_all.32000/sentencepiece.model).
# A dry run of that stage prints the commands only.
# Settings of this script: STAGE, TASKS, INITS, VOCABULARY.
PAPER_SCRIPT=1
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

parse_settings "${COMMON_SETTINGS} STAGE TASKS INITS VOCABULARY" "$@"
SIZES="${SIZES:-xxl}"
SEEDS="${SEEDS:-0}"
TASKS="${TASKS:-${SUPERGLUE_TASKS}}"
INITS="${INITS:-class_labels sampled_vocab random_uniform}"
STAGE="${STAGE:-train}"
VOCABULARY="${VOCABULARY:-${PROMPT_TUNING_T5_VOCAB:-gs://t5-data/vocabs/cc_all.32000/sentencepiece.model}}"
begin_runs

for size in ${SIZES}; do
  for seed in ${SEEDS}; do
    for init in ${INITS}; do
      for task in ${TASKS}; do
        case "${STAGE}" in
          train)
            superglue_prompt_run "${size}" "${task}" "${seed}" lm100k "${init}" 100 ;;
          neighbours)
            dir="$(superglue_prompt_dir "${size}" "${task}" "${seed}" lm100k "${init}" 100)"
            read -r -a labels <<< "$(class_labels "${task}")"
            command=("${PYTHON}" -m prompt_tuning.interpret
                     --prompt="${dir}/best_prompt.npy"
                     --embedding="${CHECKPOINT_DIR}/$(checkpoint_name lm100k "${size}")"
                     --vocabulary="${VOCABULARY}" --k=5
                     --class_labels="$(IFS=,; echo "${labels[*]}")"
                     --output="${dir}/neighbours.json")
            if is_dry_run; then
              echo "[dry run] $(quote_args "${command[@]}")"
            else
              echo "== ${dir}"
              "${command[@]}"
            fi ;;
          *) die "STAGE=${STAGE}: expected train or neighbours" ;;
        esac
      done
    done
  done
done
end_runs
