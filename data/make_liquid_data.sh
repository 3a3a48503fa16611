#!/usr/bin/env bash
# Condensed-phase water data: close-contact and H–O–H bend scans, then clusters cut from GFN2-xTB liquid
# boxes, labelled with B3LYP/aug-cc-pVDZ (PySCF, RI-JK) on one worker with one thread.
# Resumable: run it again and every command continues where it stopped (labelled structures are in
# data/<set>/parts/, the liquid boxes' MD snapshots in data/water_liquid_clusters/boxes/). Run
# from anywhere; in the background:
#   nohup bash data/make_liquid_data.sh > /dev/null 2>&1 &
set -u
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1

# A finished scan (data.xyz written) is not rerun: a rerun would only retry the structures whose
# PySCF SCF did not converge (data/*/failed.json), minutes each, to fail again. Run the command by
# hand to retry them.
if [ ! -f data/water_close_contacts/data.xyz ]; then
echo "=== started at $(date -u)" >> data/water_close_contacts.log
fpscf data close-contacts --out data/water_close_contacts --n 150 --seed 0 --method dft \
    --workers 1 --threads 1 --response-fraction 0.1 --max-response-atoms 6 \
    >> data/water_close_contacts.log 2>&1
echo "=== exit $? at $(date -u)" >> data/water_close_contacts.log
fi

# H–O–H bends (a liquid-MD failure: one molecule folded to 49°): monomers and dimers, minutes.
if [ ! -f data/water_bends/data.xyz ]; then
echo "=== started at $(date -u)" >> data/water_bends.log
fpscf data close-contacts --out data/water_bends --n 60 --seed 0 --method dft --scans bend \
    --workers 1 --threads 1 --response-fraction 0.1 --max-response-atoms 6 \
    >> data/water_bends.log 2>&1
echo "=== exit $? at $(date -u)" >> data/water_bends.log
fi

# One box (24 clusters) at a time: the first m clusters of a sample of n are those of a sample of
# m, so each stage reuses the boxes and labelled clusters of the previous ones and labels its new
# box before the next box's MD starts; the last stage is the whole data set (120 clusters).
for n in 24 48 72 96 120; do
    echo "=== n=$n started at $(date -u)" >> data/water_liquid_clusters.log
    fpscf data liquid --out data/water_liquid_clusters --n "$n" --seed 0 --method dft \
        --workers 1 --threads 1 \
        >> data/water_liquid_clusters.log 2>&1
    echo "=== n=$n exit $? at $(date -u)" >> data/water_liquid_clusters.log
done
