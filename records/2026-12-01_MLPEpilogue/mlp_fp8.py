"""Experiment (issue 3): the MLP's ReLU² and its FP8 casts in the epilogue of a Triton FP8 product.

Forward: a = relu(x @ w_fc.T)² in one persistent Triton kernel that also writes a in e4m3 with one scale per 1 x 128
block (DeepSeek-V3's activation scaling, arXiv:2412.19437 section 3.3); the proj product then runs on cuBLAS's
block-scaled FP8 product (no cast pass). Backward: d_a = g @ w_proj in the same kernel, whose epilogue makes
dh = d_a * 2 sqrt(a) (ReLU²'s derivative from a itself: no h kept) and writes dh in bf16 (the fc weight gradient) and
in e4m3 with 1 x 128 blocks (the fc input gradient, block-scaled)."""
import torch
import triton
import triton.language as tl

E4M3_MAX = 448.0
BLOCK = 128


@triton.jit
def _tile_pid(tile, n_in_group, num_pid_m, GROUP_M: tl.constexpr):
    group = tile // n_in_group
    first_m = group * GROUP_M
    size_m = min(num_pid_m - first_m, GROUP_M)
    return first_m + (tile % size_m), (tile % n_in_group) // size_m


@triton.jit
def _mlp_half(x, rows, c0, c_desc, c8_desc, aux_desc, om, CS, M, BACKWARD: tl.constexpr, HALF: tl.constexpr):
    if BACKWARD:  # x = d_a; dh = d_a * da/dh = d_a * 2 relu(h) = d_a * 2 sqrt(a)
        a = aux_desc.load([om, c0]).to(tl.float32)
        y = x * (2.0 * tl.sqrt(a))
    else:  # x = h; a = relu(h)²
        y = tl.maximum(x, 0.0)
        y = y * y
    yb = y.to(tl.bfloat16)
    c_desc.store([om, c0], yb)
    yf = yb.to(tl.float32)
    amax = tl.maximum(tl.max(tl.abs(yf), 1), 1e-30)
    c8_desc.store([om, c0], (yf * (448.0 / amax)[:, None]).to(tl.float8e4nv))  # one division per row, not per value
    tl.store(CS + (c0 // HALF) * M + rows, amax / 448.0)


@triton.jit
def _mlp_fp8_kernel(A, B, SA, SB, C, C8, CS, AUX, M, N, K, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr,
                    GROUP_M: tl.constexpr, NUM_SMS: tl.constexpr, BACKWARD: tl.constexpr):
    start = tl.program_id(0)
    num_pid_m = tl.cdiv(M, BM)
    num_pid_n = tl.cdiv(N, BN)
    num_tiles = num_pid_m * num_pid_n
    a_desc = tl.make_tensor_descriptor(A, shape=[M, K], strides=[K, 1], block_shape=[BM, BK])
    b_desc = tl.make_tensor_descriptor(B, shape=[N, K], strides=[K, 1], block_shape=[BN, BK])
    HALF: tl.constexpr = 128
    c_desc = tl.make_tensor_descriptor(C, shape=[M, N], strides=[N, 1], block_shape=[BM, HALF])
    c8_desc = tl.make_tensor_descriptor(C8, shape=[M, N], strides=[N, 1], block_shape=[BM, HALF])
    aux_desc = tl.make_tensor_descriptor(AUX, shape=[M, N], strides=[N, 1], block_shape=[BM, HALF])
    n_in_group = GROUP_M * num_pid_n
    for tile in tl.range(start, num_tiles, NUM_SMS, flatten=True):
        pid_m, pid_n = _tile_pid(tile, n_in_group, num_pid_m, GROUP_M)
        om = pid_m * BM
        on = pid_n * BN
        acc = tl.zeros((BM, BN), dtype=tl.float32)
        for ki in range(tl.cdiv(K, BK)):
            acc = tl.dot(a_desc.load([om, ki * BK]), b_desc.load([on, ki * BK]).T, acc)
        rows = om + tl.arange(0, BM)
        acc = acc * tl.load(SA + rows)[:, None] * tl.load(SB + on + tl.arange(0, BN))[None, :]
        if BN == 2 * HALF:
            x0, x1 = tl.split(tl.permute(tl.reshape(acc, (BM, 2, HALF)), (0, 2, 1)))
            _mlp_half(x0, rows, on, c_desc, c8_desc, aux_desc, om, CS, M, BACKWARD, HALF)
            _mlp_half(x1, rows, on + HALF, c_desc, c8_desc, aux_desc, om, CS, M, BACKWARD, HALF)
        else:
            _mlp_half(acc, rows, on, c_desc, c8_desc, aux_desc, om, CS, M, BACKWARD, HALF)


def mlp_fp8_product(a8, sa, b8, sb, aux=None, tiles=(128, 256, 128, 8, 3, 8)):
    """a8 (M, K) e4m3 with row scales sa (M, 1) float32, b8 (N, K) e4m3 with row scales sb (N, 1) ->
    (y (M, N) bf16, y8 (M, N) e4m3, ys (M, N / 128) float32 with stride (1, M)): the product p = a @ b.T and
    y = relu(p)² (aux None, the forward) or y = p * 2 sqrt(aux) (aux (M, N) bf16 = the forward's y: ReLU²'s
    backward), y8 * ys ~ y per 1 x 128 block."""
    M, K = a8.shape
    N = b8.size(0)
    BM, BN, BK, GM, stages, warps = tiles
    assert BN in (BLOCK, 2 * BLOCK) and M % BM == 0 and N % BN == 0 and K % BK == 0
    y = torch.empty(M, N, device=a8.device, dtype=torch.bfloat16)
    y8 = torch.empty(M, N, device=a8.device, dtype=torch.float8_e4m3fn)
    ys = torch.empty(N // BLOCK, M, device=a8.device, dtype=torch.float32)
    sms = torch.cuda.get_device_properties(a8.device).multi_processor_count if a8.is_cuda else 4
    grid = (min(sms, (M // BM) * (N // BN)),)
    _mlp_fp8_kernel[grid](a8, b8, sa, sb, y, y8, ys, y if aux is None else aux, M, N, K, BM, BN, BK, GM, sms,
                          aux is not None, num_warps=warps, num_stages=stages)
    return y, y8, ys.t()


def blocks_1x128(t):
    """t (M, K) -> (t8 e4m3, scale (M, K / 128) float32 with stride (1, M)), per 1 x 128 block."""
    M, K = t.shape
    b = t.float().view(M, K // BLOCK, BLOCK)
    s = (b.abs().amax(-1).clamp_min(1e-30) / E4M3_MAX)
    return (b / s[..., None]).to(torch.float8_e4m3fn).view(M, K), s.t().contiguous().t()


def blocks_128x128(w):
    """w (N, K) -> (w8 e4m3, scale (N / 128, K / 128) float32 contiguous), per 128 x 128 block."""
    N, K = w.shape
    b = w.float().view(N // BLOCK, BLOCK, K // BLOCK, BLOCK)
    s = b.abs().amax((1, 3)).clamp_min(1e-30) / E4M3_MAX
    return (b / s[:, None, :, None]).to(torch.float8_e4m3fn).view(N, K), s


def block_mm(a8, sa, b8, sb, out_dtype=torch.bfloat16):
    """a8 (M, K) with 1 x 128 scales sa (M, K/128) (stride (1, M)) @ b8 (N, K) with 128 x 128 scales sb
    (N/128, K/128) .T -> (M, N): cuBLAS's block-scaled product on CUDA; dequantised float32 elsewhere."""
    if a8.is_cuda:
        return torch._scaled_mm(a8, b8.t(), scale_a=sa, scale_b=sb.t(), out_dtype=out_dtype)
    a = a8.float() * sa.repeat_interleave(BLOCK, 1)
    b = b8.float() * sb.repeat_interleave(BLOCK, 0).repeat_interleave(BLOCK, 1)
    return (a @ b.t()).to(out_dtype)
