# Copyright (c) mmakd contributors. All rights reserved.
# The evidence runs of docs/evidence-inference-avatars.md, from the
# repository root: fresh seeds from 200, 7 for detection (200-206) and 10
# for segmentation (200-209), where the stopping rule ended (SEEDS=N sets
# another count for both), after the selection runs beside this file chose
# each task's views and in-network dropout settings (filled in below).
# Needs the demo data (python tools/dataset_converters/make_shapes.py
# data/shapes) and the demo teachers (work_dirs/akd_demo/{det,seg}/teacher,
# python tools/demo.py); trains the ensemble's teachers of seeds 1-3 when
# missing (seed 0 is the demo teacher). Every run is reused when finished
# (--reuse), so the script can be stopped and started again.
# Usage: bash docs/results/inference-avatars/run_evidence.sh \
#     [det|selection_seg_mc|seg [ARM...]|family|all]
# Two runs at a time (one per core) are faster than one with two threads:
# the evidence runs were made that way, each with OMP_NUM_THREADS=1.
set -euo pipefail
PY=${PY:-python}
DET_SEEDS=${SEEDS:-7}
SEG_SEEDS=${SEEDS:-10}
D=retinanet-r18-w32_retinanet-r18-w8_1xb8-400it_shapes-128.py
S=pspnet-r18-w32_pspnet-r18-w8_1xb8-600it_shapes-128.py
C=configs/akd/demo
R=docs/results/inference-avatars
# chosen on selection seeds 1-3 (selection-det/, selection-seg/), mean mIoU or
# bbox mAP of the two candidates
DET_VIEWS=("model.distiller.avatars.perturbation.scales=(0.75,1.0,1.25)")
DET_MC=("model.distiller.avatars.perturbation.p=0.05")
SEG_VIEWS=("model.distiller.avatars.perturbation.scales=(0.75,1.0,1.25)")
# M10 (the configs' default p = 0.1): 21.57 +- 0.25 against M05 21.32 +- 0.72
SEG_MC=()
SEG_MC_CHOSEN=M10
NOTE_DET="SYNTHETIC DATA: the demo's shapes dataset in COCO format (data/shapes, 400 training and 100 validation images, 128x128), not COCO; bbox mAP from CocoMetric in points. Evidence seeds from 200 (docs/evidence-inference-avatars.md); teacher: the demo's RetinaNet R18 width 32 (work_dirs/akd_demo/det/teacher/iter_2000.pth, seed 0)."
NOTE_SEG="SYNTHETIC DATA: the demo's shapes dataset in Cityscapes layout (data/shapes, 400 training and 100 validation images, 128x128), not Cityscapes; mIoU from IoUMetric. Evidence seeds from 200 (docs/evidence-inference-avatars.md); teacher: the demo's PSPNet R18 width 32 (work_dirs/akd_demo/seg/teacher/iter_1600.pth, seed 0)."

compare() {  # TASK A_CONFIG B_CONFIG NAME [B options...]
  local task=$1 a=$2 b=$3 name=$4
  shift 4
  local note=$NOTE_DET seeds=$DET_SEEDS
  [ "$task" = seg ] && note=$NOTE_SEG seeds=$SEG_SEEDS
  local extra=()
  [ $# -gt 0 ] && extra=(--options-b "$@")
  $PY tools/reproduce.py "$a" "$b" --seeds "$seeds" --first-seed 200 \
    --names cwd "$name" --reuse --work-dir "work_dirs/inference-avatars/evidence-$task" \
    --report-dir "$R/evidence-$task/$name" --note "$note" "${extra[@]}"
}

det() {
  local a=$C/cwd_fpn_$D
  compare det "$a" "$C/akd-reference_cwd_fpn_$D" cwd_std \
    model.distiller.avatars.perturbation.p=0.0
  compare det "$a" "$C/akd_cwd_fpn_$D" akd
  compare det "$a" "$C/akd-views_cwd_fpn_$D" views "${DET_VIEWS[@]}"
  compare det "$a" "$C/akd-mcdropout_cwd_fpn_$D" mc "${DET_MC[@]}"
  mkdir -p work_dirs/akd_demo/ensemble/teacher_seed0
  cp -n work_dirs/akd_demo/det/teacher/iter_2000.pth \
    work_dirs/akd_demo/ensemble/teacher_seed0/
  for seed in 1 2 3; do
    local w=work_dirs/akd_demo/ensemble/teacher_seed$seed
    [ -f "$w/iter_2000.pth" ] || $PY tools/train.py \
      $C/retinanet_r18-w32_fpn-64_1xb8-2000it_shapes-128.py --work-dir "$w" \
      --cfg-options randomness.seed=$seed default_hooks.logger.interval=20 \
      train_cfg.val_interval=2000 default_hooks.checkpoint.interval=2000
  done
  compare det "$a" "$C/cwd_fpn_4x$D" ensemble
}

selection_seg_mc() {
  $PY tools/reproduce.py "$C/akd-mcdropout_cwd_logits_$S" \
    "$C/akd-mcdropout_cwd_logits_$S" --seeds 3 --first-seed 1 \
    --names M10 M05 --options-b model.distiller.avatars.perturbation.p=0.05 \
    --reuse --work-dir work_dirs/inference-avatars/selection-seg \
    --report-dir "$R/selection-seg/mc" --note "${NOTE_SEG/Evidence seeds from 200/Selection seeds 1-3}"
}

seg() {  # [ARM...]: all four arms when none is named
  if [ -z "$SEG_MC_CHOSEN" ]; then
    echo "run '$0 selection_seg_mc' and fill in SEG_MC first" >&2
    exit 2
  fi
  local a=$C/cwd_logits_$S arms=("$@")
  [ ${#arms[@]} -gt 0 ] || arms=(cwd_std akd views mc)
  for arm in "${arms[@]}"; do
    case $arm in
      cwd_std) compare seg "$a" "$C/akd_cwd_logits_$S" cwd_std \
        model.distiller.avatars.num_avatars=1 \
        model.distiller.avatars.perturbation.p=0.0 \
        model.distiller.avatars.normalize=student ;;
      akd) compare seg "$a" "$C/akd_cwd_logits_$S" akd ;;
      views) compare seg "$a" "$C/akd-views_cwd_logits_$S" views "${SEG_VIEWS[@]}" ;;
      mc) compare seg "$a" "$C/akd-mcdropout_cwd_logits_$S" mc "${SEG_MC[@]}" ;;
      *) echo "unknown segmentation arm '$arm'" >&2; exit 2 ;;
    esac
  done
}

family() {
  local reports=()
  for task in det seg; do
    for arm in cwd_std akd views mc ensemble; do
      local f=$R/evidence-$task/$arm/reproduce.json
      [ -f "$f" ] && reports+=("$task/$arm=$f")
    done
  done
  $PY tools/analysis_tools/compare_family.py "${reports[@]}" --out "$R"
}

case "${1:-all}" in
  det) det ;;
  selection_seg_mc) selection_seg_mc ;;
  seg) shift; seg "$@" ;;
  family) family ;;
  all) det; seg; family ;;
  *) echo "usage: $0 [det|selection_seg_mc|seg [ARM...]|family|all]" >&2; exit 2 ;;
esac
