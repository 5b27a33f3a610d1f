# Sourced by the book and test scripts: offline hub settings, caches, threads.
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
export HF_HUB_DISABLE_TELEMETRY=1 TOKENIZERS_PARALLELISM=false
export LINFT_CACHE=${LINFT_CACHE:-$HOME/.cache/linft}
export LINFT_THREADS=${LINFT_THREADS:-$(nproc)}
export LINFT_RESULTS_DIR=${LINFT_RESULTS_DIR:-$PWD/_build/results}
export PYDEVD_DISABLE_FILE_VALIDATION=1
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}  # threads yield when idle; steadier on shared cores
