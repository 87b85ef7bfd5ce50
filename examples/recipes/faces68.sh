#!/usr/bin/env bash
# Train the KD-Loss pipeline on 68-point faces: tough and tolerant teachers, then the
# plain baseline and the KD student with the same budget, then evaluate all four.
#
#   bash examples/recipes/faces68.sh cpu [DATA] [OUT]   # ImageNet starts, DSNT heads, 128 px (about 45 min)
#   bash examples/recipes/faces68.sh cpu-64 [DATA] [OUT]  # ImageNet starts, regression heads: teachers 128, students 64 px
#   bash examples/recipes/faces68.sh cpu-scratch [DATA] [OUT]  # random starts: ResNet-18 teachers, 64 px
#   bash examples/recipes/faces68.sh gpu [DATA] [OUT]   # longer recipe for one CUDA GPU
#   bash examples/recipes/faces68.sh gpu-bench [DATA] [OUT]  # the four roles in minutes (benchmarks/bench_gpu.py)
#
# DATA holds lfpw68/train, helen68/train and afw68/train (images + .pts; any folders of
# images with .pts work); default ../shared/data. OUT defaults to runs/faces68-MODE.
# The validation split (10 %, seed 0, faces of one photo together) is made by
# `shapekit train` itself, identically in every run; the tolerant teacher's shape model is
# fitted on the training split only (OUT/tolerant/soft_model.npz).
# Environment overrides: T_EPOCHS, S_EPOCHS, DEVICE, EXTRA (more `shapekit train` flags,
# e.g. EXTRA="--max-steps-per-epoch 2" for a smoke run).
# On a GPU the three sets go into one portable JPEG cache (256 px crops with context, about
# 44 MB: `shapekit prepare --jpeg`) held on the device, augmented there a batch at a time
# (--batched) and fed to the network at 224 px (the paper's input size).
set -euo pipefail
MODE=${1:-cpu}
DATA=${2:-../shared/data}
OUT=${3:-runs/faces68-$MODE}
SETS="lfpw68 helen68 afw68"

case "$MODE" in
  cpu)  # 2 cores, two one-thread jobs side by side; MobileNetV2 from its ImageNet file (shapekit weights get
    # mobilenetv2) with a DSNT head for all four networks, 128-px crops; teachers 20 epochs, students 12
    SIZE=128; TEACHER=mobilenetv2; T_EPOCHS=${T_EPOCHS:-20}; S_EPOCHS=${S_EPOCHS:-12}
    COMMON="--batch-size 32 --lr 1e-3 --warmup-epochs 0.5 --threads 1 --pretrained imagenet --head dsnt"
    COMMON="$COMMON --device ${DEVICE:-cpu}" ;;
  cpu-64)  # as cpu with regression heads; teachers on the 128-px crops, students at 64 px from the same crops
    # (the teachers see 128 px)
    SIZE=128; TEACHER=mobilenetv2; T_EPOCHS=${T_EPOCHS:-14}; S_EPOCHS=${S_EPOCHS:-12}
    STUDENT_EXTRA="--input-size 64"
    COMMON="--batch-size 32 --lr 1e-3 --warmup-epochs 0.5 --threads 1 --pretrained imagenet --device ${DEVICE:-cpu}" ;;
  cpu-scratch)  # 2 cores, random starts (no weight file needed): ResNet-18 teachers, MobileNetV2 students, 64 px
    SIZE=64; TEACHER=resnet18; T_EPOCHS=${T_EPOCHS:-25}; S_EPOCHS=${S_EPOCHS:-35}
    COMMON="--batch-size 32 --lr 2e-3 --warmup-epochs 0.5 --threads 1 --device ${DEVICE:-cpu}" ;;
  gpu|gpu-bench)  # one GPU: bfloat16 autocast, channels-last and fused AdamW are on by default on CUDA
    SIZE=256; TEACHER=efficientnet_b3; T_EPOCHS=${T_EPOCHS:-120}; S_EPOCHS=${S_EPOCHS:-150}
    COMMON="--batch-size 64 --lr 1e-3 --warmup-epochs 2 --batched --input-size 224 --ema --device ${DEVICE:-cuda}" ;;
  *) echo "usage: $0 cpu|cpu-64|cpu-scratch|gpu|gpu-bench [DATA] [OUT]" >&2; exit 2 ;;
esac
COMMON="$COMMON --val-fraction 0.1 --seed 0 --json ${EXTRA:-}"

mkdir -p "$OUT"
CACHES=""
if [ "$MODE" = cpu ] || [ "$MODE" = cpu-64 ] || [ "$MODE" = cpu-scratch ]; then
  for s in $SETS; do
    if [ ! -f "$OUT/cache/${s}_$SIZE/meta.json" ]; then
      shapekit prepare "$DATA/$s/train" -o "$OUT/cache/${s}_$SIZE" --size "$SIZE"
    fi
    CACHES="$CACHES $OUT/cache/${s}_$SIZE"
  done
else
  if [ ! -f "$OUT/cache/faces68/meta.json" ]; then
    shapekit prepare $(for s in $SETS; do echo "$DATA/$s/train"; done) -o "$OUT/cache/faces68" --size "$SIZE" --jpeg 90
  fi
  CACHES="$OUT/cache/faces68"
fi
if [ "$MODE" = gpu-bench ]; then
  OUT="$OUT" python benchmarks/bench_gpu.py --cache "$OUT/cache/faces68" --out "$OUT" --json ${EXTRA:-}
  exit 0
fi

train() {  # role name epochs extra...
  local role=$1 name=$2 epochs=$3; shift 3
  shapekit train --role "$role" --data $CACHES --out "$OUT/$name" --epochs "$epochs" $COMMON "$@" \
    > "$OUT/$name.log" 2>&1
}

if [ "$MODE" = cpu ] || [ "$MODE" = cpu-64 ] || [ "$MODE" = cpu-scratch ]; then
  train tough tough "$T_EPOCHS" --model "$TEACHER" &
  train tolerant tolerant "$T_EPOCHS" --model "$TEACHER" &
  wait
  T="--teachers $OUT/tough/best.pt $OUT/tolerant/best.pt"
  train plain plain "$S_EPOCHS" --model mobilenetv2 ${STUDENT_EXTRA:-} &
  train student student "$S_EPOCHS" --model mobilenetv2 ${STUDENT_EXTRA:-} $T &
  wait
else
  train tough tough "$T_EPOCHS" --model "$TEACHER"
  train tolerant tolerant "$T_EPOCHS" --model "$TEACHER"
  T="--teachers $OUT/tough/best.pt $OUT/tolerant/best.pt"
  train plain plain "$S_EPOCHS" --model mobilenetv2
  train student student "$S_EPOCHS" --model mobilenetv2 $T
fi
for name in tough tolerant plain student; do
  echo "$name: $(tail -n 1 "$OUT/$name.log")"
done
