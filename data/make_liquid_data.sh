#!/usr/bin/env bash
# Condensed-phase water data (issue J): close-contact scans, then clusters cut from GFN2-xTB liquid
# boxes, labelled with B3LYP/aug-cc-pVDZ (PySCF, RI-JK) on one worker with one thread.
# Resumable: run it again and both commands continue where they stopped (finished structures are
# in data/<set>/parts/). Run from anywhere; in the background:
#   nohup bash data/make_liquid_data.sh > /dev/null 2>&1 &
set -u
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1

echo "=== started at $(date -u)" >> data/water_close_contacts.log
fpscf data close-contacts --out data/water_close_contacts --n 150 --seed 0 --method dft \
    --workers 1 --threads 1 --response-fraction 0.1 --max-response-atoms 6 \
    >> data/water_close_contacts.log 2>&1
echo "=== exit $? at $(date -u)" >> data/water_close_contacts.log

echo "=== started at $(date -u)" >> data/water_liquid_clusters.log
fpscf data liquid --out data/water_liquid_clusters --n 120 --seed 0 --method dft \
    --workers 1 --threads 1 \
    >> data/water_liquid_clusters.log 2>&1
echo "=== exit $? at $(date -u)" >> data/water_liquid_clusters.log
