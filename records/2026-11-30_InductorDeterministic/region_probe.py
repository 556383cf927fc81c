"""Experiment (session 13): which part of a block breaks torch.compiler.nested_compile_region on torch 2.11
("KeyError: example_value" in dynamo's are_same_graph_modules). Traces forward + backward of the reference
model (real micro-batch, dynamo backend "eager": tracing only, no inductor) for each file given, with FP8 on
and off; on a KeyError prints the placeholders that lack example_value.
python3 exp/region_probe.py FILE... [-- TRAINER FLAGS]"""
import importlib.util, sys, time, traceback, torch
import torch._dynamo.variables.higher_order_ops as hop
_same = hop.are_same_graph_modules
def same(fn_name, a, b, fake_mode):
    for tag, g in (("previous", a), ("current", b)):
        for n in g.graph.nodes:
            if n.op == "placeholder" and "example_value" not in n.meta:
                print(f"REGION {fn_name}: {tag} placeholder {n.name} lacks example_value; meta keys {sorted(n.meta)}"
                      f" users {[str(u) for u in list(n.users)[:3]]}", flush=True)
    return _same(fn_name, a, b, fake_mode)
hop.are_same_graph_modules = same
files = sys.argv[1:sys.argv.index("--")] if "--" in sys.argv else sys.argv[1:]
extra = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else []
for path in files:
    for fp8 in ("true", "false"):
        spec = importlib.util.spec_from_file_location("train_plm", path)
        tp = importlib.util.module_from_spec(spec); sys.modules["train_plm"] = tp; spec.loader.exec_module(tp)
        torch._dynamo.reset()
        cfg = tp.parse_config(["--preset", "reference", "--fp8", fp8] + extra, has_gpu=True)
        loader = tp.PackedLoader(tp.resolve_files(cfg.train_files, "train"), cfg, 0, 1, torch.device("cuda"), 0)
        tokens, starts, gi = loader.next()
        model = tp.ProteinLM(cfg).cuda()
        cm = torch.compile(model, backend="eager", dynamic=False)
        t = time.perf_counter()
        try:
            with torch.autocast("cuda", torch.bfloat16):
                loss = cm(tokens, starts, tokens)
            loss.backward()
            print(f"REGION {path} fp8 {fp8}: ok, loss {float(loss):.4f}, {time.perf_counter() - t:.1f} s", flush=True)
        except Exception as e:
            print(f"REGION {path} fp8 {fp8}: {type(e).__name__}: {str(e).splitlines()[0][:200]}", flush=True)
            tb = traceback.extract_tb(e.__traceback__)
            print("REGION   user frames:", " <- ".join(f"{f.name}:{f.lineno}" for f in tb if "train_plm" in f.filename)[:400])
