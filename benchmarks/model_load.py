"""Model load times (GGUF de-quantisation vs the safetensors cache) and `papersuite --help` latency.

    python benchmarks/model_load.py [--repeats 3]

Both loads run interleaved in one process, after one warm-up each, at one torch thread count;
results land in benchmarks/results/foundation/model_load.{json,md}.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from papersuite import bench, models  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    bench.pin_threads(args.threads)
    src = models.resolve(models.DEFAULT_LLM)

    def gguf_first_load():
        # a fresh cache each time: exactly what the first `make demo` pays
        with tempfile.TemporaryDirectory() as d:
            os.environ["PAPERSUITE_CACHE"] = d
            models.load_causal_lm(src.name)
            del os.environ["PAPERSUITE_CACHE"]

    models.hf_folder(src)  # make sure the real cache exists for the cached contender

    def cached_load():
        models.load_causal_lm(src.name)

    loads = bench.interleaved({"gguf_first_load": gguf_first_load, "cached_load": cached_load},
                              repeats=args.repeats, warmup=1)
    exe = Path(sys.executable).parent / "papersuite"
    helps = bench.interleaved({"papersuite_help": lambda: subprocess.run([str(exe), "--help"], check=True,
                                                                       capture_output=True)},
                              repeats=7, warmup=1)
    speedup = bench.ratio(loads["gguf_first_load"], loads["cached_load"])
    rows = [t.as_dict() for t in (*loads.values(), *helps.values())]
    md = (f"# Model load (SmolLM2-135M-Instruct) and CLI start-up\n\n"
          f"{bench.markdown_table(rows, ['name', 'median_s', 'min_s', 'max_s', 'repeats'])}\n\n"
          f"cached load is **{speedup:.1f}x** faster than the first (GGUF) load; "
          f"`papersuite --help` median {helps['papersuite_help'].median:.3f} s. "
          f"load average {bench.environment()['loadavg_1m']}, {args.threads} torch threads.\n")
    bench.write_results("foundation", "model_load",
                        {"timings": rows, "cached_speedup": speedup,
                         "help_median_s": helps["papersuite_help"].median}, md)
    print(md)
    ok = speedup >= 3 and helps["papersuite_help"].median < 1.0
    print("goals (cached >= 3x, --help < 1 s):", "met" if ok else "NOT met")


if __name__ == "__main__":
    main()
