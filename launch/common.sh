# Shared by the launch scripts; sourced, not run.
#
# Two kinds of scripts use it:
#   * platform launchers (local.sh, slurm.sh, tpu_vm.sh, tpu_pod.sh) run one
#     `python -m prompt_tuning.train` with the arguments they are given;
#   * paper scripts (figure1.sh, figure3.sh, table1.sh, table2.sh, table3.sh,
#     neighbours.sh) build the training configs of one result and hand each to
#     the platform launcher named by PLATFORM.
#
# Dry run (DRY_RUN=1 or --dry_run): nothing is trained. A platform launcher
# prints the command it would run and checks the config with
# `python -m prompt_tuning.dry_run` (gin parsed as train parses it, abstract
# parameters on the target mesh, memory per device). A paper script collects
# all its configs in one sweep file and checks them in one Python process at
# the end; if DRY_RUN_SWEEP names a file already, configs are appended to it
# and checking is left to whoever set it.

set -euo pipefail

LAUNCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PYTHON="${PYTHON:-python3}"
PLATFORMS="local slurm tpu_vm tpu_pod"
SUPERGLUE_TASKS="boolq cb copa multirc record rte wic wsc"
ALL_SIZES="small base large xl xxl"
DEFAULT_CHECKPOINT_DIR="gs://t5-data/pretrained_models/t5x"

die() {
  echo "$(basename "$0"): $*" >&2
  exit 1
}

usage() {
  # The comment block at the top of the running script.
  sed -n '2,/^[^#]/{/^#/!d;s/^# \{0,1\}//;p}' "$0"
  [[ -n "${PAPER_SCRIPT:-}" ]] && settings_help
  return 0
}

settings_help() {
  cat <<'HELP'

Settings of every paper script (flags --name=value, or environment variables
of the same name in upper case):
  OUTPUT_DIR        root of the run directories (required; gs:// on TPU pods)
  CHECKPOINT_DIR    root of the t5x checkpoints, holding
                    t5_1_1_lm100k_<size>/checkpoint_1100000 and
                    t5_1_1_<size>/checkpoint_1000000
                    (default gs://t5-data/pretrained_models/t5x)
  DATA_DIR          TFDS data directory (--tfds_data_dir; default TFDS's)
  PLATFORM          local | slurm | tpu_vm | tpu_pod (default local); each
                    has settings of its own: launch/<platform>.sh --help
  SIZES, SEEDS      which model sizes and seeds (defaults: see above)
  NUM_DEVICES, NUM_PARTITIONS, DEVICE_MEMORY_GIB
                    target devices, model-parallel size (gin NUM_PARTITIONS)
                    and memory per device, for every size (default per size:
                    the paper's hardware, see launch/common.sh)
  ACTIVATION_DTYPE  bfloat16 (default) or float32
  EXTRA_ARGS        more prompt_tuning.train arguments for every run, as
                    shell words, e.g. "--gin.TRAIN_STEPS=1000"
  DRY_RUN=1, --dry_run
                    train nothing: print each command and check every config
                    with python -m prompt_tuning.dry_run (gin parsed as train
                    does, abstract parameters on the target mesh, parameter
                    counts and estimated memory per device)
  PYTHON            the Python to run (default python3)
A run directory that exists already is resumed (or, if finished, reported).
HELP
}

is_dry_run() {
  case "${DRY_RUN:-0}" in
    1|true|yes) return 0 ;;
    0|false|no|'') return 1 ;;
    *) die "DRY_RUN=${DRY_RUN}: expected 1 or 0" ;;
  esac
}

# ---------------------------------------------------------------------------
# Flags.
# ---------------------------------------------------------------------------

# parse_settings "NAME1 NAME2 ..." "$@": a paper script's flags. --name=value
# sets the variable NAME (upper case; the same as setting it in the
# environment), --dry_run sets DRY_RUN=1, --help prints the usage.
parse_settings() {
  local known=" $1 "
  shift
  local arg key value
  for arg in "$@"; do
    case "${arg}" in
      --dry_run) DRY_RUN=1 ;;
      -h|--help) usage; exit 0 ;;
      --*=*)
        key="${arg%%=*}"
        key="${key#--}"
        key="${key^^}"
        value="${arg#*=}"
        [[ "${known}" == *" ${key} "* ]] ||
          die "unknown flag ${arg%%=*}; known:$(printf ' --%s' ${known,,}) --dry_run"
        printf -v "${key}" '%s' "${value}"
        ;;
      *) die "unexpected argument '${arg}' (flags are --name=value; see --help)" ;;
    esac
  done
}

# split_platform_args "$@": a platform launcher's arguments. Sets TRAIN_ARGS
# (for prompt_tuning.train) and DRY_ARGS (for prompt_tuning.dry_run only:
# --name, --num_devices, --num_partitions, --mesh, --device_memory_gib);
# --dry_run sets DRY_RUN=1.
split_platform_args() {
  TRAIN_ARGS=()
  DRY_ARGS=()
  local arg
  for arg in "$@"; do
    case "${arg}" in
      --dry_run) DRY_RUN=1 ;;
      -h|--help) usage; exit 0 ;;
      --name=*|--num_devices=*|--num_partitions=*|--mesh=*|--device_memory_gib=*)
        DRY_ARGS+=("${arg}") ;;
      *) TRAIN_ARGS+=("${arg}") ;;
    esac
  done
  ((${#TRAIN_ARGS[@]})) || die "no training arguments (--gin_file=..., --gin.NAME=VALUE); see --help"
}

# dry_arg NAME: the value of --NAME=... in DRY_ARGS, or nothing.
dry_arg() {
  local arg
  for arg in "${DRY_ARGS[@]+"${DRY_ARGS[@]}"}"; do
    [[ "${arg}" == "--$1="* ]] && echo "${arg#*=}"
  done
  return 0
}

# quote_args ARGS...: one shell-quoted string (for ssh, sbatch --wrap, logs).
quote_args() {
  local quoted
  printf -v quoted '%q ' "$@"
  echo "${quoted% }"
}

# The module a platform launcher runs: prompt_tuning.train unless ENTRY names
# another entry point taking the same flags (e.g. prompt_tuning.ensemble).
ENTRY="${ENTRY:-prompt_tuning.train}"

# run_or_show COMMAND...: runs it, or in a dry run prints it and checks the
# training config (DRY_ARGS + TRAIN_ARGS) with prompt_tuning.dry_run (only
# training configs are checked).
run_or_show() {
  if is_dry_run; then
    echo "[dry run] $(quote_args "$@")"
    if [[ "${ENTRY}" == prompt_tuning.train ]]; then
      check_config "${DRY_ARGS[@]+"${DRY_ARGS[@]}"}" "${TRAIN_ARGS[@]}"
    fi
  else
    "$@"
  fi
}

# check_config ARGS...: appends the config to $DRY_RUN_SWEEP if set, else
# checks it now.
check_config() {
  if [[ -n "${DRY_RUN_SWEEP:-}" ]]; then
    quote_args "$@" >> "${DRY_RUN_SWEEP}"
  else
    "${PYTHON}" -m prompt_tuning.dry_run "$@"
  fi
}

# remote_env: NAME=value words for the environment a remote run needs:
# PROMPT_TUNING_T5_VOCAB (a copy of T5's vocabulary) and the variables named
# in FORWARD_ENV, where set here.
remote_env() {
  local name
  for name in PROMPT_TUNING_T5_VOCAB ${FORWARD_ENV:-}; do
    [[ -n "${!name:-}" ]] && printf '%s=%q ' "${name}" "${!name}"
  done
  return 0
}

# ---------------------------------------------------------------------------
# Paper scripts: settings, defaults, one run.
# ---------------------------------------------------------------------------

# Settings every paper script accepts (as --flags or environment variables).
COMMON_SETTINGS="OUTPUT_DIR CHECKPOINT_DIR DATA_DIR PLATFORM SIZES SEEDS NUM_DEVICES NUM_PARTITIONS DEVICE_MEMORY_GIB ACTIVATION_DTYPE EXTRA_ARGS"

# begin_runs: checks the settings; in a dry run, opens the sweep file.
begin_runs() {
  PLATFORM="${PLATFORM:-local}"
  [[ " ${PLATFORMS} " == *" ${PLATFORM} "* ]] ||
    die "PLATFORM=${PLATFORM}: expected one of ${PLATFORMS}"
  [[ -x "${LAUNCH_DIR}/${PLATFORM}.sh" ]] || die "missing ${LAUNCH_DIR}/${PLATFORM}.sh"
  if is_dry_run; then
    OUTPUT_DIR="${OUTPUT_DIR:-/tmp/prompt_tuning_dry_run}"
    if [[ -z "${DRY_RUN_SWEEP:-}" ]]; then
      DRY_RUN_SWEEP="$(mktemp "${TMPDIR:-/tmp}/prompt_tuning_sweep.XXXXXX")"
      OWN_SWEEP=1
      trap 'rm -f "${DRY_RUN_SWEEP}"' EXIT
    fi
    export DRY_RUN_SWEEP
  fi
  [[ -n "${OUTPUT_DIR:-}" ]] || die "OUTPUT_DIR (or --output_dir) is required: where the runs write"
  CHECKPOINT_DIR="${CHECKPOINT_DIR:-${DEFAULT_CHECKPOINT_DIR}}"
  ACTIVATION_DTYPE="${ACTIVATION_DTYPE:-bfloat16}"
  SEEDS="${SEEDS:-0 1 2}"
  local size
  for size in ${SIZES}; do
    [[ " ${ALL_SIZES} " == *" ${size} "* ]] || die "SIZES: unknown size '${size}'; expected some of: ${ALL_SIZES}"
  done
  EXTRA=()
  # Shell words, so that a value may hold spaces: EXTRA_ARGS="--gin.TRAIN_STEPS=100".
  [[ -n "${EXTRA_ARGS:-}" ]] && eval "EXTRA=(${EXTRA_ARGS})"
  NUM_RUNS=0
  return 0
}

# end_runs: in a dry run that owns its sweep file, checks every config in it.
end_runs() {
  if is_dry_run && [[ -n "${OWN_SWEEP:-}" ]]; then
    echo "[dry run] ${NUM_RUNS} runs; checking their configs:"
    "${PYTHON}" -m prompt_tuning.dry_run --sweep="${DRY_RUN_SWEEP}"
  fi
}

# checkpoint NAME SIZE: the t5x checkpoint of a pretraining objective, as
# released (t5x docs/models.md): span corruption is t5_1_1_<size>, step
# 1,000,000; LM-adapted adds 100K steps, t5_1_1_lm100k_<size>, 1,100,000.
# The gin files models/pretrained/<name>.gin hold the same paths.
checkpoint_name() {
  case "$1" in
    lm100k) echo "t5_1_1_lm100k_$2/checkpoint_1100000" ;;
    span_corruption|span_corruption_sentinel) echo "t5_1_1_$2/checkpoint_1000000" ;;
    *) die "unknown pretraining objective '$1'" ;;
  esac
}

checkpoint_gin() {
  case "$1" in
    lm100k) echo "models/pretrained/t5_1_1_lm100k_$2.gin" ;;
    span_corruption|span_corruption_sentinel) echo "models/pretrained/t5_1_1_$2.gin" ;;
    *) die "unknown pretraining objective '$1'" ;;
  esac
}

# Default target hardware per size: the paper's (appendix A.1): Small and
# Base on 4 TPU v2 chips (8 cores of 8 GiB), larger models on 16 TPU v3 chips
# (32 cores of 16 GiB). For prompt tuning the model axis is the one with the
# lowest estimate of the dry run there: it fits up to XL; XXL comes to about
# 16 GiB per core (data 4 x model 8). The paper gives no hardware for model
# tuning; at its batch (runs/model_tuning*.gin) the larger sizes need more
# devices than these (the dry run says how many fit). NUM_DEVICES,
# NUM_PARTITIONS and DEVICE_MEMORY_GIB override them for every size.
default_num_devices() {
  case "$1" in small|base) echo 8 ;; *) echo 32 ;; esac
}

default_device_memory_gib() {
  case "$1" in small|base) echo 8 ;; *) echo 16 ;; esac
}

# default_num_partitions SIZE METHOD (prompt | model | multitask)
default_num_partitions() {
  case "$2:$1" in
    prompt:small|prompt:base|prompt:large) echo 1 ;;
    prompt:xl) echo 2 ;;
    prompt:xxl) echo 8 ;;
    *:small) echo 1 ;;
    *:base) echo 2 ;;
    *:large) echo 4 ;;
    *:xl) echo 8 ;;
    *:xxl) echo 16 ;;
  esac
}

# Class labels of a task, for class-label initialisation. SuperGLUE's label
# strings as the tasks write them; for ReCoRD and WSC, whose targets are free
# text, the words the paper used instead (footnote 7).
class_labels() {
  case "$1" in
    boolq|multirc|wic) echo "False True" ;;
    cb) echo "entailment contradiction neutral" ;;
    copa) echo "choice1 choice2" ;;
    rte) echo "entailment not_entailment" ;;
    record) echo "commonsense reasoning reading comprehension" ;;
    wsc) echo "commonsense pronoun resolution" ;;
    mrpc|qqp) echo "not_equivalent equivalent" ;;
    *) die "no class labels known for task '$1'" ;;
  esac
}

# Target lengths: class labels fit in 8 tokens; ReCoRD entities and WSC
# referents are short phrases; extractive QA answers are spans.
target_length() {
  case "$1" in
    record) echo 32 ;;
    wsc) echo 16 ;;
    squad|mrqa) echo 64 ;;
    *) echo 8 ;;
  esac
}

# gin_list WORD...: a gin (Python) list of strings.
gin_list() {
  local out="" word
  for word in "$@"; do out+="${out:+, }'${word}'"; done
  echo "[${out}]"
}

# launch_train NAME SIZE METHOD ARGS...: one training run on PLATFORM, its
# mesh from the defaults above; ARGS are prompt_tuning.train's.
launch_train() {
  local name="$1" size="$2" method="$3"
  shift 3
  local devices="${NUM_DEVICES:-$(default_num_devices "${size}")}"
  local partitions="${NUM_PARTITIONS:-$(default_num_partitions "${size}" "${method}")}"
  local memory="${DEVICE_MEMORY_GIB:-$(default_device_memory_gib "${size}")}"
  local args=("$@" "--gin.NUM_PARTITIONS=${partitions}"
              "--gin.ACTIVATION_DTYPE='${ACTIVATION_DTYPE}'")
  [[ -n "${DATA_DIR:-}" ]] && args+=("--tfds_data_dir=${DATA_DIR}")
  args+=("${EXTRA[@]+"${EXTRA[@]}"}")
  local dry=(--name="${name}" --num_devices="${devices}"
             --device_memory_gib="${memory}")
  NUM_RUNS=$((NUM_RUNS + 1))
  if is_dry_run; then
    DRY_RUN=1 ENTRY="${ENTRY}" "${LAUNCH_DIR}/${PLATFORM}.sh" "${dry[@]}" "${args[@]}"
  else
    echo "== ${name}"
    ENTRY="${ENTRY}" "${LAUNCH_DIR}/${PLATFORM}.sh" "${dry[@]}" "${args[@]}"
  fi
}

# checkpoint_args OBJECTIVE SIZE: the gin file of the frozen checkpoint, and
# its path under CHECKPOINT_DIR when that is not the public bucket.
checkpoint_args() {
  echo "--gin_file=$(checkpoint_gin "$1" "$2")"
  if [[ "${CHECKPOINT_DIR}" != "${DEFAULT_CHECKPOINT_DIR}" ]]; then
    echo "--gin.INITIAL_CHECKPOINT_PATH='${CHECKPOINT_DIR}/$(checkpoint_name "$1" "$2")'"
  fi
}

# prompt_run DIR SIZE TASK LABEL_KEY TARGETS SEED OBJECTIVE INIT LENGTH:
# prompt tuning with the paper's settings (runs/prompt_finetune.gin) on seqio
# task or mixture TASK, its run directory OUTPUT_DIR/DIR. LABEL_KEY names the
# class labels (class_labels) used by INIT=class_labels; with fewer prompt
# positions than labels, the first ones are used, as the paper's code does.
prompt_run() {
  local dir="$1" size="$2" task="$3" label_key="$4" targets="$5" seed="$6"
  local objective="$7" init="$8" length="$9"
  local args=("--gin_file=models/t5_1_1_${size}_prompt.gin")
  case "${init}" in
    class_labels)
      local labels
      read -r -a labels <<< "$(class_labels "${label_key}")"
      args+=("--gin_file=prompts/from_class_labels.gin"
             "--gin.CLASS_LABELS=$(gin_list "${labels[@]:0:${length}}")") ;;
    sampled_vocab) args+=("--gin_file=prompts/from_sampled_vocab.gin") ;;
    random_uniform) args+=("--gin_file=prompts/random_uniform.gin") ;;
    *) die "unknown prompt initialisation '${init}'" ;;
  esac
  args+=("--gin_file=runs/prompt_finetune.gin")
  local line
  while read -r line; do args+=("${line}"); done < <(checkpoint_args "${objective}" "${size}")
  [[ "${objective}" == span_corruption_sentinel ]] && task="${task}_sentinel"
  args+=("--gin.MODEL_DIR='${OUTPUT_DIR}/${dir}'"
         "--gin.MIXTURE_OR_TASK_NAME='${task}'"
         "--gin.TASK_FEATURE_LENGTHS={'inputs': 512, 'targets': ${targets}}"
         "--gin.PROMPT_LENGTH=${length}"
         "--gin.SEED=${seed}")
  launch_train "${dir}" "${size}" prompt "${args[@]}"
}

# model_run DIR SIZE TASK TARGETS SEED [multitask]: model tuning
# (runs/model_tuning.gin, or runs/model_tuning_multitask.gin whose mixture is
# fixed) from the LM-adapted checkpoint.
model_run() {
  local dir="$1" size="$2" task="$3" targets="$4" seed="$5" kind="${6:-model}"
  local args=("--gin_file=models/t5_1_1_${size}.gin")
  if [[ "${kind}" == multitask ]]; then
    args+=("--gin_file=runs/model_tuning_multitask.gin")
  else
    args+=("--gin_file=runs/model_tuning.gin"
           "--gin.MIXTURE_OR_TASK_NAME='${task}'"
           "--gin.TASK_FEATURE_LENGTHS={'inputs': 512, 'targets': ${targets}}")
  fi
  local line
  while read -r line; do args+=("${line}"); done < <(checkpoint_args lm100k "${size}")
  args+=("--gin.MODEL_DIR='${OUTPUT_DIR}/${dir}'" "--gin.SEED=${seed}")
  launch_train "${dir}" "${size}" "${kind}" "${args[@]}"
}

# superglue_prompt_run SIZE TASK SEED OBJECTIVE INIT LENGTH: one SuperGLUE
# prompt, in the directory every paper script uses for that setting (so the
# default setting, shared by Figures 1 and 3 and Table 3, runs once; a
# relaunched run resumes, or just reports if finished).
superglue_prompt_run() {
  local size="$1" task="$2" seed="$3" objective="$4" init="$5" length="$6"
  prompt_run "superglue/${size}/prompt_${objective}_${init}_len${length}/${task}/seed${seed}" \
    "${size}" "taskless_super_glue_${task}_v102" "${task}" "$(target_length "${task}")" \
    "${seed}" "${objective}" "${init}" "${length}"
}

superglue_prompt_dir() {
  echo "${OUTPUT_DIR}/superglue/$1/prompt_$4_$5_len$6/$2/seed$3"
}
