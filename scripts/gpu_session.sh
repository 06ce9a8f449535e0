#!/usr/bin/env bash
# One GPU job per call on the lent GPU machine (10-minute command limit, 30 minutes of device time a session).
#
#   source .device/setup.sh && bash scripts/gpu_session.sh JOB
#
# JOB (in the order the open work needs them; each fits in one call, setup included):
#   quality   Difix3D loop evidence: baseline / dense teacher / identity / teacher / degraded teacher on fox x2,
#             castle-P30 and Herz-Jesus-P25 (scripts/bench_difix3d_quality.py), ~7 min
#   quality_herz  the same five runs on Herz-Jesus-P25 alone, degraded teacher first (the cell the first H100 run of
#             `quality` did not reach), ~4 min
#   fixer     a small fixer trained from random initialisation, evaluated on entry-P10 (gpu_train_fixer_demo.py)
#   fixer_loop  that fixer (same machine, after `fixer`) as a variant of the loop benchmark on fox x2, ~3 min
#   nifi      nifi-splatfacto product benchmark against PngCompression on fox x2 (bench_nifi_splatfacto.py)
#   nifi3     the same on fox x2, castle-P30 and Herz-Jesus-P25 at once (all in $OUT/nifi3.tar.gz)
#   rescore_nifi3  LPIPS-vgg / DISTS of nifi3's saved renders (same warm machine, VGG16 weights in .device)
#   nifi_budget  only the budget-trained PngCompression rows of nifi3's three scenes at once, budgets read from the
#             committed nifi3 JSONs (--budgets-from; as many steps as nifi3 trained its models: $FOX_STEPS, default
#             7000, and $STRECHA_STEPS, default 4000, for the Strecha scenes; all in $OUT/nifi_budget.tar.gz)
#   rescore_budget  LPIPS-vgg / DISTS of nifi_budget's saved renders (same warm machine, VGG16 weights in .device)
#   speed     post-fix fps inside ns-render, then Difix fast path vs eager vs plain diffusers
#   postfix   post-fix fps inside ns-render alone (batch 8 then 1), the whole call
#   profile   Difix step per stage and kernel class (profile_difix.py), then the fast path with one cached reference
#   groupnorm  GroupNorm+SiLU kernels at the Difix decoder's shapes: stock vs per-channel statistics (bench_groupnorm.py)
#   gnsmall   GroupNorm + SiLU formulations replayed as CUDA graphs (bench_groupnorm.py --cuda-graphs) at the UNet's
#             shapes with a reference view (batch 2) and the VAE's at batch 1: where the fast path's small GroupNorms
#             are latency-bound, whether inductor's own single-kernel GroupNorm ("stock") beats the per-channel
#             formulations `auto` picks, ~2 min
#   fusedconv  GroupNorm + SiLU + 3x3 convolution at the VAE's resnet shapes: inductor + cuDNN against a hand-written
#             Triton kernel normalising in its prologue and summing for the next GroupNorm in its epilogue
#             (bench_fused_conv.py, batch 1 and 8, autotuned), ~2 min
#   cudnnconv  GroupNorm + SiLU + 3x3 convolution at the VAE's resnet shapes as fused cuDNN graphs (normalisation in
#             the prologue, statistics from the epilogue) against inductor + cuDNN (bench_cudnn_conv.py, batch 1 and
#             8), ~3 min; carry .device/wheels, .device/setup.sh, .device/sc and .device/kernels (the frontend's wheel,
#             from prepare_device_extras.sh) and source the first seven lines of setup.sh
#   groupnorm_ab  groupnorm at the decoder's and the UNet's shapes with the channel_sums formulation, then the compiled
#             batch-8 step profiled with compiled_group_norm=channel_sums and =channel_stats (the A/B), ~7 min cold
#   kernels   groupnorm, then the VAE's wide attention head: SDPA vs two GEMMs (bench_wide_attention.py), then the
#             compiled step profiled with the fast path's kernels (profile_difix.py --modes compiled) until JOB_DEADLINE
#   fastpath  Difix fast path vs eager vs plain diffusers (bench_difix.py: batch 1/8, V 0/1), then the compiled step
#             profiled (profile_difix.py --modes compiled) until JOB_DEADLINE
#   b1refs    bench_difix.py's #12 rows (anchor, eager bf16, fast batch 1/8 x V 0/1, each fast call split into the
#             compiled step, fix with pre-encoded references and the glue), then the batch-1 step with one cached
#             reference profiled (profile_difix.py --batch 1 --refs 1) until JOB_DEADLINE, ~9 min cold
#   upsample  the upsampling convolutions as one stride-2 transposed convolution, alone at the decoder's shapes
#             (bench_upsample_conv.py), then bench_difix.py without the V=1 rows (anchor, eager, fast b1/b8) until
#             JOB_DEADLINE
#   upsample_ab  the transposed-convolution upsampling alone, then the compiled step profiled with it and with the stock
#             pair (same machine), then the fast path's batch-1 row until JOB_DEADLINE
#   fastrefs  (warm, after `upsample`) bench_difix.py's V=1 rows (eager bf16, fast b1/b8) and the fast-vs-eager
#             differences, then the batch-8 fast path with the stock upsampling (same machine, the A/B) until JOB_DEADLINE
#   refenc    a reference's first use: the VAE encoder eager / compiled / the fast path's encode_reference
#             (bench_reference_encoding.py), then post-fix fps in ns-render at batch 8 (bench_postfix_render.py: new
#             references through encode_reference, work-ahead A/B in ns-render and in the hook), ~6 min cold
#   steady    post-fix fps in ns-render at its steady state (64 frames, batch 8 then 1) with one pass of each batch
#             size profiled (--profile-dir: GPU gaps, host waits, gzipped trace), ~7 min cold; STEADY_BATCHES,
#             STEADY_FRAMES and STEADY_CHECKPOINTS ("difix_ref", "difix": without references) change what it times
#   constants  compiled_constants A/B at batch 1 with one cached reference (bench_difix.py): $CONSTANTS (default:
#             "inputs folded") alternating, $CONSTANTS_REPEATS (default 2) times, a compile cache per kind (the first
#             pass compiles cold, ~2.5 min a kind), then the step profiled with the last kind until JOB_DEADLINE
#   unetattn  the UNet's self-attention alone per SDPA kernel (bench_unet_attention.py: SDPA's choice, flash, cuDNN,
#             memory-efficient), with and without a reference view, ~1 min warm
#   tuning    the batch-8 fast path (bench_difix.py, V=0) with inductor's defaults, then with coordinate-descent
#             tuning of its Triton kernels (TORCHINDUCTOR_COORDINATE_DESCENT_TUNING=1), separate compile caches;
#             TUNING_BATCHES / TUNING_REFS pick the row, TUNING_ENV the inductor settings of the second run (e.g.
#             "TORCHINDUCTOR_MAX_AUTOTUNE_GEMM=1": Triton GEMM templates with their epilogues fused, autotuned against
#             cuBLAS) and TUNING_NAME its file (bench_difix_$TUNING_NAME.json) and compile cache
#   inductor  the batch-1 fast path with one cached reference (bench_difix.py, 30 iterations) with inductor's defaults,
#             then once per setting in $INDUCTOR_SETTINGS (default: "combo_kernels=True aggressive_fusion=True"; each
#             NAME=VALUE goes to bench_difix.py --inductor), a cold compile cache each (~2.5 min a run), until
#             JOB_DEADLINE
#   rounds    fix-round overhead of difix3d-splatfacto vs splatfacto (gpu_difix3d_splatfacto.py), ~2 min
#   restorer  NiFi restorer trained from random initialisation, evaluated on entry-P10 (gpu_train_restorer_demo.py)
#   parallel  $PARALLEL_JOBS (default: quality nifi restorer fixer) at once on the one GPU (each alone leaves most of an H200 idle), all
#             ending by $BATCH_DEADLINE (epoch seconds; default: 440 s from now); each job's files and log are packed
#             into $OUT/JOB.tar.gz (the device tool returns at most 8 files). A later `fixer` call resumes the fixer.
# JOB_SECONDS (and NIFI_DEADLINE_S, FIXER_TRAIN_S) override a single job's time budget; `parallel` sets them.
# JOB_DEADLINE (epoch seconds) is when `speed` must end (default: 560 s from its start).
#
# Needs in .device/data: fox (transforms.json, images_4, images_2) and strecha/{castle-P30,Herz-Jesus-P25,entry-P10};
# carry .device's parts by name (wheels, setup.sh, sc, data, alexnet_imagenet_features.pth): with kernels/ and
# cache/ there, all of .device and the working tree are over the 64 MiB a call carries (prepare_device_extras.sh
# prints the totals).
# Results land in $OUT; copy them into docs/gpu_results/.
# Every diffusion model here has random or self-trained weights: say which wherever a number is quoted.
set -euo pipefail
job=${1:?usage: bash scripts/gpu_session.sh quality|quality_herz|fixer|fixer_loop|nifi|nifi3|rescore_nifi3|nifi_budget|rescore_budget|speed|postfix|profile|groupnorm|gnsmall|fusedconv|cudnnconv|groupnorm_ab|kernels|fastpath|b1refs|constants|upsample|upsample_ab|fastrefs|refenc|steady|unetattn|tuning|inductor|rounds|restorer|parallel}
: "${OUT:?OUT must name the output folder (the device tool sets it)}"

# The checkout comes first: a warm machine may still hold an older copy of the package in /tmp/site.
export PYTHONPATH=$PWD:${PYTHONPATH:-} HF_HUB_OFFLINE=1
# The metric code reads backbones from $DIFIX_NS_CACHE/backbones; stage the AlexNet weights .device ships there
# (without them LPIPS-alex, and with it the quality benchmark, cannot start).
export DIFIX_NS_CACHE=$PWD/.device/cache
mkdir -p "$DIFIX_NS_CACHE/backbones"
if [ -f .device/alexnet_imagenet_features.pth ]; then
  cp -n .device/alexnet_imagenet_features.pth "$DIFIX_NS_CACHE/backbones/"
fi
for f in .device/vgg16_imagenet_features.pth .device/dists_vgg16_features.pth; do
  [ -f "$f" ] && cp -n "$f" "$DIFIX_NS_CACHE/backbones/"
done
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true

logged() {  # logged FILE CMD...: CMD's stdout and stderr into FILE
  local log=$1
  shift
  "$@" >"$log" 2>&1
}

rescore_renders_of() {  # rescore_renders_of RUN: LPIPS-vgg / DISTS of the renders job RUN saved here, one tar
  local run=$1
  test -d "/tmp/${run}_renders" || { echo "error: run the $run job on this machine first" >&2; exit 2; }
  rm -rf "/tmp/${run}_rescored" && mkdir -p "/tmp/${run}_rescored"
  for scene in fox castle herz; do
    python scripts/rescore_renders.py --json /tmp/$run/$scene/bench_nifi_splatfacto.json \
      --renders /tmp/${run}_renders/$scene --device cuda --out "/tmp/${run}_rescored/${run}_${scene}_rescored.json" || true
  done
  tar czf "$OUT/${run}_rescored.tar.gz" -C /tmp "${run}_rescored"
}

case "$job" in
  quality)
    timeout "${JOB_SECONDS:-480}" python scripts/bench_difix3d_quality.py \
      --data .device/data/fox .device/data/strecha/castle-P30 .device/data/strecha/Herz-Jesus-P25 \
      --downscale-factor 2 1 1 --train-every 5 3 3 --steps 3000 2000 2000 \
      --ablate 'identity_nodensify=identity --pipeline.model.densify-from-pool-views False' \
      --ablate 'teacher_strong=teacher --pipeline.datamanager.pool-sample-prob 0.5 --pipeline.pool-loss-weight 1.0 --pipeline.train-loss-weight 1.0' \
      --out "$OUT/difix3d_quality"
    ;;
  quality_herz)
    timeout "${JOB_SECONDS:-480}" python scripts/bench_difix3d_quality.py --data .device/data/strecha/Herz-Jesus-P25 \
      --downscale-factor 1 --train-every 3 --steps 2000 \
      --variants baseline dense_teacher degraded_teacher identity teacher --out "$OUT/difix3d_quality_herz"
    ;;
  fixer)
    # Pairs take ~220 s; the rest of the budget trains. --work keeps the pairs and the fixer's checkpoint: a second
    # call on a warm machine resumes and trains up to 380 s more.
    python scripts/gpu_train_fixer_demo.py --out "$OUT" --budget-s ${JOB_SECONDS:-480} \
      --train-seconds ${FIXER_TRAIN_S:-380} --work /tmp/fixer_demo_work
    ;;
  fixer_loop)
    # The fixer of a `fixer` call on this machine as one more variant of the loop benchmark (fox x2, as in `quality`).
    test -f /tmp/fixer_demo_work/fixer/model/model_index.json || { echo "error: run the fixer job on this machine first" >&2; exit 2; }
    timeout "${JOB_SECONDS:-480}" python scripts/bench_difix3d_quality.py --data .device/data/fox --downscale-factor 2 \
      --train-every 5 --steps 3000 --variants baseline identity --fixer-model /tmp/fixer_demo_work/fixer/model \
      --out "$OUT/difix3d_quality_fixer"
    ;;
  nifi)
    timeout "${JOB_SECONDS:-420}" python scripts/bench_nifi_splatfacto.py --data .device/data/fox --downscale-factor 2 \
      --max-num-iterations 7000 --finetune-steps 1000 --budget-steps 2000 --deadline-s ${NIFI_DEADLINE_S:-300} \
      --out "$OUT/nifi" --work-dir /tmp/nifi_runs
    ;;
  nifi3)
    # one splatfacto run leaves most of the GPU idle: three at once. Budget-trained rows start only before --deadline-s.
    # Results and logs are packed into $OUT/nifi3.tar.gz (the device tool returns at most 8 files).
    rm -rf /tmp/nifi3 && mkdir -p /tmp/nifi3
    logged /tmp/nifi3/fox.log timeout "${JOB_SECONDS:-420}" python scripts/bench_nifi_splatfacto.py \
      --data .device/data/fox --downscale-factor 2 --max-num-iterations ${FOX_STEPS:-7000} --finetune-steps 1000 --budget-steps 2000 \
      --deadline-s ${NIFI_DEADLINE_S:-300} --out /tmp/nifi3/fox --save-renders /tmp/nifi3_renders/fox --work-dir /tmp/nifi_runs &
    logged /tmp/nifi3/castle.log timeout "${JOB_SECONDS:-420}" python scripts/bench_nifi_splatfacto.py \
      --data .device/data/strecha/castle-P30 --downscale-factor 1 --max-num-iterations ${STRECHA_STEPS:-4000} --finetune-steps 1000 \
      --budget-steps 2000 --deadline-s ${NIFI_DEADLINE_S:-300} --out /tmp/nifi3/castle --save-renders /tmp/nifi3_renders/castle --work-dir /tmp/nifi_castle &
    logged /tmp/nifi3/herz.log timeout "${JOB_SECONDS:-420}" python scripts/bench_nifi_splatfacto.py \
      --data .device/data/strecha/Herz-Jesus-P25 --downscale-factor 1 --max-num-iterations ${STRECHA_STEPS:-4000} --finetune-steps 1000 \
      --budget-steps 2000 --deadline-s ${NIFI_DEADLINE_S:-300} --out /tmp/nifi3/herz --save-renders /tmp/nifi3_renders/herz --work-dir /tmp/nifi_herz &
    wait
    tail -n 3 /tmp/nifi3/*.log || true
    tar czf "$OUT/nifi3.tar.gz" -C /tmp nifi3
    # a few of fox's renders for a look (the device tool returns files up to 16 MiB)
    tar cf /tmp/nifi3_fox_renders.tar -C /tmp/nifi3_renders/fox photos uncompressed nifi__rate_1.0 \
      png_all_finetuned__rate_0.1 || true
    if [ "$(stat -c %s /tmp/nifi3_fox_renders.tar 2>/dev/null || echo 0)" -lt 16000000 ]; then
      mv /tmp/nifi3_fox_renders.tar "$OUT/" || true
    fi
    ;;
  rescore_nifi3)
    # LPIPS-vgg / DISTS of a `nifi3` call's renders, on the same (warm) machine once .device carries VGG16 weights
    # (a cold machine's carry is full with the wheels). Writes the three nifi3_<scene>_rescored.json into
    # $OUT/nifi3_rescored.tar.gz: one file, so that a job run after it in the same call keeps its own files (the device
    # tool returns at most 8).
    rescore_renders_of nifi3
    ;;
  nifi_budget)
    # The png_budget_trained rows nifi3 never reached (its calls ran past --deadline-s first): stock splatfacto capped at
    # each png_same_gaussians budget of the committed nifi3 JSONs, three scenes at once, nothing else trained. Each JSON
    # is saved after every row; a budget not started by --deadline-s is named under `errors`. JSONs, plots and logs go
    # into $OUT/nifi_budget.tar.gz (one file: the device tool returns at most 8); renders stay on the machine in
    # /tmp/nifi_budget_renders (fox's also come back as $OUT/nifi_budget_fox_renders.tar).
    rm -rf /tmp/nifi_budget /tmp/nifi_budget_renders /tmp/nifi_budget_runs && mkdir -p /tmp/nifi_budget
    logged /tmp/nifi_budget/fox.log timeout "${JOB_SECONDS:-420}" python scripts/bench_nifi_splatfacto.py \
      --data .device/data/fox --downscale-factor 2 \
      --budgets-from docs/gpu_results/bench_nifi_splatfacto_h100_nifi3_fox.json \
      --budget-steps ${FOX_STEPS:-7000} --deadline-s ${NIFI_DEADLINE_S:-300} --out /tmp/nifi_budget/fox \
      --save-renders /tmp/nifi_budget_renders/fox --work-dir /tmp/nifi_budget_runs/fox &
    logged /tmp/nifi_budget/castle.log timeout "${JOB_SECONDS:-420}" python scripts/bench_nifi_splatfacto.py \
      --data .device/data/strecha/castle-P30 --downscale-factor 1 \
      --budgets-from docs/gpu_results/bench_nifi_splatfacto_h100_nifi3_castle.json \
      --budget-steps ${STRECHA_STEPS:-4000} --deadline-s ${NIFI_DEADLINE_S:-300} --out /tmp/nifi_budget/castle \
      --save-renders /tmp/nifi_budget_renders/castle --work-dir /tmp/nifi_budget_runs/castle &
    logged /tmp/nifi_budget/herz.log timeout "${JOB_SECONDS:-420}" python scripts/bench_nifi_splatfacto.py \
      --data .device/data/strecha/Herz-Jesus-P25 --downscale-factor 1 \
      --budgets-from docs/gpu_results/bench_nifi_splatfacto_h100_nifi3_herz.json \
      --budget-steps ${STRECHA_STEPS:-4000} --deadline-s ${NIFI_DEADLINE_S:-300} --out /tmp/nifi_budget/herz \
      --save-renders /tmp/nifi_budget_renders/herz --work-dir /tmp/nifi_budget_runs/herz &
    wait
    tail -n 3 /tmp/nifi_budget/*.log || true
    tar czf "$OUT/nifi_budget.tar.gz" -C /tmp nifi_budget
    # fox's scored renders (PNG, ~12 MB) come back too, for LPIPS-vgg / DISTS on any machine with the VGG16 weights
    tar cf "$OUT/nifi_budget_fox_renders.tar" -C /tmp/nifi_budget_renders fox || true
    ;;
  speed)
    # Post-fix fps first: in both 2026-12-05 runs it came last and its timeout ran out while compiling the first shape.
    # Batch 8 only (each new shape compiles for ~130 s on a fresh machine); bench_difix.py's batch-8 row then loads
    # that shape from the shared compile cache.
    deadline=${JOB_DEADLINE:-$(( $(date +%s) + 560 ))}  # epoch seconds by which both benchmarks must end
    timeout 230 python scripts/bench_postfix_render.py --data .device/data/fox --sizes real --batch-sizes 8 \
      --compile-cache-dir /tmp/difix_compile_cache --out "$OUT/bench_postfix_render.json" || true
    left=$(( deadline - $(date +%s) ))
    timeout "$left" python scripts/bench_difix.py --out "$OUT/bench_difix.json" \
      --compile-cache-dir /tmp/difix_compile_cache --budget-s 240 || true
    ;;
  rescore_budget)
    # LPIPS-vgg / DISTS of a `nifi_budget` call's renders (same warm machine, VGG16 weights carried as for
    # rescore_nifi3); one tar, $OUT/nifi_budget_rescored.tar.gz
    rescore_renders_of nifi_budget
    ;;
  refenc)
    deadline=${JOB_DEADLINE:-$(( $(date +%s) + 560 ))}
    timeout 150 python scripts/bench_reference_encoding.py --out "$OUT/bench_reference_encoding.json" \
      --compile-cache-dir /tmp/difix_compile_cache || true
    left=$(( deadline - $(date +%s) ))
    timeout "$left" python scripts/bench_postfix_render.py --data .device/data/fox --sizes real --batch-sizes 8 \
      --compile-cache-dir /tmp/difix_compile_cache --out "$OUT/bench_postfix_render.json" || true
    ;;
  steady)
    timeout "${JOB_SECONDS:-560}" python scripts/bench_postfix_render.py --data .device/data/fox --sizes real \
      --batch-sizes ${STEADY_BATCHES:-8 1} --frames "${STEADY_FRAMES:-64}" --checkpoints ${STEADY_CHECKPOINTS:-difix_ref} \
      --profile-dir "$OUT" --compile-cache-dir /tmp/difix_compile_cache --out "$OUT/bench_postfix_render.json" || true
    ;;
  unetattn)
    # the UNet's self-attention alone, per SDPA kernel, with and without a reference view (a minute)
    timeout "${JOB_SECONDS:-150}" python scripts/bench_unet_attention.py --out "$OUT/bench_unet_attention.json" || true
    ;;
  tuning)
    deadline=${JOB_DEADLINE:-$(( $(date +%s) + 560 ))}
    timeout 200 python scripts/bench_difix.py --out "$OUT/bench_difix_default.json" --no-anchor --no-eager \
      --batches ${TUNING_BATCHES:-8} --refs ${TUNING_REFS:-0} --compile-cache-dir /tmp/difix_compile_cache --budget-s 60 || true
    left=$(( deadline - $(date +%s) ))
    tuned=${TUNING_NAME:-coordinate_descent}
    env ${TUNING_ENV:-TORCHINDUCTOR_COORDINATE_DESCENT_TUNING=1} timeout "$left" python scripts/bench_difix.py \
      --out "$OUT/bench_difix_$tuned.json" --no-anchor --no-eager --batches ${TUNING_BATCHES:-8} \
      --refs ${TUNING_REFS:-0} --compile-cache-dir "/tmp/difix_compile_cache_$tuned" --budget-s 60 || true
    ;;
  inductor)
    deadline=${JOB_DEADLINE:-$(( $(date +%s) + 560 ))}
    timeout 240 python scripts/bench_difix.py --out "$OUT/bench_difix_b1v1_default.json" --no-anchor --no-eager \
      --batches 1 --refs 1 --no-graphs-ablation --iters 30 --budget-s 220 \
      --compile-cache-dir /tmp/difix_compile_cache_default || true
    for setting in ${INDUCTOR_SETTINGS:-combo_kernels=True aggressive_fusion=True}; do
      left=$(( deadline - $(date +%s) ))
      [ "$left" -gt 60 ] || break
      timeout "$left" python scripts/bench_difix.py --out "$OUT/bench_difix_b1v1_${setting%%=*}.json" --no-anchor \
        --no-eager --batches 1 --refs 1 --no-graphs-ablation --iters 30 --budget-s 220 \
        --compile-cache-dir "/tmp/difix_compile_cache_${setting%%=*}" --inductor "$setting" || true
    done
    ;;
  postfix)
    # post-fix fps inside ns-render alone, with the whole call: batch 8, then batch 1 (each shape compiles once, ~2 min
    # on a fresh machine; the JSON is rewritten after every row, so a cut run keeps what it measured); the hook's
    # render + fix is timed with and without working one batch ahead (DifixRenderHook.work_ahead). Needs fox's
    # images_4: the scene is a 300-step quarter-resolution splatfacto run trained first
    timeout "${JOB_SECONDS:-540}" python scripts/bench_postfix_render.py --data .device/data/fox --sizes real \
      --batch-sizes 8 1 --compile-cache-dir /tmp/difix_compile_cache --out "$OUT/bench_postfix_render.json" || true
    ;;
  profile)
    # where the fast path's ~40 ms/frame go (per stage and kernel class; eager and compiled, batch 8, about 3.5 min with
    # a cold compile cache), then the fast path's cached-reference row at batch 1 until JOB_DEADLINE
    deadline=${JOB_DEADLINE:-$(( $(date +%s) + 560 ))}
    timeout 330 python scripts/profile_difix.py --out "$OUT/profile_difix.json" --compile-cache-dir /tmp/difix_compile_cache \
      --trace-dir "$OUT" || true
    left=$(( deadline - $(date +%s) ))
    timeout "$left" python scripts/bench_difix.py --out "$OUT/bench_difix_refs.json" --no-anchor --no-eager --refs 1 \
      --batches 1 --compile-cache-dir /tmp/difix_compile_cache --budget-s 200 || true
    ;;
  groupnorm)
    # GroupNorm + SiLU at the VAE decoder's shapes, batch 8, bf16: F.group_norm eager / compiled against the
    # per-channel-statistics formulation compiled (difix_ns/fixers/group_norm.py); each variant compiles in seconds
    timeout "${JOB_SECONDS:-300}" python scripts/bench_groupnorm.py --out "$OUT/bench_groupnorm.json" \
      --compile-cache-dir /tmp/difix_compile_cache || true
    ;;
  gnsmall)
    timeout "${JOB_SECONDS:-150}" python scripts/bench_groupnorm.py --batch 2 --cuda-graphs \
      --shapes 320x72x128 640x36x64 1280x18x32 1280x9x16 --out "$OUT/bench_groupnorm_unet_b2_graphs.json" \
      --compile-cache-dir /tmp/difix_compile_cache || true
    timeout "${JOB_SECONDS:-150}" python scripts/bench_groupnorm.py --batch 1 --cuda-graphs \
      --shapes 512x72x128 512x144x256 256x288x512 128x576x1024 --out "$OUT/bench_groupnorm_vae_b1_graphs.json" \
      --compile-cache-dir /tmp/difix_compile_cache || true
    ;;
  fusedconv)
    timeout "${JOB_SECONDS:-300}" python scripts/bench_fused_conv.py --out "$OUT/bench_fused_conv.json" \
      --compile-cache-dir /tmp/difix_compile_cache || true
    ;;
  cudnnconv)
    # NVIDIA's cuDNN frontend travels in .device/kernels (prepare_device_extras.sh); its bindings load the libcudnn
    # PyTorch ships: point the loader at it
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .device/kernels/*.whl 2>/dev/null || true
    cudnn_lib=$(python3 -c "import os, nvidia.cudnn as m; print(os.path.join(list(m.__path__)[0], 'lib'))" 2>/dev/null || true)
    export LD_LIBRARY_PATH=${cudnn_lib}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    timeout "${JOB_SECONDS:-420}" python scripts/bench_cudnn_conv.py --out "$OUT/bench_cudnn_conv.json" \
      --compile-cache-dir /tmp/difix_compile_cache ${CUDNN_CONV_ARGS:-} || true
    ;;
  groupnorm_ab)
    # GroupNorm formulations alone (decoder and UNet shapes), then the compiled batch-8 step profiled with
    # compiled_group_norm="channel_sums" and with "channel_stats" (same machine: the A/B), each compiling ~100 s
    deadline=${JOB_DEADLINE:-$(( $(date +%s) + 440 ))}
    timeout 100 python scripts/bench_groupnorm.py --out "$OUT/bench_groupnorm.json" \
      --shapes 512x72x128 512x144x256 256x288x512 128x576x1024 320x72x128 1280x18x32 \
      --compile-cache-dir /tmp/difix_compile_cache || true
    left=$(( deadline - $(date +%s) ))
    timeout "$left" python scripts/profile_difix.py --modes compiled --group-norm channel_sums \
      --out "$OUT/profile_difix_channel_sums.json" --compile-cache-dir /tmp/difix_compile_cache --budget-s 30 || true
    left=$(( deadline - $(date +%s) ))
    [ "$left" -gt 60 ] && timeout "$left" python scripts/profile_difix.py --modes compiled --group-norm channel_stats \
      --out "$OUT/profile_difix_channel_stats.json" --compile-cache-dir /tmp/difix_compile_cache --budget-s 30 || true
    ;;
  kernels)
    # the fast path's own kernels (GroupNorm from per-channel statistics, Triton or torch.var_mean; the VAE attention
    # as two GEMMs) measured alone at the decoder's shapes, then the whole compiled step profiled with the defaults
    deadline=${JOB_DEADLINE:-$(( $(date +%s) + 560 ))}
    timeout 170 python scripts/bench_groupnorm.py --out "$OUT/bench_groupnorm.json" \
      --compile-cache-dir /tmp/difix_compile_cache || true
    timeout 80 python scripts/bench_wide_attention.py --out "$OUT/bench_wide_attention.json" \
      --compile-cache-dir /tmp/difix_compile_cache || true
    left=$(( deadline - $(date +%s) ))
    timeout "$left" python scripts/profile_difix.py --modes compiled --out "$OUT/profile_difix_kernels.json" \
      --compile-cache-dir /tmp/difix_compile_cache --budget-s 60 || true
    ;;
  fastpath)
    # the bench_difix.py table (anchor, eager, fast path with its default kernels) in one run, then the profile of
    # the compiled step; each fast-path shape compiles once (about a minute on a fresh machine)
    deadline=${JOB_DEADLINE:-$(( $(date +%s) + 560 ))}
    left=$(( deadline - $(date +%s) ))
    BENCH_BUDGET_S=$(( left - 200 ))  # the last fast-path shape (~100 s to compile) and the probes must fit after it
    timeout $(( left - 100 )) python scripts/bench_difix.py --out "$OUT/bench_difix.json" \
      --compile-cache-dir /tmp/difix_compile_cache --budget-s "${BENCH_BUDGET_S:-300}" || true
    left=$(( deadline - $(date +%s) ))
    timeout "$left" python scripts/profile_difix.py --modes compiled --out "$OUT/profile_difix.json" \
      --compile-cache-dir /tmp/difix_compile_cache --budget-s 30 || true
    ;;
  b1refs)
    deadline=${JOB_DEADLINE:-$(( $(date +%s) + 560 ))}
    left=$(( deadline - $(date +%s) ))
    BENCH_BUDGET_S=$(( left - 190 ))  # the last fast-path shape (~90 s to compile) and the probes must fit after it
    timeout $(( left - 90 )) python scripts/bench_difix.py --eager-dtypes bfloat16 --out "$OUT/bench_difix.json" \
      --compile-cache-dir /tmp/difix_compile_cache --budget-s "${BENCH_BUDGET_S:-300}" || true
    left=$(( deadline - $(date +%s) ))
    timeout "$left" python scripts/profile_difix.py --modes compiled --batch 1 --refs 1 \
      --out "$OUT/profile_difix_b1_v1.json" --compile-cache-dir /tmp/difix_compile_cache --budget-s 30 || true
    ;;
  constants)
    deadline=${JOB_DEADLINE:-$(( $(date +%s) + 560 ))}
    kinds=${CONSTANTS:-inputs folded}
    kind=${kinds##* }  # the kind profiled at the end
    for i in $(seq "${CONSTANTS_REPEATS:-2}"); do
      for kind in $kinds; do
        left=$(( deadline - $(date +%s) ))
        if [ "$left" -lt 60 ]; then break 2; fi
        timeout "$left" python scripts/bench_difix.py --no-anchor --no-eager --batches 1 --refs 1 --no-graphs-ablation \
          --iters 30 --constants "${kind:-inputs}" --compile-cache-dir "/tmp/difix_compile_cache_$kind" --budget-s 200 \
          --out "$OUT/bench_difix_b1v1_${kind}_$i.json" || true
      done
    done
    left=$(( deadline - $(date +%s) ))
    if [ "$left" -gt 60 ]; then
      timeout "$left" python scripts/profile_difix.py --modes compiled --batch 1 --refs 1 --constants "${kind:-folded}" \
        --out "$OUT/profile_difix_b1_v1_$kind.json" --compile-cache-dir "/tmp/difix_compile_cache_$kind" \
        --budget-s 30 || true
    fi
    ;;
  upsample)
    deadline=${JOB_DEADLINE:-$(( $(date +%s) + 560 ))}
    timeout 120 python scripts/bench_upsample_conv.py --out "$OUT/bench_upsample_conv.json" \
      --compile-cache-dir /tmp/difix_compile_cache || true
    left=$(( deadline - $(date +%s) ))
    BENCH_BUDGET_S=$(( left - 120 ))  # a fast-path shape starting later could not compile (~100 s) before the deadline
    timeout "$left" python scripts/bench_difix.py --out "$OUT/bench_difix.json" --refs 0 \
      --compile-cache-dir /tmp/difix_compile_cache --budget-s "${BENCH_BUDGET_S:-300}" || true
    ;;
  upsample_ab)
    # the transposed-convolution upsampling alone at the decoder's shapes, then the compiled step profiled (batch 8,
    # with and without CUDA graphs) with it and with the stock pair, on the same machine (each compiles ~100 s cold),
    # then the fast path's batch-1 row with it until JOB_DEADLINE
    deadline=${JOB_DEADLINE:-$(( $(date +%s) + 560 ))}
    timeout 100 python scripts/bench_upsample_conv.py --out "$OUT/bench_upsample_conv.json" \
      --compile-cache-dir /tmp/difix_compile_cache || true
    timeout 170 python scripts/profile_difix.py --modes compiled --upsample phases \
      --out "$OUT/profile_difix_phases.json" --compile-cache-dir /tmp/difix_compile_cache --budget-s 60 || true
    timeout 170 python scripts/profile_difix.py --modes compiled --upsample stock \
      --out "$OUT/profile_difix_stock.json" --compile-cache-dir /tmp/difix_compile_cache --budget-s 60 || true
    left=$(( deadline - $(date +%s) ))
    timeout "$left" python scripts/bench_difix.py --out "$OUT/bench_difix_b1.json" --refs 0 --batches 1 --no-anchor \
      --no-eager --compile-cache-dir /tmp/difix_compile_cache --budget-s 30 || true
    ;;
  fastrefs)
    deadline=${JOB_DEADLINE:-$(( $(date +%s) + 560 ))}
    left=$(( deadline - $(date +%s) ))
    BENCH_BUDGET_S=$(( left - 230 ))  # room for the stock-upsampling shape after it
    timeout "$left" python scripts/bench_difix.py --out "$OUT/bench_difix_refs.json" --refs 1 --no-anchor \
      --eager-dtypes bfloat16 --compile-cache-dir /tmp/difix_compile_cache --budget-s "${BENCH_BUDGET_S:-300}" || true
    left=$(( deadline - $(date +%s) ))
    timeout "$left" python scripts/bench_difix.py --out "$OUT/bench_difix_stock_upsample.json" --refs 0 --batches 8 \
      --no-anchor --no-eager --upsample stock --compile-cache-dir /tmp/difix_compile_cache --budget-s 30 || true
    ;;
  rounds)
    # ROUNDS_REPEATS=3: splatfacto and difix3d-splatfacto alternately three times, median ratio (~75 s a pair, warm);
    # ROUNDS_ARGS: more flags (e.g. --ablate-prepare-fixer: each repeat also loads the fixer at the first round)
    timeout "${JOB_SECONDS:-240}" python scripts/gpu_difix3d_splatfacto.py --data .device/data/fox --downscale-factor 2 \
      --skip-tiny --repeats ${ROUNDS_REPEATS:-1} ${ROUNDS_ARGS:-} --out "$OUT/gpu_difix3d_splatfacto.json"
    ;;
  restorer)
    # every scene's pairs at once; a training scene not built by half the budget is left out
    python scripts/gpu_train_restorer_demo.py --out "$OUT" --budget-s ${JOB_SECONDS:-480} --concurrent-pairs \
      --pairs-fraction 0.5
    ;;
  parallel)
    # Several jobs above at once, each through its own branch (same flags), with budgets scaled to the time left.
    deadline=${BATCH_DEADLINE:-$(( $(date +%s) + 440 ))}
    left=$(( deadline - $(date +%s) - 20 ))
    [ "$left" -gt 120 ] || { echo "error: only ${left}s left before BATCH_DEADLINE" >&2; exit 2; }
    jobs=${PARALLEL_JOBS:-quality nifi restorer fixer}
    echo "parallel: ${left}s for $jobs"
    for j in $jobs; do
      mkdir -p "/tmp/gpu_out/$j"
      (OUT=/tmp/gpu_out/$j JOB_SECONDS=$left NIFI_DEADLINE_S=$(( left - 150 )) FIXER_TRAIN_S=$(( left > 360 ? left - 300 : 60 )) \
        OMP_NUM_THREADS=4 timeout $(( left + 10 )) bash "$0" "$j" >"/tmp/gpu_out/$j/log.txt" 2>&1 \
        && echo "rc 0" >>"/tmp/gpu_out/$j/log.txt" || echo "rc $?" >>"/tmp/gpu_out/$j/log.txt") &
    done
    wait
    for j in $jobs; do
      tar czf "$OUT/$j.tar.gz" --exclude='*.tar' -C /tmp/gpu_out "$j"
      tail -4 "/tmp/gpu_out/$j/log.txt"
    done
    ls -la "$OUT"
    ;;
  *)
    echo "error: unknown job '$job' (quality, quality_herz, fixer, fixer_loop, nifi, nifi3, rescore_nifi3, nifi_budget, speed, postfix, profile, rounds, restorer, parallel)" >&2
    exit 2
    ;;
esac
