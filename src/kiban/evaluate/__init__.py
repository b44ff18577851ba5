"""`kiban eval`: open, reproducible Japanese benchmarks (tasks, backends, metrics, reports).

    tasks/ (local files in their published formats) ─▶ requests ─▶ backend (kiban | HF | OpenAI API)
        ─▶ per-item results ─▶ metrics ─▶ report.json + report.html

Import-light: nothing here imports torch at module import time.
"""
