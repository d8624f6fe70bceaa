"""Vision-language grounding latency per query, on this machine.

    .venv/bin/python benchmarks/grounding_latency.py [--family qwen2-vl|qwen2.5-vl]
        [--size tiny|2b] [--device auto|cpu|cuda] [--queries 10] [--max-new-tokens 48]

A randomly initialised checkpoint (tuina.testing.write_random_checkpoint: a tiny one, or one of
Qwen2-VL-2B's real shapes, bf16 on CUDA) is written to a temporary folder, loaded through
the same code as the grounding node, and asked about a 640x480 camera image: the load time,
the first query, and the median and p90 of the rest. A random model never stops early, so
every answer is --max-new-tokens long; a fine-tuned model's box answer is ~20 tokens.
This is a measurement, not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from tuina.testing import write_random_checkpoint
from tuina.vlm import VLMGrounder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", choices=("qwen2-vl", "qwen2.5-vl"), default="qwen2-vl")
    parser.add_argument("--size", choices=("tiny", "2b"), default="tiny")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--queries", type=int, default=10)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--json", default=None, help="also write the numbers to this file")
    args = parser.parse_args()
    import torch

    with tempfile.TemporaryDirectory(prefix="tuina-vlm-") as tmp:
        start = time.perf_counter()
        folder = write_random_checkpoint(Path(tmp) / "ckpt", args.family, args.size)
        built_s = time.perf_counter() - start
        grounder = VLMGrounder(folder, device=args.device, max_new_tokens=args.max_new_tokens)
        start = time.perf_counter()
        grounder.load()
        load_s = time.perf_counter() - start
        image = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
        question = grounder.question("Zusanli", "ST36")
        times = []
        for _ in range(args.queries):
            if grounder.device_name.startswith("cuda"):
                torch.cuda.synchronize()
            start = time.perf_counter()
            answer = grounder.ask(image, question)
            if grounder.device_name.startswith("cuda"):
                torch.cuda.synchronize()
            times.append((time.perf_counter() - start) * 1e3)
    steady = times[1:] or times
    result = {
        "family": args.family, "size": args.size, "device": grounder.device_name,
        "device_name": (torch.cuda.get_device_name(0) if grounder.device_name.startswith("cuda")
                        else "cpu"),
        "dtype": str(next(grounder.model.parameters()).dtype),
        "parameters_m": round(sum(p.numel() for p in grounder.model.parameters()) / 1e6, 1),
        "input_wh": list(answer.input_wh), "new_tokens": args.max_new_tokens,
        "build_s": round(built_s, 1), "load_s": round(load_s, 1),
        "first_ms": round(times[0], 1), "steady_median_ms": round(statistics.median(steady), 1),
        "steady_p90_ms": round(float(np.percentile(steady, 90)), 1), "queries": len(times),
    }
    print(json.dumps(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
