"""FP8 row-wise scaled products of the reference MLP / qkv shapes: cuBLAS (torch._scaled_mm, as train_plm.py) against
Triton persistent kernels (TMA descriptors), and the fc product with ReLU² + row amax fused into its epilogue.
python exp/bench_gemm.py  (CUDA; TRITON_INTERPRET=1 with --small runs a CPU check of the kernels' results)"""
import sys, time, json, itertools
import torch
import triton
import triton.language as tl

SMALL = "--small" in sys.argv
DEV = "cpu" if SMALL else "cuda"
E4M3 = 448.0


def alloc_fn(size, alignment, stream):
    return torch.empty(size, device=DEV, dtype=torch.int8)


triton.set_allocator(alloc_fn)


@triton.jit
def _pid(tile, n_in_group, num_pid_m, GROUP_M: tl.constexpr):
    group = tile // n_in_group
    first_m = group * GROUP_M
    size_m = min(num_pid_m - first_m, GROUP_M)
    return first_m + (tile % size_m), (tile % n_in_group) // size_m


@triton.jit
def fp8_mm_kernel(a_ptr, b_ptr, c_ptr, sa_ptr, sb_ptr, amax_ptr, M, N, K,
                  BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, GROUP_M: tl.constexpr, NUM_SMS: tl.constexpr,
                  WS: tl.constexpr, RELU2: tl.constexpr, SUBTILE: tl.constexpr):
    """c (M, N) bf16 = (a (M, K) e4m3 @ b (N, K).T e4m3) * sa (M,) [:, None] * sb (N,) [None, :]; RELU2: c = relu(.)²
    and amax (M,) float32 gets each row's max of c (atomic max: order-free)."""
    start = tl.program_id(0)
    num_pid_m = tl.cdiv(M, BM)
    num_pid_n = tl.cdiv(N, BN)
    k_tiles = tl.cdiv(K, BK)
    num_tiles = num_pid_m * num_pid_n
    a_desc = tl.make_tensor_descriptor(a_ptr, shape=[M, K], strides=[K, 1], block_shape=[BM, BK])
    b_desc = tl.make_tensor_descriptor(b_ptr, shape=[N, K], strides=[K, 1], block_shape=[BN, BK])
    CN: tl.constexpr = BN // 2 if SUBTILE else BN
    c_desc = tl.make_tensor_descriptor(c_ptr, shape=[M, N], strides=[N, 1], block_shape=[BM, CN])
    n_in_group = GROUP_M * num_pid_n
    for tile in tl.range(start, num_tiles, NUM_SMS, flatten=True, warp_specialize=WS):
        pid_m, pid_n = _pid(tile, n_in_group, num_pid_m, GROUP_M)
        om = pid_m * BM
        on = pid_n * BN
        acc = tl.zeros((BM, BN), dtype=tl.float32)
        for ki in range(k_tiles):
            a = a_desc.load([om, ki * BK])
            b = b_desc.load([on, ki * BK])
            acc = tl.dot(a, b.T, acc)
        rows = om + tl.arange(0, BM)
        cols = on + tl.arange(0, BN)
        acc = acc * tl.load(sa_ptr + rows)[:, None] * tl.load(sb_ptr + cols)[None, :]
        if RELU2:
            acc = tl.maximum(acc, 0.0)
            acc = acc * acc
        c = acc.to(tl.bfloat16)
        if RELU2:
            tl.atomic_max(amax_ptr + rows, tl.max(c.to(tl.float32), 1))
        if SUBTILE:
            c0, c1 = tl.split(tl.permute(tl.reshape(c, (BM, 2, BN // 2)), (0, 2, 1)))
            c_desc.store([om, on], c0)
            c_desc.store([om, on + BN // 2], c1)
        else:
            c_desc.store([om, on], c)


@triton.jit
def fp8_mm_plain(a_ptr, b_ptr, c_ptr, sa_ptr, sb_ptr, M, N, K,
                 BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, GROUP_M: tl.constexpr):
    """The same product, one program per tile, pointer loads (no TMA)."""
    pid = tl.program_id(0)
    num_pid_m = tl.cdiv(M, BM)
    num_pid_n = tl.cdiv(N, BN)
    pid_m, pid_n = _pid(pid, GROUP_M * num_pid_n, num_pid_m, GROUP_M)
    rows = pid_m * BM + tl.arange(0, BM)
    cols = pid_n * BN + tl.arange(0, BN)
    ks = tl.arange(0, BK)
    acc = tl.zeros((BM, BN), dtype=tl.float32)
    for k in range(0, K, BK):
        a = tl.load(a_ptr + rows[:, None] * K + (k + ks)[None, :])
        b = tl.load(b_ptr + cols[:, None] * K + (k + ks)[None, :])
        acc = tl.dot(a, b.T, acc)
    acc = acc * tl.load(sa_ptr + rows)[:, None] * tl.load(sb_ptr + cols)[None, :]
    tl.store(c_ptr + rows[:, None] * N + cols[None, :], acc.to(tl.bfloat16))


@triton.jit
def fp8_mm_quant_a(a_ptr, amax_ptr, b_ptr, c_ptr, sb_ptr, M, N, K,
                   BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, GROUP_M: tl.constexpr, NUM_SMS: tl.constexpr,
                   WS: tl.constexpr):
    """c (M, N) bf16 = fp8(a (M, K) bf16 / (amax / 448) per row) @ b (N, K).T e4m3 * amax / 448 * sb: a's cast to
    e4m3 inside the product (prologue), no cast pass."""
    start = tl.program_id(0)
    num_pid_m = tl.cdiv(M, BM)
    num_pid_n = tl.cdiv(N, BN)
    k_tiles = tl.cdiv(K, BK)
    num_tiles = num_pid_m * num_pid_n
    a_desc = tl.make_tensor_descriptor(a_ptr, shape=[M, K], strides=[K, 1], block_shape=[BM, BK])
    b_desc = tl.make_tensor_descriptor(b_ptr, shape=[N, K], strides=[K, 1], block_shape=[BN, BK])
    c_desc = tl.make_tensor_descriptor(c_ptr, shape=[M, N], strides=[N, 1], block_shape=[BM, BN])
    n_in_group = GROUP_M * num_pid_n
    for tile in tl.range(start, num_tiles, NUM_SMS, flatten=True, warp_specialize=WS):
        pid_m, pid_n = _pid(tile, n_in_group, num_pid_m, GROUP_M)
        om = pid_m * BM
        on = pid_n * BN
        rows = om + tl.arange(0, BM)
        sa = tl.maximum(tl.load(amax_ptr + rows), 1e-30) / 448.0
        inv = 1.0 / sa
        acc = tl.zeros((BM, BN), dtype=tl.float32)
        for ki in range(k_tiles):
            a = a_desc.load([om, ki * BK])
            a8 = (a.to(tl.float32) * inv[:, None]).to(tl.float8e4nv)
            b = b_desc.load([on, ki * BK])
            acc = tl.dot(a8, b.T, acc)
        cols = on + tl.arange(0, BN)
        acc = acc * sa[:, None] * tl.load(sb_ptr + cols)[None, :]
        c_desc.store([om, on], acc.to(tl.bfloat16))


def quant_a(a, amax, b8, sb, cfg, out):
    M, K = a.shape
    N = b8.shape[0]
    BM, BN, BK, GM, stages, warps, ws = cfg
    grid = (min(NUM_SMS, triton.cdiv(M, BM) * triton.cdiv(N, BN)),)
    fp8_mm_quant_a[grid](a, amax, b8, out, sb.view(-1), M, N, K, BM, BN, BK, GM, NUM_SMS, ws,
                         num_stages=stages, num_warps=warps)
    return out


def rowwise(t):
    s = t.abs().amax(-1, keepdim=True).float().clamp_min(1e-30) / E4M3
    return (t.float() / s).to(torch.float8_e4m3fn).contiguous(), s


NUM_SMS = 132 if SMALL else torch.cuda.get_device_properties(0).multi_processor_count


def tri(a8, sa, b8, sb, cfg, relu2=False, out=None, amax=None):
    M, K = a8.shape
    N = b8.shape[0]
    BM, BN, BK, GM, stages, warps, ws, sub = cfg
    c = out if out is not None else torch.empty(M, N, device=a8.device, dtype=torch.bfloat16)
    if amax is None:
        amax = torch.zeros(M if relu2 else 1, device=a8.device, dtype=torch.float32)
    tiles = triton.cdiv(M, BM) * triton.cdiv(N, BN)
    grid = (min(NUM_SMS, tiles),)
    fp8_mm_kernel[grid](a8, b8, c, sa.view(-1), sb.view(-1), amax, M, N, K, BM, BN, BK, GM, NUM_SMS, ws, relu2, sub,
                        num_stages=stages, num_warps=warps)
    return c, amax


def plain(a8, sa, b8, sb, cfg):
    M, K = a8.shape
    N = b8.shape[0]
    BM, BN, BK, GM, stages, warps = cfg
    c = torch.empty(M, N, device=a8.device, dtype=torch.bfloat16)
    fp8_mm_plain[(triton.cdiv(M, BM) * triton.cdiv(N, BN),)](a8, b8, c, sa.view(-1), sb.view(-1), M, N, K, BM, BN, BK,
                                                            GM, num_stages=stages, num_warps=warps)
    return c


def cublas(a8, sa, b8, sb):
    return torch._scaled_mm(a8, b8.t(), scale_a=sa, scale_b=sb.view(1, -1), out_dtype=torch.bfloat16,
                            use_fast_accum=True)


def bench(fn, n=50):
    from triton.testing import do_bench
    return do_bench(fn, warmup=25, rep=n)  # ms, median


def main():
    torch.manual_seed(0)
    shapes = {"fc_fwd/proj_dgrad (N 1536, K 768)": (65536, 1536, 768), "qkv_fwd (N 2304, K 768)": (65536, 2304, 768),
              "proj_fwd/fc_dgrad (N 768, K 1536)": (65536, 768, 1536)}
    if SMALL:
        shapes = {"small": (256, 256, 256)}
    cfgs = [(128, 128, 128, 8, s, 8, ws, sub) for s in (3, 4) for ws in (False, True) for sub in (False, True)]
    cfgs += [(128, 256, 128, 8, s, 8, ws, sub) for s in (3, 4) for ws in (False, True) for sub in (True,)]
    cfgs += [(128, 128, 128, 8, 4, 4, False, False), (256, 128, 128, 8, 3, 8, False, True), (64, 128, 128, 8, 4, 4, False, False)]
    if SMALL:
        cfgs = [(64, 64, 64, 8, 2, 4, False, False), (64, 64, 64, 8, 2, 4, False, True)]
    plains = [(128, 128, 128, 8, 4, 8), (128, 256, 128, 8, 3, 8), (128, 128, 128, 8, 4, 4)]
    if SMALL:
        plains = [(64, 64, 64, 8, 2, 4)]
    results = {}
    for name, (M, N, K) in shapes.items():
        x = torch.randn(M, K, device=DEV) .bfloat16()
        w = (torch.randn(N, K, device=DEV) / K ** 0.5).bfloat16()
        a8, sa = rowwise(x)
        b8, sb = rowwise(w)
        ref = (a8.float() * sa) @ (b8.float() * sb).t()
        flops = 2 * M * N * K
        r = {}
        if not SMALL:
            c = cublas(a8, sa, b8, sb)
            ms = bench(lambda: cublas(a8, sa, b8, sb))
            r["cublas"] = (ms, flops / ms / 1e9, ((c.float() - ref).norm() / ref.norm()).item())
            print(f"{name} cublas {ms:.4f} ms {flops / ms / 1e9:.0f} TFLOP/s err {r['cublas'][2]:.2e}", flush=True)
        out = torch.empty(M, N, device=DEV, dtype=torch.bfloat16)
        for cfg in cfgs:
            try:
                c, _ = tri(a8, sa, b8, sb, cfg, out=out)
                err = ((c.float() - ref).norm() / ref.norm()).item()
                ms = bench(lambda: tri(a8, sa, b8, sb, cfg, out=out)) if not SMALL else 0.0
                r[f"tma {cfg}"] = (ms, flops / ms / 1e9 if ms else 0, err)
                print(f"{name} tma {cfg} {ms:.4f} ms {flops / max(ms, 1e-9) / 1e9:.0f} TFLOP/s err {err:.2e}", flush=True)
            except Exception as e:
                print(f"{name} tma {cfg} FAILED {type(e).__name__}: {str(e).splitlines()[0][:200]}", flush=True)
        for cfg in plains:
            try:
                c = plain(a8, sa, b8, sb, cfg)
                err = ((c.float() - ref).norm() / ref.norm()).item()
                ms = bench(lambda: plain(a8, sa, b8, sb, cfg)) if not SMALL else 0.0
                r[f"plain {cfg}"] = (ms, flops / ms / 1e9 if ms else 0, err)
                print(f"{name} plain {cfg} {ms:.4f} ms {flops / max(ms, 1e-9) / 1e9:.0f} TFLOP/s err {err:.2e}", flush=True)
            except Exception as e:
                print(f"{name} plain {cfg} FAILED {type(e).__name__}: {str(e).splitlines()[0][:200]}", flush=True)
        if N == 1536 or SMALL:  # fused ReLU² epilogue against product + inductor-like ReLU² pass
            refr = ref.clamp_min(0).square()
            good = [k for k in r if k.startswith("tma")]
            best = min(good, key=lambda k: r[k][0]) if not SMALL else f"tma {cfgs[0]}"
            cfg = eval(best[4:])
            amax = torch.zeros(M, device=DEV)
            c, am = tri(a8, sa, b8, sb, cfg, relu2=True, out=out, amax=amax)
            err = ((c.float() - refr).norm() / refr.norm()).item()
            am_err = (am - c.float().amax(1)).abs().max().item()
            if not SMALL:
                def fused():
                    amax.zero_()
                    tri(a8, sa, b8, sb, cfg, relu2=True, out=out, amax=amax)
                ms = bench(fused)
                relu_pass = torch.compile(lambda h: rowwise(torch.relu(h).square()))
                h = cublas(a8, sa, b8, sb)
                relu_pass(h)
                ms_pass = bench(lambda: relu_pass(h))
                print(f"{name} fused relu2 {cfg} {ms:.4f} ms err {err:.2e} amax err {am_err:.2e}; "
                      f"separate pass (compiled relu² + rowwise fp8) {ms_pass:.4f} ms", flush=True)
            else:
                print(f"small fused relu2 err {err:.2e} amax err {am_err:.2e}")
        if K == 1536 or SMALL:  # the proj forward reading relu²(h) in bf16, cast inside the product
            a = torch.relu(torch.randn(M, K, device=DEV)).square().bfloat16()
            amax = a.float().amax(1)
            a8q, saq = rowwise(a)
            refq = (a8q.float() * saq) @ (b8.float() * sb).t()
            qcfgs = [(128, 128, 128, 8, s, 8, ws) for s in (3, 4) for ws in (False, True)] + [(128, 128, 64, 8, 4, 8, False),
                     (128, 256, 64, 8, 3, 8, False), (64, 128, 128, 8, 4, 4, False)]
            if SMALL:
                qcfgs = [(64, 64, 64, 8, 2, 4, False)]
            for cfg in qcfgs:
                try:
                    c = quant_a(a, amax, b8, sb, cfg, out)
                    err = ((c.float() - refq).norm() / refq.norm()).item()
                    ms = bench(lambda: quant_a(a, amax, b8, sb, cfg, out)) if not SMALL else 0.0
                    r[f"quant_a {cfg}"] = (ms, flops / ms / 1e9 if ms else 0, err)
                    print(f"{name} quant_a {cfg} {ms:.4f} ms {flops / max(ms, 1e-9) / 1e9:.0f} TFLOP/s err {err:.2e}", flush=True)
                except Exception as e:
                    print(f"{name} quant_a {cfg} FAILED {type(e).__name__}: {str(e).splitlines()[0][:200]}", flush=True)
        results[name] = r
    if not SMALL:
        print("JSON", json.dumps(results))


if __name__ == "__main__":
    main()
