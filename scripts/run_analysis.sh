#!/usr/bin/env bash
# Reproduces every figure and table of the "lecture's claims, measured" sections of docs/results.md (issue 17):
#   1. BLEU/chrF by source length on Multi30k test_2016_flickr de→en for the four Multi30k recipes;
#   2. the same on a generated long-input set (lists of 1-12 numbers, sources up to ~70 words);
#   3. the alignment table and heatmaps of the attention models on the embedded "numbers" task.
#
#   scripts/run_analysis.sh train      # the small task models (CPU, 1 thread each, 2 at a time, minutes each)
#   scripts/run_analysis.sh analyze    # hf-seq2seq analyze on every model; writes docs/results/analysis_*
#   scripts/run_analysis.sh            # both
#
# Environment: RUNS (trained task models, default ../analysis_runs beside the clone; kept out of the repository),
# MULTI30K_RUNS (run folders of the Multi30k recipes, default outputs/ as the recipes write it: multi30k_<name>/ or
# <name>/, each with best_model/), DATA (Multi30k folder, default ../shared/data/multi30k), CODE (the checkout whose
# scripts/train.py trains, default this one), OUT (where the figures, tables and JSON go, default docs/results),
# PYTHON. Relative paths are relative to the project root; the reports name every path relative to it.
set -euo pipefail
HERE="$(cd "$(dirname "$0")/.." && pwd)"
cd "$HERE"
RUNS="$(realpath -m "${RUNS:-../analysis_runs}")"
MULTI30K_RUNS="$(realpath -m "${MULTI30K_RUNS:-outputs}")"
DATA="${DATA:-$HERE/../shared/data/multi30k}"
CODE="${CODE:-$HERE}"
PYTHON="${PYTHON:-$HERE/.venv/bin/python}"
OUT="${OUT:-$HERE/docs/results}"
mkdir -p "$RUNS" "$OUT"

# ------------------------------------------------------------------------------------------- the task models
# The short "numbers" task: the demo recipe's tiny models (E=32, H=64), one per attention variant, two seeds (the
# seed also draws the task's splits, so each seed has its own test split).
numbers_run() {  # numbers_run NAME SEED MODEL_TYPE MODEL_CONFIG_JSON [extra train options]
  local name=$1 seed=$2 type=$3 cfg=$4
  shift 4
  train "${name}_s$seed" --config configs/demo_numbers_bahdanau.yaml --model_type "$type" --model_config "$cfg" \
    --max_steps 600 --eval_steps 300 --log_with none --seed "$seed" "$@"
}

# Lists of numbers (long inputs): written by hf_seq2seq.tasks.make_number_lists, trained from files.
lists_run() {  # lists_run NAME MODEL_TYPE MODEL_CONFIG_JSON [extra train options]
  local name=$1 type=$2 cfg=$3
  shift 3
  train "$name" --train_prefix "$RUNS/data/lists.train" --validation_prefix "$RUNS/data/lists.validation" \
    --source_lang de --target_lang en --vocab_size 400 --max_tokens 4096 --max_source_length 96 \
    --max_target_length 128 --model_type "$type" --model_config "$cfg" --learning_rate 0.003 \
    --lr_scheduler inverse_sqrt --warmup_steps 100 --max_steps 1500 --eval_steps 500 --num_beams 4 \
    --max_new_tokens 160 --max_train_minutes 20 --log_with none "$@"
}

train() {  # train NAME [train.py options]; skips a finished run
  local name=$1
  shift
  if [ -d "$RUNS/$name/best_model" ] || [ -d "$RUNS/$name/final_model" ]; then
    echo "$name: already trained"
    return
  fi
  (cd "$CODE" && PYTHONPATH="$CODE" OMP_NUM_THREADS=1 "$PYTHON" scripts/train.py --output_dir "$RUNS/$name" \
    --disable_progress_bar true "$@") >"$RUNS/$name.log" 2>&1
  echo "$name: trained ($(tail -n 1 "$RUNS/$name.log"))"
}

rnn() {  # rnn ATTENTION INPUT_FEEDING HIDDEN -> the RNN family's model_config JSON
  echo "{\"cell\": \"gru\", \"bidirectional_encoder\": true, \"attention\": \"$1\", \"input_feeding\": $2, \
\"embedding_size\": 32, \"hidden_size\": $3, \"encoder_layers\": 1, \"decoder_layers\": 1, \"dropout\": 0.0}"
}
TRANSFORMER='{"d_model": 64, "encoder_layers": 2, "decoder_layers": 2, "num_attention_heads": 4, "ffn_dim": 128, "dropout": 0.0}'

lane_a() {
  for seed in 0 1; do
    numbers_run numbers_bahdanau $seed rnn "$(rnn bahdanau false 64)"
    numbers_run numbers_dot $seed rnn "$(rnn dot false 64)"
    numbers_run numbers_general $seed rnn "$(rnn general false 64)"
    numbers_run numbers_concat $seed rnn "$(rnn concat false 64)"
    numbers_run numbers_none $seed rnn "$(rnn none false 64)"
  done
  lists_run lists_none rnn "$(rnn none false 128)" --seed 0
  lists_run lists_general_if rnn "$(rnn general true 128)" --seed 0
}
lane_b() {
  for seed in 0 1; do
    numbers_run numbers_transformer $seed transformer "$TRANSFORMER" --learning_rate 0.002 --warmup_steps 100
    numbers_run numbers_dot_if $seed rnn "$(rnn dot true 64)"
    numbers_run numbers_general_if $seed rnn "$(rnn general true 64)"
    numbers_run numbers_concat_if $seed rnn "$(rnn concat true 64)"
  done
  lists_run lists_bahdanau rnn "$(rnn bahdanau false 128)" --seed 0
  lists_run lists_transformer transformer "$TRANSFORMER" --learning_rate 0.002 --warmup_steps 200 --seed 0
}

write_lists() {  # the long-input set: 4000 train / 200 validation / 600 test lists, seed 0
  mkdir -p "$RUNS/data"
  "$PYTHON" - "$RUNS/data" <<'EOF'
import sys
from hf_seq2seq.tasks import make_number_lists

rows = make_number_lists(4800, seed=0)
for split, part in {"train": rows[:4000], "validation": rows[4000:4200], "test": rows[4200:]}.items():
    for lang in ("de", "en"):
        with open(f"{sys.argv[1]}/lists.{split}.{lang}", "w", encoding="utf-8") as f:
            f.write("".join(r["translation"][lang] + "\n" for r in part))
EOF
}

write_numbers_test() {  # the held-out test split of the numbers task as the runs of seed $1 drew it
  "$PYTHON" - "$RUNS/data" "$1" <<'EOF'
import sys
from hf_seq2seq.tasks import load_task_dataset

seed = int(sys.argv[2])
test = load_task_dataset("numbers", 4000, 200, 200, seed=seed)["test"]["translation"]
for lang in ("de", "en"):
    with open(f"{sys.argv[1]}/numbers_s{seed}.test.{lang}", "w", encoding="utf-8") as f:
        f.write("".join(r[lang] + "\n" for r in test))
EOF
}

do_train() {
  write_lists
  lane_a &
  lane_b &
  wait
}

rel() {  # a path as the reports show it: relative to the project root (no folder of this machine)
  realpath -m --relative-to="$HERE" "$1"
}

analyze() {  # analyze NAME [hf-seq2seq analyze options]
  local name=$1
  shift
  (cd "$HERE" && PYTHONPATH="$HERE" OMP_NUM_THREADS=1 "$PYTHON" -m hf_seq2seq.cli analyze "$@" --output_dir "$OUT" \
    --name "$name" --device cpu)
}

do_analyze() {
  local m30k=()
  for run in gru_vanilla_de_en bigru_bahdanau_de_en lstm_luong_de_en transformer_de_en; do
    for sub in {multi30k_,}"$run"/{best_model,final_model}; do
      if [ -d "$MULTI30K_RUNS/$sub" ]; then
        m30k+=("$(rel "$MULTI30K_RUNS/$sub")")
        break
      fi
    done
  done
  local runs data
  runs="$(rel "$RUNS")" data="$(rel "$DATA")"
  analyze analysis_multi30k "${m30k[@]}" --source "$data/test_2016_flickr.de.gz" \
    --reference "$data/test_2016_flickr.en.gz" --min_bucket_size 100 --num_beams 5
  analyze analysis_lists "$runs"/lists_{none,bahdanau,general_if,transformer}/best_model \
    --source "$runs/data/lists.test.de" --reference "$runs/data/lists.test.en" --min_bucket_size 50 \
    --alignment numbers --heatmap_line 1 --update_card
  local variants=(none bahdanau dot general concat dot_if general_if concat_if transformer) v seed
  for seed in 0 1; do
    write_numbers_test $seed
    local models=()
    for v in "${variants[@]}"; do models+=("$runs/numbers_${v}_s$seed/best_model"); done
    analyze "analysis_alignment_s$seed" "${models[@]}" --labels "$(IFS=,; echo "${variants[*]}")" \
      --source "$runs/data/numbers_s$seed.test.de" --reference "$runs/data/numbers_s$seed.test.en" \
      --min_bucket_size 25 --alignment numbers --heatmap_line 1
  done
}

case "${1:-all}" in
  train) do_train ;;
  analyze) do_analyze ;;
  all) do_train && do_analyze ;;
  *) echo "usage: $0 [train|analyze|all]" >&2; exit 2 ;;
esac
