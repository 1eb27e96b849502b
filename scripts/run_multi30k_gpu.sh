#!/usr/bin/env bash
# Multi30k benchmark runs on one GPU (issue 7): the recipes in configs/ trained side by side on one card
# (each run is Python-bound at this size, so five processes share the GPU well), then sacreBLEU/chrF on
# test_2016_flickr with beam 5 for the model selected on val.
#
#   bash scripts/run_multi30k_gpu.sh DATA_DIR OUT_DIR MINUTES [smoke]
#
# DATA_DIR holds {train,val,test_2016_flickr}.{de,en}.gz (../shared/data/multi30k here).
set -uo pipefail
DATA=${1:-../shared/data/multi30k}
OUT=${2:-outputs/gpu}
MINUTES=${3:-4}
SMOKE=${4:-}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
extra=(--mixed_precision bf16 --disable_progress_bar --log_with none --eval_steps 1500
       --max_train_minutes "$MINUTES" --train_prefix "$DATA/train" --validation_prefix "$DATA/val")
if [ -n "$SMOKE" ]; then extra+=(--max_steps 30 --eval_steps 30 --max_validation_examples 64); fi

run() {  # name recipe [overrides...]
  local name=$1 recipe=$2; shift 2
  $PY scripts/train.py --config "configs/$recipe.yaml" --output_dir "$OUT/$name" --overwrite_output_dir \
      "${extra[@]}" "$@" >"$OUT/$name.log" 2>&1
  local src tgt
  src=$(grep -E '^source_lang:' "configs/$recipe.yaml" | awk '{print $2}')
  tgt=$(grep -E '^target_lang:' "configs/$recipe.yaml" | awk '{print $2}')
  local model="$OUT/$name/best_model"
  [ -d "$model" ] || model="$OUT/$name/final_model"
  $PY -m hf_seq2seq.cli evaluate --model "$model" --num_beams 5 --batch_size 128 \
      --source "$DATA/test_2016_flickr.$src.gz" --reference "$DATA/test_2016_flickr.$tgt.gz" \
      --output "$OUT/$name.test.json" --hypotheses "$OUT/$name.test.hyp" >>"$OUT/$name.log" 2>&1
  echo "$name done: $(cat "$OUT/$name.test.json" 2>/dev/null | head -c 400)"
}

start=$(date +%s)
run transformer_de_en multi30k_transformer_de_en &
run transformer_en_de multi30k_transformer_en_de &
run bigru_bahdanau_de_en multi30k_bigru_bahdanau_de_en &
run lstm_luong_de_en multi30k_lstm_luong_de_en &
run gru_vanilla_de_en multi30k_gru_vanilla_de_en &
wait
echo "all runs finished in $(( $(date +%s) - start )) s"
