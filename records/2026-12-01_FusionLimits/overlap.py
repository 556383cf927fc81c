"""Experiment (issue 3): do weight-gradient products overlap with the backward's latency- and memory-bound kernels
when they run on a second CUDA stream? Pairs of one reference micro-batch's kernels (A: attention backward,
qkv_prep backward, attention forward, an element-wise pass; B: the bf16 weight-gradient products qkv (2,304 x 768)
and fc (1,536 x 768) over 65,536 tokens, fp32 out) timed back to back on one stream and at once on two streams
(CUDA events; median of 30 after 5 untimed), and whether B's bits depend on the stream.
python3 exp/overlap.py   (GPU)"""
import json, math, os, statistics, sys
import torch
sys.path.insert(0, os.getcwd())
import train_plm as tp


def out(tag, **kw):
    print(tag, json.dumps(kw), flush=True)


def timed(fn, reps=30, warm=5):
    ts = []
    for i in range(reps + warm):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize()
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        if i >= warm:
            ts.append(a.elapsed_time(b))
    return statistics.median(ts)


def main():
    dev = torch.device("cuda")
    torch.manual_seed(0)
    cfg = tp.parse_config(["--preset", "reference"], has_gpu=True)
    loader = tp.PackedLoader(tp.resolve_files(cfg.train_files, "train"), cfg, 0, 1, dev, 0)
    for _ in range(3):
        tokens, starts, g = loader.next()
    T, H, D = tokens.numel(), 6, 128
    doc, pos = tp.document_ids(starts)
    mask = tp.document_ranges(doc, pos, 0)
    ops = getattr(torch.ops, tp.OPS)
    q, k, v = (torch.randn(T, H, D, device=dev).bfloat16() for _ in range(3))
    o, lse = ops.doc_attention(q, k, v, *mask, 0)
    do = torch.randn_like(o)
    qkv = torch.randn(T, 3 * H * D, device=dev).bfloat16()
    table = torch.randn(33, H * D, device=dev).bfloat16()
    lam = torch.tensor([0.5, 0.5], device=dev)
    angles = pos[:, None].float() * (1.0 / 10000 ** (torch.arange(0, D, 2, device=dev).float() / D))[None]
    cos, sin = angles.cos(), angles.sin()
    x = torch.randn(T, H * D, device=dev).bfloat16()
    y = torch.randn(T, H * D, device=dev).bfloat16()
    gq = torch.randn(T, 3 * H * D, device=dev).bfloat16()
    gf = torch.randn(T, 1536, device=dev).bfloat16()
    A = {"attn_bwd": lambda: ops.doc_attention_backward(do, q, k, v, o, lse, *mask, 0),
         "qkv_prep_bwd": lambda: ops.qkv_prep_backward(q, k, v, qkv, tokens, table, lam, cos, sin, H),
         "attn_fwd": lambda: ops.doc_attention(q, k, v, *mask, 0),
         "elementwise": lambda: torch.add(x, y, alpha=0.5)}
    B = {"wgrad_qkv": lambda: tp.mm_out(gq.t(), x, torch.float32),
         "wgrad_fc": lambda: tp.mm_out(gf.t(), x, torch.float32)}
    ref = {n: f() for n, f in B.items()}
    side = torch.cuda.Stream()
    for an, af in A.items():
        ta = timed(af)
        for bn, bf in B.items():
            tb = timed(bf)
            serial = timed(lambda: (af(), bf()))
            got = {}

            def both():
                side.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(side):
                    got["b"] = bf()
                af()
                torch.cuda.current_stream().wait_stream(side)
            conc = timed(both)
            out("PAIR", a=an, b=bn, a_ms=round(ta, 4), b_ms=round(tb, 4), serial_ms=round(serial, 4),
                concurrent_ms=round(conc, 4), saved=round(1 - conc / serial, 4),
                same_bits=torch.equal(got["b"], ref[bn]))
    # a block's backward-like chain: attention backward + qkv_prep backward on one stream, both weight gradients
    # on the other
    chain = lambda: (A["attn_bwd"](), A["qkv_prep_bwd"]())
    grads = lambda: (B["wgrad_qkv"](), B["wgrad_fc"]())
    serial = timed(lambda: (chain(), grads()))

    def both():
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            grads()
        chain()
        torch.cuda.current_stream().wait_stream(side)
    conc = timed(both)
    out("CHAIN", serial_ms=round(serial, 4), concurrent_ms=round(conc, 4), saved=round(1 - conc / serial, 4))


if __name__ == "__main__":
    main()
