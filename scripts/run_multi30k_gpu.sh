#!/usr/bin/env bash
# Multi30k benchmark runs on one GPU (issue 7): the recipes in configs/ trained side by side on one card
# (each run is Python-bound at this size, so several processes share the GPU well), then sacreBLEU/chrF on
# test_2016_flickr with beam 5 for the model selected on val.
#
#   bash scripts/run_multi30k_gpu.sh DATA_DIR OUT_DIR MINUTES [smoke]
#
# DATA_DIR holds {train,val,test_2016_flickr}.{de,en}.gz (../shared/data/multi30k here).
# Environment:
#   RUNS="transformer_de_en ..."  which recipes to train (configs/multi30k_<name>.yaml); default: the five of issue 7
#   EVAL_STEPS=1500               validation (and best-model selection) interval
#   MIXED_PRECISION=bf16          --mixed_precision of every run (no: fp32, e.g. for a CPU smoke test)
#   AVERAGE=N                     also average the last N checkpoints (saved every SAVE_STEPS=500 steps) with
#                                 `hf-seq2seq average-checkpoints`; the best checkpoint and the average are both
#                                 scored on val and the higher one is reported on test (<name>.selection.json)
set -uo pipefail
DATA=${1:-../shared/data/multi30k}
OUT=${2:-outputs/gpu}
MINUTES=${3:-4}
SMOKE=${4:-}
RUNS=${RUNS:-"transformer_de_en transformer_en_de bigru_bahdanau_de_en lstm_luong_de_en gru_vanilla_de_en"}
AVERAGE=${AVERAGE:-0}
SAVE_STEPS=${SAVE_STEPS:-500}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
extra=(--mixed_precision "${MIXED_PRECISION:-bf16}" --disable_progress_bar --log_with none --eval_steps "${EVAL_STEPS:-1500}"
       --max_train_minutes "$MINUTES" --train_prefix "$DATA/train" --validation_prefix "$DATA/val")
if [ "$AVERAGE" -gt 1 ]; then extra+=(--save_steps "$SAVE_STEPS" --save_total_limit "$AVERAGE"); fi
if [ -n "$SMOKE" ]; then extra+=(--max_steps 30 --eval_steps 30 --save_steps 10 --max_validation_examples 64); fi

evaluate() {  # model split out.json [hyp]
  local src=$2 tgt=$3
  $PY -m hf_seq2seq.cli evaluate --model "$1" --num_beams 5 --batch_size 128 \
      --source "$DATA/$4.$src.gz" --reference "$DATA/$4.$tgt.gz" --output "$5" ${6:+--hypotheses "$6"}
}

run() {  # name
  local name=$1 recipe="configs/multi30k_$1.yaml"
  $PY scripts/train.py --config "$recipe" --output_dir "$OUT/$name" --overwrite_output_dir \
      "${extra[@]}" >"$OUT/$name.log" 2>&1
  local src tgt
  src=$(grep -E '^source_lang:' "$recipe" | awk '{print $2}')
  tgt=$(grep -E '^target_lang:' "$recipe" | awk '{print $2}')
  local model="$OUT/$name/best_model"
  [ -d "$model" ] || model="$OUT/$name/final_model"
  if [ "$AVERAGE" -gt 1 ]; then
    {
      $PY -m hf_seq2seq.cli average-checkpoints --run_dir "$OUT/$name" --last "$AVERAGE" \
          --output "$OUT/$name/averaged_model" &&
        evaluate "$OUT/$name/averaged_model" "$src" "$tgt" val "$OUT/$name.val_averaged.json"
      evaluate "$model" "$src" "$tgt" val "$OUT/$name.val_best.json"
      model=$($PY - "$OUT/$name" "$model" <<'PYEOF'
import json, sys
from pathlib import Path
run, best = Path(sys.argv[1]), sys.argv[2]
scores = {}
for label, path in (("best_model", best), ("averaged_model", str(run / "averaged_model"))):
    f = run.parent / f"{run.name}.val_{label.split('_')[0]}.json"
    if f.exists():
        scores[label] = {"model": path, "val_bleu": json.loads(f.read_text())["bleu"]}
choice = max(scores, key=lambda k: scores[k]["val_bleu"])
(run.parent / f"{run.name}.selection.json").write_text(json.dumps({"selected": choice, **scores}, indent=1))
print(scores[choice]["model"])
PYEOF
)
    } >>"$OUT/$name.log" 2>&1
  fi
  evaluate "$model" "$src" "$tgt" test_2016_flickr "$OUT/$name.test.json" "$OUT/$name.test.hyp" >>"$OUT/$name.log" 2>&1
  echo "$name done ($model): $(head -c 300 "$OUT/$name.test.json" 2>/dev/null)"
}

start=$(date +%s)
for name in $RUNS; do run "$name" & done
wait
echo "all runs finished in $(( $(date +%s) - start )) s"
