import sys, re
src = open(sys.argv[1]).read()
which = sys.argv[2].split(",")  # wg (weight grads FP8), out (out projection fwd+dgrad FP8)
def sub(a, b):
    global src
    assert src.count(a) == 1, a
    src = src.replace(a, b)
if "wg" in which:
    sub("""        return dx, g.t() @ x, None


""", """        return dx, fp8_weight_grad(g, x), None


def fp8_weight_grad(g, x):
    \"\"\"g (T, N) bf16, x (T, K) bf16 -> g.T @ x (N, K) bf16, both operands FP8 with one scale per channel (per
    row of g.T and of x.T: the sum over T stays free of scales, torchao's float8 "rowwise" recipe); full-precision
    accumulation, as the sum runs over up to 65,536 tokens.\"\"\"
    g8, gs = fp8_rowwise(g.t())  # (N, T)
    x8, xs = fp8_rowwise(x.t())  # (K, T); its .t() is the column-major (T, K) operand
    return torch._scaled_mm(g8, x8.t(), scale_a=gs, scale_b=xs.t(), out_dtype=g.dtype, use_fast_accum=False)


""")
    if "dqkv.t() @ x" in src:
        sub("return dx, dqkv.t() @ x, dve", "return dx, fp8_weight_grad(dqkv, x), dve")
if "out" in which:
    sub("return self.out(y[0].transpose(0, 1).reshape(T, D))",
        "return linear(y[0].transpose(0, 1).reshape(T, D), self.out.weight, 2 if fp8_active(self.fp8, x) else 0)")
open(sys.argv[3], "w").write(src)
