"""``edgerec bench``: latency per hardware target, quality vs size, comparisons.

Latency code here imports only numpy, onnxruntime and the runtime (torch, matplotlib and
threadpoolctl are used when installed); ``quality`` needs the training extra. The method
and the result file format are described in ``docs/benchmarks.md``.
"""
