"""The NumPy reference of every array-level primitive that a CUDA kernel of ours implements.

Each function here computes on arrays (NumPy, or CuPy through the same calls) and is the
reference for the kernel of the same name in kernels/*.cu, launched by
`minigrad.backends.cuda.<name>`; `@primitive(family)` (dispatch.py) runs the kernel on
GPU arrays and this function everywhere else. The tests compare each kernel with the
function here (tests/test_kernels.py).

The ops of the core (ops.py) and of nn call these by what they compute
(`primitives.matmul(x, W.T)`); nothing here records on the tape.
"""
import operator


from .devices import array_module
from .dispatch import for_array, primitive


# -- matmul.cu, elementwise.cu, reduce.cu ---------------------------------------------------

@primitive("matmul")
def matmul(x, y):
    """The product of two matrices (2-D arrays), always through BLAS.

    NumPy's `@` does not call BLAS when an inner size is 1 (a batch of one) and is then
    several times slower; `dot` always does. Every 2-D product in minigrad goes here.
    """
    return array_module(x).dot(x, y)


@primitive("matmul")
def matmul_add(x, y, out):
    """out += x @ y, in place, for an `out` the caller owns (a time step's gates); returns out.
    On a GPU one launch: the product is added as it is written.

    An `out` stored transposed (a feature-major step, see dispatch.feature_major) gets the
    product as out^T += y^T x^T, so that BLAS writes it in out's memory order. In a forward
    step (x @ y = h W_hh^T) that reads W_hh as stored, which OpenBLAS does faster than the
    transposed weight; in a backward one (g_a W_hh) it reads W_hh transposed, about as fast
    as writing a batch-major product and adding it into out transposed, which measured slower
    (benchmarks/results/2026-12-04-feature-major.md)."""
    xp = array_module(x)
    if not out.flags.c_contiguous and out.ndim == 2 and out.flags.f_contiguous:
        out_t = out.T  # C-contiguous
        out_t += xp.dot(y.T, x.T)
    else:
        out += xp.dot(x, y)
    return out


_BINARY = {"add": operator.add, "sub": operator.sub, "mul": operator.mul, "div": operator.truediv}


@primitive("elementwise")
def binary(x, y, op):
    """x op y for op in add, sub, mul, div, with NumPy broadcasting: a new array."""
    return _BINARY[op](x, y)


@primitive("elementwise")
def activation(x, name, out=None):
    """tanh, sigmoid, relu or exp of an array, into `out` if given (out may be x itself),
    else a new array. The Elman cell's pointwise part: h' = activation(a, "tanh")."""
    xp = array_module(x)
    if name == "sigmoid":
        y = _sigmoid(x)
        if out is None:
            return y
        out[...] = y
        return out
    if name == "relu":
        return xp.maximum(x, 0, out=out)
    return getattr(xp, name)(x, out=out)


@primitive("elementwise")
def activation_backward(g, saved, name, out=None):
    """dL/dx from g = dL/dy, into `out` if given. `saved` is the output y for tanh, sigmoid
    and exp (their derivatives read off the output), the input x for relu."""
    xp = array_module(g)
    if name == "tanh":
        d = xp.multiply(saved, saved, out=out)   # g (1 - y^2), without a temporary
        xp.subtract(1, d, out=d)
        d *= g
        return d
    if name == "sigmoid":
        return xp.multiply(g, saved * (1 - saved), out=out)
    if name == "exp":
        return xp.multiply(g, saved, out=out)
    return xp.multiply(g, saved > 0, out=out)  # relu; NOTE: relu'(0) = 0, as PyTorch


def _sigmoid(x):
    """1 / (1 + exp(-x)) of an array, computed so that it never overflows.

    1 / (1 + exp(-x)) overflows exp for x < -88 in float32. With e = exp(-|x|) <= 1,
    1 / (1 + e) for x >= 0 and e / (1 + e) for x < 0 never overflow, and keep full
    relative precision in the far left tail (sigmoid(-40) = 4.2e-18, not 0).
    """
    xp = array_module(x)
    e = xp.exp(-xp.abs(x))
    return xp.where(x >= 0, 1, e) / (1 + e)


@primitive("reduce")
def sum_axes(a, axes, keepdims=False):
    """a summed over `axes` (a sorted tuple), as a.sum(axis=axes, keepdims=keepdims)."""
    return a.sum(axis=axes, keepdims=keepdims)


# -- loss.cu ---------------------------------------------------------------------------------

@primitive("loss")
def softmax_xent(x, t):
    """Cross-entropy of the rows of x (K, C) against their classes t (K,): (losses, lse), both (K,),

        lse_k = log sum_c exp(x_kc)   (the row maximum subtracted first: exp never overflows)
        loss_k = lse_k - x_k,t_k
    """
    xp = array_module(x)
    m = x.max(axis=1, keepdims=True)
    z = x - m
    log_total = xp.log(xp.exp(z).sum(axis=1))
    losses = log_total - z[xp.arange(t.size), t]
    return losses, log_total + m[:, 0]


@primitive("loss")
def softmax_xent_backward(x, t, scale):
    """d loss / d x for softmax_xent, each row k scaled by scale_k (K,): (K, C),

        (softmax(x_k) - onehot(t_k)) scale_k,   softmax(x_k) = exp(x_k - m_k) / sum_c exp(x_kc - m_k)

    with m_k the row maximum, as in the forward. (Not exp(x_k - lse_k): lse_k is rounded to
    the dtype, and at logits near 1e5 a float32 lse is off by up to 0.004, which scales every
    entry of the row by exp(0.004) and leaves the row's gradient not summing to 0.)
    """
    xp = array_module(x)
    e = xp.exp(x - x.max(axis=1, keepdims=True))  # every exponent <= 0: nothing overflows
    grad = e / e.sum(axis=1, keepdims=True)
    grad[xp.arange(t.size), t] -= 1
    grad *= scale[:, None]
    return grad


# -- lstm.cu, gru.cu: the cells' pointwise parts ----------------------------------------------
#
# The gates of a batch are (B, G*H): gate k of unit j in column k H + j. `out=` arguments let
# the sequence ops write straight into their (T, B, ...) buffers. (The Elman cell's pointwise
# part is `activation` above.)

def gate_sigmoid_(a):
    """sigmoid(a) = (1 + tanh(a / 2)) / 2, computed in place in `a` (a gate's pre-activation).

    NOTE: gates need the sigmoid to absolute precision only (it multiplies a state or a
    candidate), which this form gives with no overflow, in four passes and no temporary.
    The public sigmoid op (ops.sigmoid) is slower (a where and a division) but also keeps
    relative precision in the far left tail.
    """
    xp = array_module(a)
    a *= 0.5
    xp.tanh(a, out=a)
    a *= 0.5
    a += 0.5
    return a


@primitive("cells")
def lstm_step(act, c, out=(None, None, None)):
    """The LSTM's pointwise part, from the pre-activations act = (a_i, a_f, a_g, a_o), (B, 4H),
    and the cell state c (B, H):

        i, f, o = sigmoid(a_i, a_f, a_o)    g = tanh(a_g)      (act is activated IN PLACE:
        c' = f c + i g                                          the backward reads the gates)
        h' = o tanh(c')

    Returns (h', c', tanh(c')), each (B, H), into `out`'s arrays where given."""
    xp = array_module(act)
    n = act.shape[1] // 4
    gate_sigmoid_(act[:, :2 * n])
    xp.tanh(act[:, 2 * n:3 * n], out=act[:, 2 * n:3 * n])
    gate_sigmoid_(act[:, 3 * n:])
    i, f, g, o = act[:, :n], act[:, n:2 * n], act[:, 2 * n:3 * n], act[:, 3 * n:]
    h_out, c_out, tc_out = out
    c_new = xp.multiply(f, c, out=c_out)
    c_new += i * g
    tc = xp.tanh(c_new, out=tc_out)
    return xp.multiply(o, tc, out=h_out), c_new, tc


@primitive("cells")
def lstm_step_backward(g_h, g_c, act, c, tc, out=None):
    """Back through lstm_step: (g_a (B, 4H), the gradient of the pre-activations, into `out`
    if given; g_c_prev (B, H), the gradient of c) from g_h = dL/dh' and g_c = the gradient
    c' gets directly (from the next step), with act, c, tc as lstm_step saw and left them:

        g_c' = g_c + g_h o (1 - tanh(c')^2)          (h' = o tanh(c') passes g_h on to c')
        g_a = (g_c' g i (1 - i), g_c' c f (1 - f), g_c' i (1 - g^2), g_h tanh(c') o (1 - o))
        g_c_prev = g_c' f                            (c reaches c' through f only)
    """
    xp = array_module(act)
    n = act.shape[1] // 4
    i, f, g, o = act[:, :n], act[:, n:2 * n], act[:, 2 * n:3 * n], act[:, 3 * n:]
    g_c = g_c + g_h * o * (1 - tc * tc)       # all of c' 's gradient
    g_a = xp.empty_like(act) if out is None else out
    g_a[:, :n] = g_c * g * i * (1 - i)        # c' = ... + i g
    g_a[:, n:2 * n] = g_c * c * f * (1 - f)   # c' = f c + ...
    g_a[:, 2 * n:3 * n] = g_c * i * (1 - g * g)
    g_a[:, 3 * n:] = g_h * tc * o * (1 - o)
    return g_a, g_c * f


@primitive("cells")
def gru_step(a_ih, a_hh, h, out=(None, None, None)):
    """The GRU's pointwise part, from a_ih = x W_ih^T + b_ih and a_hh = h W_hh^T + b_hh
    (B, 3H each, gates r, z, n): r, z = sigmoid(a_ih + a_hh); n = tanh(a_ih,n + r a_hh,n);
    h' = (1 - z) n + z h. Returns (h', (r, z) side by side, n), into `out` if given."""
    xp = array_module(a_ih)
    n = a_hh.shape[1] // 3
    h_out, rz_out, cand_out = out
    rz = gate_sigmoid_(xp.add(a_ih[:, :2 * n], a_hh[:, :2 * n], out=rz_out))
    r, z = rz[:, :n], rz[:, n:]
    cand = xp.multiply(r, a_hh[:, 2 * n:], out=cand_out)
    cand += a_ih[:, 2 * n:]
    xp.tanh(cand, out=cand)
    h_new = xp.subtract(h, cand, out=h_out)      # (1 - z) n + z h = n + z (h - n)
    h_new *= z
    h_new += cand
    return h_new, rz, cand


@primitive("cells")
def gru_step_backward(g, a_hh, rz, cand, h, g_a_ih=None, g_a_hh=None, g_h=None):
    """(g_a_ih, g_a_hh, the gradient h gets directly through z) from g = dL/dh'.
    g_a_ih, g_a_hh: where to write the first two; g_h: where to ADD the third (the sequence
    op gathers the previous state's gradient there)."""
    xp = array_module(g)
    n = a_hh.shape[1] // 3
    r, z, hn = rz[:, :n], rz[:, n:], a_hh[:, 2 * n:]
    g_a_ih = xp.empty_like(a_hh) if g_a_ih is None else g_a_ih
    g_a_hh = xp.empty_like(a_hh) if g_a_hh is None else g_a_hh
    g_n = g * (1 - z) * (1 - cand * cand)          # through n = tanh(a_ih,n + r a_hh,n)
    g_a_ih[:, 2 * n:] = g_n
    g_a_hh[:, 2 * n:] = g_n * r
    g_a_ih[:, :n] = g_n * hn * r * (1 - r)         # r scales a_hh,n
    g_a_ih[:, n:2 * n] = g * (h - cand) * z * (1 - z)  # h' = n + z (h - n)
    g_a_hh[:, :2 * n] = g_a_ih[:, :2 * n]          # r and z see a_ih + a_hh: the same gradient
    if g_h is None:
        return g_a_ih, g_a_hh, g * z
    g_h += g * z
    return g_a_ih, g_a_hh, g_h


# -- window.cu: a whole window's recurrence --------------------------------------------------
#
# The references are the step loops: each step one matmul (the recurrent product added into
# the step's gates) and the cell's pointwise part. The kernel runs a whole window in one
# launch where the weights fit in a block's shared memory. The references take the arrays
# in either memory layout (on the CPU some are feature-major: dispatch.feature_major and
# nn/recurrent.py): the shapes below are what they index; matmul_add and NumPy's passes
# follow the strides.

def _pass_back(g_a, W_hh, G_h, t, need_h0, mm_add):
    """Send g_a = dL/d(step t's gates) back to the state that entered step t (the input of
    h W_hh^T): into G_h[t - 1] (one matmul that adds as it writes, mm_add: matmul_add as
    for_array resolved it); at t = 0 it is h0's gradient (returned, or None when h0 needs
    none)."""
    if t:
        mm_add(g_a, W_hh, G_h[t - 1])
        return None
    return matmul(g_a, W_hh) if need_h0 else None


@primitive("window")
def elman_window(A, Hs, W_hh, relu):
    """for t = 0 .. T-1:  A[t] += Hs[t] W_hh^T;  Hs[t + 1] = act(A[t])   (act = tanh or relu)

    A: (T, B, H), the input projections, completed to the pre-activations in place.
    Hs: (T + 1, B, H) with Hs[0] = h0, filled in. W_hh: (H, H). Returns Hs.
    """
    kind = "relu" if relu else "tanh"
    W_hhT = W_hh.T  # a view, made once: the loop is the hot part
    mm_add, act = for_array(matmul_add, A), for_array(activation, A)
    for t in range(len(A)):  # A[t] is a view: the recurrent product is added into A itself
        act(mm_add(Hs[t], W_hhT, A[t]), kind, out=Hs[t + 1])
    return Hs


@primitive("window")
def elman_window_backward(G_h, Hs, A, W_hh, relu, G_a, need_h0):
    """Back through elman_window: for t = T-1 .. 0,

        G_a[t] = dL/d(pre-activation t) = (G_h[t] + G_a[t+1] W_hh) act'(.)

    G_h: (T, B, H), G_h[t] = dL/dh_{t+1} from outside the recurrence; used as scratch (each
    step's G_a[t] W_hh is added into G_h[t - 1]). Hs as the forward left it; A its
    pre-activations (read for relu only; may be None for tanh). G_a: (T, B, H), written.
    Returns dL/dh0 = G_a[0] W_hh, (B, H), or None when need_h0 is false.
    """
    g_h0 = None
    mm_add, act_backward = for_array(matmul_add, G_h), for_array(activation_backward, G_h)
    for t in range(len(G_h) - 1, -1, -1):
        saved = A[t] if relu else Hs[t + 1]  # relu' reads the input, tanh' the output
        act_backward(G_h[t], saved, "relu" if relu else "tanh", out=G_a[t])
        g_h0 = _pass_back(G_a[t], W_hh, G_h, t, need_h0, mm_add)
    return g_h0


@primitive("window")
def lstm_window(A, Hs, Cs, TC, W_hh):
    """for t = 0 .. T-1:  A[t] += Hs[t] W_hh^T, then the LSTM's pointwise part (lstm_step):
    A[t] activated in place, Cs[t + 1] = c_t+1, TC[t] = tanh(c_t+1), Hs[t + 1] = h_t+1.

    A: (T, B, 4H)   Hs, Cs: (T + 1, B, H) with Hs[0] = h0, Cs[0] = c0   TC: (T, B, H)
    W_hh: (4H, H). Returns Hs.
    """
    W_hhT = W_hh.T
    mm_add, step = for_array(matmul_add, A), for_array(lstm_step, A)
    for t in range(len(A)):
        step(mm_add(Hs[t], W_hhT, A[t]), Cs[t], out=(Hs[t + 1], Cs[t + 1], TC[t]))
    return Hs


@primitive("window")
def lstm_window_backward(G_h, g_c, A, Cs, TC, W_hh, G_a, need_h0):
    """Back through lstm_window: for t = T-1 .. 0, lstm_step_backward, then the gates'
    gradient G_a[t] sent back to h_t through W_hh.

    G_h: (T, B, H) as in elman_window_backward (scratch too); g_c: (B, H), the gradient
    reaching c_T. A, Cs, TC as the forward left them. G_a: (T, B, 4H), written.
    Returns (dL/dh0 or None when need_h0 is false, dL/dc0), each (B, H).
    """
    g_h0 = None
    mm_add, step_backward = for_array(matmul_add, G_h), for_array(lstm_step_backward, G_h)
    for t in range(len(G_h) - 1, -1, -1):
        _, g_c = step_backward(G_h[t], g_c, A[t], Cs[t], TC[t], out=G_a[t])
        g_h0 = _pass_back(G_a[t], W_hh, G_h, t, need_h0, mm_add)
    return g_h0, g_c


# -- optim.cu: an optimizer's update of a whole parameter group ------------------------------
#
# Pure functions: new arrays out, inputs untouched (the kernels may update the optimizer's
# own state arrays in place, never the weights).

@primitive("optim")
def sgd_step(ws, gs, bufs, lr, momentum, weight_decay, nesterov, dampening=0.0):
    """SGD on lists of weights ws and gradients gs; bufs: momentum buffers, or None without
    momentum. Returns (new weights, new buffers or None). The caller passes dampening 0 at a
    buffer's first step (PyTorch's rule: the first buffer is g itself)."""
    new_ws, new_bufs = [], []
    for k, (w, g) in enumerate(zip(ws, gs)):
        if weight_decay:
            g = g + weight_decay * w
        if momentum:
            b = momentum * bufs[k] + (1 - dampening) * g
            new_bufs.append(b)
            g = g + momentum * b if nesterov else b
        new_ws.append(w - lr * g)
    return new_ws, (new_bufs if momentum else None)


@primitive("optim")
def adam_step(ws, gs, ms, vs, t, lr, beta1, beta2, eps, weight_decay, max_vs=None):
    """Adam's step t (from 1) on lists of weights, gradients and averages m, v; with max_vs
    (amsgrad), the largest v so far, which then takes v's place in the denominator.
    Returns (new weights, new m, new v, new max_vs or None)."""
    new_ws, new_ms, new_vs, new_max_vs = [], [], [], []
    for k, (w, g, m, v) in enumerate(zip(ws, gs, ms, vs)):
        if weight_decay:
            g = g + weight_decay * w
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * (g * g)
        if max_vs is not None:
            v_max = array_module(v).maximum(max_vs[k], v)
            new_max_vs.append(v_max)
        denom = ((v if max_vs is None else v_max) / (1 - beta2 ** t)) ** 0.5 + eps
        new_ws.append(w - lr * (m / (1 - beta1 ** t)) / denom)
        new_ms.append(m)
        new_vs.append(v)
    return new_ws, new_ms, new_vs, (new_max_vs if max_vs is not None else None)


@primitive("optim")
def adagrad_step(ws, gs, ss, lr, eps, weight_decay=0.0):
    """Adagrad on lists of weights, gradients and sums of squares. Returns (new weights, new
    sums). lr is PyTorch's clr = lr / (1 + (t - 1) lr_decay), computed by the optimizer."""
    new_ws, new_ss = [], []
    for w, g, s in zip(ws, gs, ss):
        if weight_decay:
            g = g + weight_decay * w
        s = s + g * g
        new_ws.append(w - lr * g / (s ** 0.5 + eps))
        new_ss.append(s)
    return new_ws, new_ss
