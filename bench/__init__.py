"""judge_core bench: several systems on one workload, in one process, side by side.

The data's way through the bench is its layout:
  workloads.py  pairs (card-filtered from an items file, synthetic, or any pairs JSONL)
  models.py     which checkpoint (a path, a tiny random Qwen3.5, the 4B shape built on the GPU)
  systems.py    judge_core (each backend / dtype / weight format), the reference twin,
                plain_hf.py (a careful user's batched transformers loop), vllm_card.py (the card's code)
  cost.py       FLOPs per prompt from the config (DESIGN §5) and a matmul peak measured here
  metrics.py    speed, accuracy against the reference twin, the card's metrics
  sweeps.py     throughput against token budget and against prompt length
  report.py     JSON, a Markdown table, PNG plots
  gpu_run.py    the single GPU script (build 4B; cold, warm, new-shape, GPTQ, hf, parity rows) in < 8 minutes;
                gpu_steps.py its steps, gpu_rows.py its JSONL recorder and timed rows
Run `python -m bench --help`.
"""
