"""Experiment: where compile time goes. Runs the given train_plm.py copy's train(argv) and prints torch's own
per-phase compile times (torch._dynamo.utils.compile_times) and the trainer's warm-up line.
python3 exp/compile_time.py FILE --preset reference --steps 1 --eval_every 0 --save_model false"""
import importlib.util, os, sys, time
import torch
path, argv = sys.argv[1], sys.argv[2:]
t0 = time.perf_counter()
spec = importlib.util.spec_from_file_location("train_plm", path)
tp = importlib.util.module_from_spec(spec)
sys.modules["train_plm"] = tp
spec.loader.exec_module(tp)
print(f"COMPILE import {time.perf_counter() - t0:.1f}s", flush=True)
tp.train(argv)
print("COMPILE_TIMES", flush=True)
print(torch._dynamo.utils.compile_times(repr="str"), flush=True)
