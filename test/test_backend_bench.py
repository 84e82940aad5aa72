"""bench/backend_bench.py's bookkeeping (the benchmark itself runs the shipped weights and an
export, too heavy for the suite): interleaved timing, the table and the recommendation."""
from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import backend_bench  # noqa: E402


class Sleeper:
    def __init__(self, s: float):
        self.s, self.calls = s, 0

    def predict(self, *_):
        self.calls += 1
        time.sleep(self.s)


def test_interleaved_rounds_after_warmup():
    a, b = Sleeper(0.001), Sleeper(0.003)
    times = backend_bench.run_situation({"torch, 1 thread": (a, 1), "onnxruntime, 1 thread": (b, 1)},
                                        (None, None, None), iters=3, warmup=1)
    assert a.calls == b.calls == 4
    assert len(times["torch, 1 thread"]["wall"]) == 3
    assert min(times["onnxruntime, 1 thread"]["wall"]) >= 3


def test_the_mean_of_the_two_medians_decides():
    def r(q, lo):
        return {"quiet": {"wall": [q] * 3, "cpu": [q] * 3}, "loaded": {"wall": [lo] * 3, "cpu": [lo] * 3}}

    torch_, ort = r(400, 1600), r(500, 800)  # torch wins quiet, ONNX Runtime the mean
    results = {s: {"torch, 2 threads": torch_[s], "onnxruntime, 2 threads": ort[s]} for s in ("quiet", "loaded")}
    text = backend_bench.summary(results)
    assert "fastest on the median of the two situations: onnxruntime, 2 threads (650 ms)" in text
    assert text.endswith("backend auto")
    results["loaded"]["torch, 2 threads"] = torch_["quiet"]
    assert backend_bench.summary(results).endswith("backend torch")


def test_machine_busy_counts_cpu_seconds():
    before = backend_bench.machine_busy_s()
    t = time.process_time()
    while time.process_time() - t < 0.2:
        pass
    assert backend_bench.machine_busy_s() - before >= 0.1 or before == 0.0
