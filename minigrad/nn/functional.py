"""Neural-network functions: each one fused op with a hand-derived backward.

A fused op computes in one record what would otherwise take several (linear is
a matmul, a transpose and an add): fewer records, fewer temporaries, and a
backward that can be read off the maths.
"""

from ..backend import array_module, as_array, to_device, twin
from ..ops import _result, _tensors, mm, mm_add, sum_axes
from ..tensor import Tensor

_REDUCTIONS = ("mean", "sum", "none")


def linear(x, weight, bias=None):
    """y = x W^T + b, as PyTorch's linear.

    x: (..., in)   weight: (out, in)   bias: (out,) or None   ->   y: (..., out)
    """
    tensors = _tensors("linear", [x, weight] if bias is None else [x, weight, bias])
    x, weight = tensors[0], tensors[1]
    X, W = x.data, weight.data
    if W.ndim != 2:
        raise ValueError(f"linear: weight must be (out, in), got shape {W.shape}")
    if X.ndim == 0 or X.shape[-1] != W.shape[1]:
        raise ValueError(f"linear: input {X.shape} and weight {W.shape}: "
                         f"in_features {X.shape[-1] if X.ndim else None} and {W.shape[1]} differ")
    out_features, in_features = W.shape
    X2 = X if X.ndim <= 2 else X.reshape(-1, in_features)
    y = mm(X2, W.T)
    if X.ndim > 2:
        y = y.reshape(X.shape[:-1] + (out_features,))
    if bias is not None:
        b = tensors[2].data
        if b.shape != (out_features,):
            raise ValueError(f"linear: bias of shape {b.shape} for weight {W.shape}; "
                             f"expected ({out_features},)")
        y += b  # y is a fresh array: adding in place is safe
    need_x, need_w, has_bias = x.requires_grad, weight.requires_grad, bias is not None

    def backward(g):
        # y = X W^T + b  ->  gX = g W,  gW = g^T X (summed over all leading axes),  gb = sum g
        g2 = g.reshape(-1, out_features)
        gx = mm(g2, W).reshape(X.shape) if need_x else None
        gw = mm(g2.T, X.reshape(-1, in_features)) if need_w else None
        return (gx, gw, sum_axes(g2, (0,))) if has_bias else (gx, gw)
    return _result("linear", y, tuple(tensors), backward)


def softmax(x, axis=-1):
    """softmax(x)_i = exp(x_i) / sum_j exp(x_j) along `axis`."""
    (x,) = _tensors("softmax", [x])
    xp = array_module(x.data)
    z = x.data - x.data.max(axis=axis, keepdims=True)  # the same result, and exp never overflows
    e = xp.exp(z)
    y = e / e.sum(axis=axis, keepdims=True)

    def backward(g):  # dy_i = y_i (dx_i - sum_j y_j dx_j)  ->  gx = y (g - sum(g y))
        return (y * (g - (g * y).sum(axis=axis, keepdims=True)),)
    return _result("softmax", y, (x,), backward)


def log_softmax(x, axis=-1):
    """log_softmax(x)_i = x_i - log sum_j exp(x_j) along `axis`, computed stably."""
    (x,) = _tensors("log_softmax", [x])
    xp = array_module(x.data)
    z = x.data - x.data.max(axis=axis, keepdims=True)
    y = z - xp.log(xp.exp(z).sum(axis=axis, keepdims=True))

    def backward(g):  # dy_i = dx_i - sum_j softmax_j dx_j  ->  gx = g - softmax * sum(g)
        return (g - xp.exp(y) * g.sum(axis=axis, keepdims=True),)
    return _result("log_softmax", y, (x,), backward)


def _check_reduction(op, reduction):
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{op}: reduction must be one of {', '.join(_REDUCTIONS)}, got {reduction!r}")


def mse_loss(pred, target, reduction="mean"):
    """Squared error (pred - target)^2, averaged ("mean"), summed ("sum") or kept ("none").

    pred and target must have the same shape (broadcasting them is almost always a
    bug, such as (N, 1) against (N,)); both may require grad.
    """
    _check_reduction("mse_loss", reduction)
    pred, target = _tensors("mse_loss", [pred, target])
    p, t = pred.data, target.data
    if p.shape != t.shape:
        raise ValueError(f"mse_loss: pred {p.shape} and target {t.shape} differ in shape")
    d = p - t
    sq = d * d
    count = max(d.size, 1)
    if reduction == "none":
        out = sq
    else:  # sum() / count rather than mean(): the same number, without mean's Python layer
        out = sq.sum() if reduction == "sum" else sq.sum() / count
    scale = 2 / count if reduction == "mean" else 2
    need_t = target.requires_grad

    def backward(g):  # d (p - t)^2 = 2 (p - t) (dp - dt)
        gp = (scale * g) * d
        return gp, (-gp if need_t else None)
    return _result("mse_loss", out, (pred, target), backward)


def cross_entropy(logits, targets, reduction="mean"):
    """Cross-entropy of softmax(logits) against integer class targets, as one fused op.

    logits:  (..., C) with the classes on the LAST axis
             (for (N, C) and (C,) this is PyTorch's layout)
    targets: (...) integer class indices in [0, C), a NumPy array or an integer tensor
    loss_k = log sum_c exp(logits_kc) - logits_k,target_k, then averaged, summed or kept.
    Stable for large logits: the row maximum is subtracted first.
    """
    _check_reduction("cross_entropy", reduction)
    if not isinstance(logits, Tensor):
        raise TypeError(f"cross_entropy: logits must be a Tensor, got {type(logits).__name__}")
    t = targets.data if isinstance(targets, Tensor) else as_array(targets)
    if t.dtype.kind not in "iu":
        raise TypeError(f"cross_entropy: targets must be integer class indices, got dtype {t.dtype}")
    x = logits.data
    if x.ndim == 0 or t.shape != x.shape[:-1]:
        raise ValueError(f"cross_entropy: logits {x.shape} need targets of shape {x.shape[:-1]}, "
                         f"got {t.shape}")
    classes = x.shape[-1]
    if t.size and (t.min() < 0 or t.max() >= classes):
        bad = t[(t < 0) | (t >= classes)].flat[0]
        raise ValueError(f"cross_entropy: target {bad} is out of range for {classes} classes")
    xp = array_module(x)
    t = to_device(t, logits.device)
    # Work on rows: (K, C) logits and K targets, K = the product of the leading axes.
    x2, t1 = x.reshape(-1, classes), t.reshape(-1)
    losses, lse = softmax_xent(x2, t1)
    count = max(losses.size, 1)
    if reduction == "none":
        out = losses.reshape(t.shape)
    else:  # sum() / count rather than mean(): the same number, without mean's Python layer
        out = sum_axes(losses, (0,)) if reduction == "sum" else sum_axes(losses, (0,)) / count

    def backward(g):  # d loss_k / d logits_k = softmax(logits_k) - onehot(target_k)
        scale = xp.empty(t1.size, dtype=x.dtype)  # dL/d loss_k
        scale[...] = g.reshape(-1) if reduction == "none" else (g / count if reduction == "mean" else g)
        return (softmax_xent_backward(x2, t1, lse, scale).reshape(x.shape),)
    return _result("cross_entropy", out, (logits,), backward)


@twin("loss", "softmax_xent")
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


@twin("loss", "softmax_xent_backward")
def softmax_xent_backward(x, t, lse, scale):
    """d loss / d x for softmax_xent, each row k scaled by scale_k (K,): (K, C),

        (softmax(x_k) - onehot(t_k)) scale_k,   softmax(x_k) = exp(x_k - lse_k)
    """
    xp = array_module(x)
    grad = xp.exp(x - lse[:, None])
    grad[xp.arange(t.size), t] -= 1
    grad *= scale[:, None]
    return grad


# -- recurrent cells and layers -----------------------------------------------------
#
# A recurrent cell is an affine part, the same for every cell,
#     gates = x W_ih^T + b_ih + h W_hh^T + b_hh        (B, G*H): G gates of H units,
# and a pointwise part that makes the new state from the gates. Each pointwise part and
# its derivative are written once below (_elman, _lstm, _gru and their _backward) and
# used by two kinds of op:
#   - one time step, one record: rnn_cell, lstm_cell, gru_cell (PyTorch's RNNCell, ...);
#   - T time steps, one record: rnn, lstm, gru (PyTorch's nn.RNN, ... with one layer).
#     They do the same arithmetic in fewer calls: the input projections x_t W_ih^T of all
#     T steps are one matmul, each step is one matmul and the pointwise part (forward and
#     backward), and each weight gradient is one matmul at the end.
# A step's x is (B, I) or, unbatched, (I,); the states are (B, H) or (H,); a sequence of
# inputs is (T, B, I) or (T, I), time first.


def _cell_operands(op, gates, x, states, weight_ih, weight_hh, bias_ih, bias_hh, sequence=False):
    """Check the operands of a cell (or, with sequence=True, of a sequence op).

    Returns (tensors, arrays, unbatched): tensors are (x, *states, weight_ih, weight_hh
    [, bias_ih, bias_hh]), the op's inputs; arrays are their arrays, with x as (B, I)
    (a sequence: (T, B, I)) and the states as (B, H) even for unbatched input.
    """
    if (bias_ih is None) != (bias_hh is None):
        raise ValueError(f"{op}: give both bias_ih and bias_hh, or neither")
    items = [x, *states, weight_ih, weight_hh]
    if bias_ih is not None:
        items += [bias_ih, bias_hh]
    tensors = _tensors(op, items)
    if tensors[0].data.dtype.kind != "f":
        raise TypeError(f"{op}: x must be a float tensor, got dtype {tensors[0].data.dtype}")
    k = len(states)
    X, W_ih, W_hh = tensors[0].data, tensors[k + 1].data, tensors[k + 2].data
    if W_hh.ndim != 2 or W_hh.shape[0] != gates * W_hh.shape[1]:
        raise ValueError(f"{op}: weight_hh must be ({gates}*H, H), got shape {W_hh.shape}")
    hidden = W_hh.shape[1]
    step = X.shape[1:] if sequence else X.shape  # the shape of one step's input
    if len(step) not in (1, 2):
        expected = ("(T, batch, input_size) or (T, input_size)" if sequence
                    else "(batch, input_size) or (input_size,)")
        raise ValueError(f"{op}: x must be {expected}, got shape {X.shape}")
    if sequence and X.shape[0] == 0:
        raise ValueError(f"{op}: x has no time steps (shape {X.shape})")
    if W_ih.shape != (gates * hidden, step[-1]):
        raise ValueError(f"{op}: weight_ih {W_ih.shape} does not fit input {X.shape} and "
                         f"weight_hh {W_hh.shape}; expected {(gates * hidden, step[-1])}")
    for name, t in zip(("h", "c"), tensors[1:k + 1]):
        if t.shape != step[:-1] + (hidden,):
            raise ValueError(f"{op}: state {name} of shape {t.shape} for input {X.shape} and "
                             f"hidden size {hidden}; expected {step[:-1] + (hidden,)}")
    for t in tensors[k + 3:]:
        if t.shape != (gates * hidden,):
            raise ValueError(f"{op}: a bias of shape {t.shape}; expected ({gates * hidden},)")
    arrays = [t.data for t in tensors]
    unbatched = len(step) == 1
    if unbatched:  # x and the states as batches of one
        arrays[0] = X[:, None] if sequence else X[None]
        arrays[1:k + 1] = [a[None] for a in arrays[1:k + 1]]
    return tuple(tensors), arrays, unbatched


def _gates(X, Hprev, W_ih, W_hh, biases):
    """x W_ih^T + h W_hh^T (+ b_ih + b_hh): (B, G*H), a fresh array."""
    a = mm(X, W_ih.T)
    mm_add(Hprev, W_hh.T, a)
    for b in biases:
        a += b
    return a


def _projections(X, W_ih, biases):
    """x_t W_ih^T (+ the biases) for every step t at once: (T, B, I) -> (T, B, G*H), one matmul."""
    T, B, inputs = X.shape
    A = mm(X.reshape(T * B, inputs), W_ih.T).reshape(T, B, -1)
    for b in biases:
        A += b
    return A


def _affine_backward(tensors, k, d_ih, d_hh, X, Hprev, W_ih, W_hh, gh=None):
    """Gradients of gates_ih = X W_ih^T + b_ih and gates_hh = h W_hh^T + b_hh.

    Given d_ih = dL/d(gates_ih) and d_hh = dL/d(gates_hh) (the same array for cells
    that only use their sum): gX = d_ih W_ih, gh = d_hh W_hh, gW_ih = d_ih^T X,
    gW_hh = d_hh^T h, gb = d summed over the rows. Returns them in the op's input
    order, None where the input does not require grad; the k states after x, of which
    only h gets a gradient here (the cell adds its own terms). A caller that already
    has the state's gradient passes it as `gh`.
    """
    need = [t.requires_grad for t in tensors]
    gx = mm(d_ih, W_ih) if need[0] else None
    if need[1] and gh is None:
        gh = mm(d_hh, W_hh)
    grads = [gx, gh if need[1] else None] + [None] * (k - 1)
    grads.append(mm(d_ih.T, X) if need[k + 1] else None)
    grads.append(mm(d_hh.T, Hprev) if need[k + 2] else None)
    if len(tensors) > k + 3:
        gb_ih = sum_axes(d_ih, (0,))
        grads += [gb_ih, gb_ih if d_hh is d_ih else sum_axes(d_hh, (0,))]
    return grads


def _sequence_backward(tensors, k, D_ih, D_hh, X, Hs, W_ih, W_hh, g_h0):
    """_affine_backward for T steps at once: D_ih and D_hh are (T, B, G*H), Hs is (T + 1, B, H)
    with Hs[t] the state entering step t + 1, g_h0 the gradient reaching h0. Every gradient
    comes back in its input's shape."""
    T, B = X.shape[:2]

    def rows(a):  # (T, B, n) -> (T*B, n): the steps as one batch
        return a.reshape(T * B, a.shape[-1])
    grads = _affine_backward(tensors, k, rows(D_ih), rows(D_hh), rows(X), rows(Hs[:-1]),
                             W_ih, W_hh, gh=g_h0)
    return [g if g is None else g.reshape(t.shape) for g, t in zip(grads, tensors)]


def _sigmoid_(a):
    """sigmoid(a) = (1 + tanh(a / 2)) / 2, computed in place in `a` (a gate's pre-activation).

    NOTE: gates need the sigmoid to absolute precision only (it multiplies a state or a
    candidate), which this form gives with no overflow, in four passes and no temporary.
    The public sigmoid op keeps `ops.sigmoid_array`, which is slower (a where and a
    division) but also keeps relative precision in the far left tail.
    """
    xp = array_module(a)
    a *= 0.5
    xp.tanh(a, out=a)
    a *= 0.5
    a += 0.5
    return a


# The pointwise parts. Arrays are (B, ...) batches; `out=` arguments let the sequence ops
# write straight into their (T, B, ...) buffers.

@twin("cells", "_elman")
def _elman(a, relu, out=None):
    """h' = tanh(a) or relu(a)."""
    xp = array_module(a)
    return xp.maximum(a, 0, out=out) if relu else xp.tanh(a, out=out)


@twin("cells", "_elman_backward")
def _elman_backward(g, h_new, a, relu, out=None):
    """dL/da from g = dL/dh', into `out` if given. tanh' = 1 - tanh^2, from the output (a is
    not needed); NOTE: relu'(0) = 0, as PyTorch."""
    xp = array_module(g)
    if relu:
        return xp.multiply(g, a > 0, out=out)
    d = xp.multiply(h_new, h_new, out=out)
    xp.subtract(1, d, out=d)
    d *= g
    return d


@twin("cells", "_lstm")
def _lstm(act, c, out=(None, None, None)):
    """The LSTM's pointwise part. Activates the gates act = (i, f, g, o), (B, 4H), in place:
    i, f, o = sigmoid(.), g = tanh(.); then c' = f c + i g and h' = o tanh(c').
    Returns (h', c', tanh(c')), into `out` if given."""
    xp = array_module(act)
    n = act.shape[1] // 4
    _sigmoid_(act[:, :2 * n])
    xp.tanh(act[:, 2 * n:3 * n], out=act[:, 2 * n:3 * n])
    _sigmoid_(act[:, 3 * n:])
    i, f, g, o = act[:, :n], act[:, n:2 * n], act[:, 2 * n:3 * n], act[:, 3 * n:]
    h_out, c_out, tc_out = out
    c_new = xp.multiply(f, c, out=c_out)
    c_new += i * g
    tc = xp.tanh(c_new, out=tc_out)
    return xp.multiply(o, tc, out=h_out), c_new, tc


@twin("cells", "_lstm_backward")
def _lstm_backward(gh, gc, act, c, tc, d=None):
    """(dL/d(gates before activation), dL/dc) from gh = dL/dh' and gc = the gradient that
    c' gets directly; act, c, tc as _lstm saw and left them. d: where to write the first."""
    xp = array_module(act)
    n = act.shape[1] // 4
    i, f, g, o = act[:, :n], act[:, n:2 * n], act[:, 2 * n:3 * n], act[:, 3 * n:]
    gc = gc + gh * o * (1 - tc * tc)          # h' = o tanh(c') passes gh on to c'
    d = xp.empty_like(act) if d is None else d
    d[:, :n] = gc * g * i * (1 - i)           # c' = ... + i g
    d[:, n:2 * n] = gc * c * f * (1 - f)      # c' = f c + ...
    d[:, 2 * n:3 * n] = gc * i * (1 - g * g)
    d[:, 3 * n:] = gh * tc * o * (1 - o)
    return d, gc * f                          # c reaches c' through f only


@twin("cells", "_gru")
def _gru(a_ih, a_hh, h, out=(None, None, None)):
    """The GRU's pointwise part, from a_ih = x W_ih^T + b_ih and a_hh = h W_hh^T + b_hh
    (B, 3H each, gates r, z, n): r, z = sigmoid(a_ih + a_hh); n = tanh(a_ih,n + r a_hh,n);
    h' = (1 - z) n + z h. Returns (h', (r, z) side by side, n), into `out` if given."""
    xp = array_module(a_ih)
    n = a_hh.shape[1] // 3
    h_out, rz_out, cand_out = out
    rz = _sigmoid_(xp.add(a_ih[:, :2 * n], a_hh[:, :2 * n], out=rz_out))
    r, z = rz[:, :n], rz[:, n:]
    cand = xp.multiply(r, a_hh[:, 2 * n:], out=cand_out)
    cand += a_ih[:, 2 * n:]
    xp.tanh(cand, out=cand)
    h_new = xp.subtract(h, cand, out=h_out)      # (1 - z) n + z h = n + z (h - n)
    h_new *= z
    h_new += cand
    return h_new, rz, cand


@twin("cells", "_gru_backward")
def _gru_backward(g, a_hh, rz, cand, h, d_ih=None, d_hh=None, gh=None):
    """(dL/d a_ih, dL/d a_hh, the gradient h gets directly through z) from g = dL/dh'.
    d_ih, d_hh: where to write the first two; gh: where to ADD the third (the sequence op
    gathers the previous state's gradient there)."""
    xp = array_module(g)
    n = a_hh.shape[1] // 3
    r, z, hn = rz[:, :n], rz[:, n:], a_hh[:, 2 * n:]
    d_ih = xp.empty_like(a_hh) if d_ih is None else d_ih
    d_hh = xp.empty_like(a_hh) if d_hh is None else d_hh
    dn = g * (1 - z) * (1 - cand * cand)         # through n = tanh(a_ih,n + r a_hh,n)
    d_ih[:, 2 * n:] = dn
    d_hh[:, 2 * n:] = dn * r
    d_ih[:, :n] = dn * hn * r * (1 - r)          # r scales a_hh,n
    d_ih[:, n:2 * n] = g * (h - cand) * z * (1 - z)  # h' = n + z (h - n)
    d_hh[:, :2 * n] = d_ih[:, :2 * n]            # r and z see a_ih + a_hh: the same gradient
    if gh is None:
        return d_ih, d_hh, g * z
    gh += g * z
    return d_ih, d_hh, gh


def _unbatch(grads, tensors, unbatched):
    """Reshape the gradients of x and the states back to (I,) and (H,) for unbatched input."""
    if unbatched:
        grads = [g.reshape(t.shape) if g is not None else None for g, t in zip(grads, tensors)]
    return tuple(grads)


def _check_nonlinearity(op, nonlinearity):
    if nonlinearity not in ("tanh", "relu"):
        raise ValueError(f"{op}: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
    return nonlinearity == "relu"


def _check_state_pair(op, state):
    if not isinstance(state, tuple) or len(state) != 2:
        raise TypeError(f"{op}: state must be a tuple (h, c), got {type(state).__name__}")


# -- one time step -------------------------------------------------------------------------

def rnn_cell(x, h, weight_ih, weight_hh, bias_ih=None, bias_hh=None, nonlinearity="tanh"):
    """One step of an Elman RNN (PyTorch's RNNCell), one op on the tape:

        h' = act(x W_ih^T + b_ih + h W_hh^T + b_hh),   act = tanh or relu

    x: (B, I) or (I,)   h: (B, H) or (H,)   weight_ih: (H, I)   weight_hh: (H, H)
    bias_ih, bias_hh: (H,) or both None    ->   h': the shape of h
    """
    relu = _check_nonlinearity("rnn_cell", nonlinearity)
    tensors, (X, Hprev, W_ih, W_hh, *biases), unbatched = _cell_operands(
        "rnn_cell", 1, x, (h,), weight_ih, weight_hh, bias_ih, bias_hh)
    a = _gates(X, Hprev, W_ih, W_hh, biases)
    h_new = _elman(a, relu, out=None if relu else a)  # tanh' needs only h': overwrite a

    def backward(g):
        da = _elman_backward(g.reshape(h_new.shape), h_new, a, relu)
        return _unbatch(_affine_backward(tensors, 1, da, da, X, Hprev, W_ih, W_hh),
                        tensors, unbatched)
    return _result("rnn_cell", h_new[0] if unbatched else h_new, tensors, backward)


def lstm_cell(x, state, weight_ih, weight_hh, bias_ih=None, bias_hh=None):
    """One step of an LSTM (PyTorch's LSTMCell), one op on the tape with two outputs:

        i, f, g, o = split(x W_ih^T + b_ih + h W_hh^T + b_hh)    (gate order i, f, g, o)
        i, f, o = sigmoid(.);  g = tanh(.)
        c' = f * c + i * g
        h' = o * tanh(c')

    x: (B, I) or (I,)   state: (h, c), each (B, H) or (H,)
    weight_ih: (4H, I)   weight_hh: (4H, H)   biases: (4H,) or both None   ->   (h', c')
    """
    _check_state_pair("lstm_cell", state)
    tensors, (X, Hprev, Cprev, W_ih, W_hh, *biases), unbatched = _cell_operands(
        "lstm_cell", 4, x, state, weight_ih, weight_hh, bias_ih, bias_hh)
    act = _gates(X, Hprev, W_ih, W_hh, biases)  # activated in place by _lstm
    h_new, c_new, tc = _lstm(act, Cprev)
    shape = h_new.shape

    def backward(grads):
        gh, gc = (t.reshape(shape) for t in grads)
        d, gc_prev = _lstm_backward(gh, gc, act, Cprev, tc)
        out = _affine_backward(tensors, 2, d, d, X, Hprev, W_ih, W_hh)
        if tensors[2].requires_grad:
            out[2] = gc_prev
        return _unbatch(out, tensors, unbatched)
    if unbatched:
        return _result("lstm_cell", (h_new[0], c_new[0]), tensors, backward)
    return _result("lstm_cell", (h_new, c_new), tensors, backward)


def gru_cell(x, h, weight_ih, weight_hh, bias_ih=None, bias_hh=None):
    """One step of a GRU (PyTorch's GRUCell), one op on the tape:

        r, z, n gates (in that order) of a_ih = x W_ih^T + b_ih and a_hh = h W_hh^T + b_hh
        r = sigmoid(a_ih,r + a_hh,r);   z = sigmoid(a_ih,z + a_hh,z)
        n = tanh(a_ih,n + r * a_hh,n)   (the reset gate acts after the recurrent matmul)
        h' = (1 - z) * n + z * h

    x: (B, I) or (I,)   h: (B, H) or (H,)   weight_ih: (3H, I)   weight_hh: (3H, H)
    biases: (3H,) or both None   ->   h': the shape of h
    """
    tensors, (X, Hprev, W_ih, W_hh, *biases), unbatched = _cell_operands(
        "gru_cell", 3, x, (h,), weight_ih, weight_hh, bias_ih, bias_hh)
    a_ih = mm(X, W_ih.T)
    a_hh = mm(Hprev, W_hh.T)
    if biases:
        a_ih += biases[0]
        a_hh += biases[1]
    h_new, rz, cand = _gru(a_ih, a_hh, Hprev)

    def backward(g):
        d_ih, d_hh, gh = _gru_backward(g.reshape(h_new.shape), a_hh, rz, cand, Hprev)
        out = _affine_backward(tensors, 1, d_ih, d_hh, X, Hprev, W_ih, W_hh)
        if tensors[1].requires_grad:
            out[1] += gh                             # h reaches h' directly, through z
        return _unbatch(out, tensors, unbatched)
    return _result("gru_cell", h_new[0] if unbatched else h_new, tensors, backward)


# -- T time steps ----------------------------------------------------------------------------
#
# Each sequence op keeps Hs, (T + 1, B, H): Hs[0] = h0 and Hs[t] = h_t, so Hs[1:] is the
# output and Hs[:-1] the states entering the steps (what gW_hh needs). The backward walks
# the steps in reverse, as min-char-rnn does; `carry` is the gradient reaching the state
# from the steps after it.

def _outputs(Hs, extra, unbatched):
    """(hs, h_T, *extra) as the op returns them: (T, B, H) and (B, H), or (T, H) and (H,)."""
    pick = (lambda a: a[..., 0, :]) if unbatched else (lambda a: a)
    return (pick(Hs[1:]), pick(Hs[-1])) + tuple(pick(e) for e in extra)


def _state_gradients(grads, T, B):
    """G (T, B, H): G[t] = dL/dh_{t+1} from the outputs, with the last state's own gradient
    added to G[T - 1]. A copy the sequence ops' backward may write into: walking back, each
    step's recurrent product is added into G[t - 1] by one matmul (_pass_back)."""
    g_hs, g_hT = grads
    G = g_hs.reshape(T, B, -1).copy()
    G[T - 1] += g_hT.reshape(B, -1)
    return G


def _pass_back(d, W_hh, G, t, need_h0):
    """Send d = dL/d(step t's gates) back to the state that entered step t, h_t-1 = h W_hh^T's
    input: into G[t - 1] (one matmul that adds as it writes); at t = 0 it is h0's gradient
    (returned, or None when h0 needs none)."""
    if t:
        mm_add(d, W_hh, G[t - 1])
        return None
    return mm(d, W_hh) if need_h0 else None


# The recurrences of a window, step by step: the twins of kernels/window.cu, which runs each
# in one launch (the whole window, one block per batch row) when the weights fit on chip.
# On a GPU without that kernel, each step here is one matmul and one pointwise kernel.

@twin("window", "_elman_window")
def _elman_window(A, Hs, W_hh, relu):
    """for t = 0 .. T-1:  A[t] += Hs[t] W_hh^T;  Hs[t + 1] = act(A[t])   (act = tanh or relu)

    A: (T, B, H), the input projections, completed to the pre-activations in place.
    Hs: (T + 1, B, H) with Hs[0] = h0, filled in. W_hh: (H, H). Returns Hs.
    """
    W_hhT = W_hh.T  # a view, made once: the loop is the hot part
    for t in range(len(A)):  # A[t] is a view: the recurrent product is added into A itself
        _elman(mm_add(Hs[t], W_hhT, A[t]), relu, out=Hs[t + 1])
    return Hs


@twin("window", "_elman_window_backward")
def _elman_window_backward(G, Hs, A, W_hh, relu, D, need_h0):
    """Back through _elman_window: for t = T-1 .. 0,

        D[t] = dL/d(pre-activation t) = (G[t] + D[t+1] W_hh) act'(.)

    G: (T, B, H), G[t] = dL/dh_{t+1} from outside the recurrence; used as scratch (each
    step's D[t] W_hh is added into G[t - 1]). Hs as the forward left it; A its
    pre-activations (read for relu only; may be None for tanh). D: (T, B, H), written.
    Returns dL/dh0 = D[0] W_hh, (B, H), or None when need_h0 is false.
    """
    carry = None
    for t in range(len(G) - 1, -1, -1):
        _elman_backward(G[t], Hs[t + 1], None if A is None else A[t], relu, out=D[t])
        carry = _pass_back(D[t], W_hh, G, t, need_h0)
    return carry


@twin("window", "_lstm_window")
def _lstm_window(A, Hs, Cs, TC, W_hh):
    """for t = 0 .. T-1:  A[t] += Hs[t] W_hh^T, then lstm_cell's pointwise part (_lstm):
    A[t] activated in place, Cs[t + 1] = c_t+1, TC[t] = tanh(c_t+1), Hs[t + 1] = h_t+1.

    A: (T, B, 4H)   Hs, Cs: (T + 1, B, H) with Hs[0] = h0, Cs[0] = c0   TC: (T, B, H)
    W_hh: (4H, H). Returns Hs.
    """
    W_hhT = W_hh.T
    for t in range(len(A)):
        _lstm(mm_add(Hs[t], W_hhT, A[t]), Cs[t], out=(Hs[t + 1], Cs[t + 1], TC[t]))
    return Hs


@twin("window", "_lstm_window_backward")
def _lstm_window_backward(G, gc, A, Cs, TC, W_hh, D, need_h0):
    """Back through _lstm_window: for t = T-1 .. 0, _lstm_backward's step, then the gates'
    gradient D[t] sent back to h_t through W_hh.

    G: (T, B, H) as in _elman_window_backward (scratch too); gc: (B, H), the gradient
    reaching c_T. A, Cs, TC as the forward left them. D: (T, B, 4H), written.
    Returns (dL/dh0 or None when need_h0 is false, dL/dc0), each (B, H).
    """
    carry = None
    for t in range(len(G) - 1, -1, -1):
        _, gc = _lstm_backward(G[t], gc, A[t], Cs[t], TC[t], d=D[t])
        carry = _pass_back(D[t], W_hh, G, t, need_h0)
    return carry, gc


def rnn(xs, h0, weight_ih, weight_hh, bias_ih=None, bias_hh=None, nonlinearity="tanh"):
    """T steps of an Elman RNN (PyTorch's nn.RNN with one layer), one op on the tape:

        h_t = act(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh),   t = 1 .. T

    xs: (T, B, I) or (T, I)   h0: (B, H) or (H,)   weights and biases: as rnn_cell
    ->  (hs, h_T): hs (T, B, H) or (T, H) holds every h_t; h_T, the last, has h0's shape.
    The same numbers as T calls of rnn_cell, with fewer, larger NumPy calls.
    """
    relu = _check_nonlinearity("rnn", nonlinearity)
    tensors, (X, H0, W_ih, W_hh, *biases), unbatched = _cell_operands(
        "rnn", 1, xs, (h0,), weight_ih, weight_hh, bias_ih, bias_hh, sequence=True)
    xp = array_module(X)
    T, B = X.shape[:2]
    A = _projections(X, W_ih, biases)              # pre-activations, completed step by step
    Hs = xp.empty((T + 1,) + H0.shape, X.dtype)
    Hs[0] = H0
    _elman_window(A, Hs, W_hh, relu)
    if not relu:
        A = None  # tanh' comes from the outputs: let the pre-activations go
    need_h0 = tensors[1].requires_grad

    def backward(grads):
        G = _state_gradients(grads, T, B)
        D = xp.empty((T, B, W_hh.shape[1]), X.dtype)  # dL/d(pre-activation), step by step
        carry = _elman_window_backward(G, Hs, A, W_hh, relu, D, need_h0)
        return _sequence_backward(tensors, 1, D, D, X, Hs, W_ih, W_hh, carry)
    return _result("rnn", _outputs(Hs, (), unbatched), tensors, backward)


def lstm(xs, state, weight_ih, weight_hh, bias_ih=None, bias_hh=None):
    """T steps of an LSTM (PyTorch's nn.LSTM with one layer), one op on the tape; each step
    is lstm_cell's.

    xs: (T, B, I) or (T, I)   state: (h0, c0), each (B, H) or (H,)   weights: as lstm_cell
    ->  (hs, (h_T, c_T)): hs (T, B, H) or (T, H) holds every h_t; h_T and c_T the last state.
    """
    _check_state_pair("lstm", state)
    tensors, (X, H0, C0, W_ih, W_hh, *biases), unbatched = _cell_operands(
        "lstm", 4, xs, state, weight_ih, weight_hh, bias_ih, bias_hh, sequence=True)
    xp = array_module(X)
    T, B = X.shape[:2]
    A = _projections(X, W_ih, biases)              # the gates, completed and activated step by step
    Hs = xp.empty((T + 1,) + H0.shape, X.dtype)
    Cs = xp.empty_like(Hs)                         # Cs[t] = c_t, as Hs
    TC = xp.empty((T,) + H0.shape, X.dtype)        # TC[t - 1] = tanh(c_t)
    Hs[0], Cs[0] = H0, C0
    _lstm_window(A, Hs, Cs, TC, W_hh)
    need_h0, need_c0 = tensors[1].requires_grad, tensors[2].requires_grad

    def backward(grads):
        G = _state_gradients(grads[:2], T, B)
        D = xp.empty_like(A)                       # dL/d(gates before activation)
        carry, gc = _lstm_window_backward(G, grads[2].reshape(B, -1), A, Cs, TC, W_hh, D, need_h0)
        out = _sequence_backward(tensors, 2, D, D, X, Hs, W_ih, W_hh, carry)
        if need_c0:
            out[2] = gc.reshape(tensors[2].shape)
        return out
    hs, h_T, c_T = _result("lstm", _outputs(Hs, (Cs[-1],), unbatched), tensors, backward)
    return hs, (h_T, c_T)


def gru(xs, h0, weight_ih, weight_hh, bias_ih=None, bias_hh=None):
    """T steps of a GRU (PyTorch's nn.GRU with one layer), one op on the tape; each step is
    gru_cell's.

    xs: (T, B, I) or (T, I)   h0: (B, H) or (H,)   weights: as gru_cell
    ->  (hs, h_T): hs (T, B, H) or (T, H) holds every h_t; h_T, the last, has h0's shape.
    """
    tensors, (X, H0, W_ih, W_hh, *biases), unbatched = _cell_operands(
        "gru", 3, xs, (h0,), weight_ih, weight_hh, bias_ih, bias_hh, sequence=True)
    xp = array_module(X)
    T, B = X.shape[:2]
    A_ih = _projections(X, W_ih, biases[:1])       # x_t W_ih^T + b_ih, every step at once
    A_hh = xp.empty_like(A_ih)                     # b_hh now, + h_{t-1} W_hh^T step by step
    A_hh[...] = biases[1] if biases else 0
    RZ = xp.empty((T, B, 2 * W_hh.shape[1]), X.dtype)
    N = xp.empty((T,) + H0.shape, X.dtype)         # the candidates n_t
    Hs = xp.empty((T + 1,) + H0.shape, X.dtype)
    Hs[0] = H0
    W_hhT = W_hh.T
    for t in range(T):
        _gru(A_ih[t], mm_add(Hs[t], W_hhT, A_hh[t]), Hs[t], out=(Hs[t + 1], RZ[t], N[t]))
    need_h0 = tensors[1].requires_grad

    def backward(grads):
        G = _state_gradients(grads, T, B)
        D_ih, D_hh = xp.empty_like(A_ih), xp.empty_like(A_hh)
        carry = None
        for t in range(T - 1, -1, -1):
            # h_{t-1} also reaches h_t directly, through z: that gradient is added into G[t - 1]
            _, _, direct = _gru_backward(G[t], A_hh[t], RZ[t], N[t], Hs[t], d_ih=D_ih[t],
                                         d_hh=D_hh[t], gh=G[t - 1] if t else None)
            carry = _pass_back(D_hh[t], W_hh, G, t, need_h0)
            if carry is not None:
                carry += direct
        return _sequence_backward(tensors, 1, D_ih, D_hh, X, Hs, W_ih, W_hh, carry)
    return _result("gru", _outputs(Hs, (), unbatched), tensors, backward)


__all__ = ["linear", "softmax", "log_softmax", "mse_loss", "cross_entropy",
           "rnn_cell", "lstm_cell", "gru_cell", "rnn", "lstm", "gru"]
