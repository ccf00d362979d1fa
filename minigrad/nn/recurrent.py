"""Recurrent networks: the Elman, LSTM and GRU steps, one step or a whole sequence per op.

The equations, with PyTorch's names, gate order and weight layout (x: the input,
h and c: the state, W_ih: (G*H, I), W_hh: (G*H, H), biases: (G*H,)):

  Elman (G = 1)   h' = act(x W_ih^T + b_ih + h W_hh^T + b_hh),   act = tanh or relu

  LSTM (G = 4)    i, f, g, o = split(x W_ih^T + b_ih + h W_hh^T + b_hh)
                  i, f, o = sigmoid(.);  g = tanh(.)
                  c' = f * c + i * g
                  h' = o * tanh(c')

  GRU (G = 3)     r, z, n gates of a_ih = x W_ih^T + b_ih and a_hh = h W_hh^T + b_hh
                  r = sigmoid(a_ih,r + a_hh,r);   z = sigmoid(a_ih,z + a_hh,z)
                  n = tanh(a_ih,n + r * a_hh,n)   (the reset gate acts after the matmul)
                  h' = (1 - z) * n + z * h

Each cell is an affine part, the same for all three (the matmuls above), and a pointwise
part that makes the new state from the gates. The pointwise parts, forward and backward,
are array primitives with a CUDA kernel each (backends/primitives.py: activation for the
Elman cell, lstm_step, gru_step); this file does the affine part and the bookkeeping,
for two kinds of op:
  - one time step, one record: rnn_cell, lstm_cell, gru_cell (PyTorch's RNNCell, ...);
  - T time steps, one record: rnn, lstm, gru (one layer and one direction of PyTorch's
    nn.RNN, ...; nn/rnn.py stacks them into layers, reverse=True runs the steps from the
    last to the first for the second direction of a bidirectional layer). They do the
    same arithmetic in fewer calls: the input projections x_t W_ih^T of all T steps are
    one matmul, each step is one matmul and the pointwise part (forward and backward; on
    a GPU the whole window's recurrence is one kernel where it fits), and each weight
    gradient is one matmul at the end.
A step's x is (B, I) or, unbatched, (I,); the states are (B, H) or (H,); a sequence of
inputs is (T, B, I) or (T, I), time first.

Gradient names, as in ops.py: g_x = dL/dx. g_a is the gradient of the gates before
their activation (the pre-activations a); capitals hold every step: G_h[t] = dL/dh_t+1
from outside the recurrence, G_a[t] = g_a of step t + 1.
"""
from ..backends import primitives
from ..backends.devices import array_module
from ..backends.dispatch import feature_major
from ..backends.primitives import matmul, matmul_add
from ..ops import _tensors, record


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
    a = matmul(X, W_ih.T)
    matmul_add(Hprev, W_hh.T, a)
    if biases:
        a += _bias_sum(biases)
    return a


# The memory order of a sequence op's (T, B, n) arrays, as the order of their axes in memory.
# Batch-major is C order. Feature-major keeps each step transposed, (n, B) in memory, where
# dispatch.feature_major says so (the CPU) and the batch has more than one row (with one,
# the states' layouts are the same memory, and the rest measured 1-6% slower): the LSTM
# keeps its gates, states and their gradients so, forward and backward; the Elman op only
# its forward (its backward, one pointwise pass per step, gained nothing and its transposed
# product lost: 1.07x). The code indexes both alike. The gates' gradients are kept as
# (n, T, B), so that G_a's rows, (T*B, n), are a view whose transpose is C-contiguous: each
# weight gradient is then one plain matmul.
BATCH_MAJOR, FEATURE_MAJOR, GRADIENT_ROWS = (0, 1, 2), (0, 2, 1), (2, 0, 1)


def _empty_steps(xp, shape, dtype, memory):
    """An empty array of `shape` (T, B, n) whose memory holds its axes in the order `memory`."""
    inverse = tuple(sorted(range(3), key=memory.__getitem__))
    return xp.empty(tuple(shape[axis] for axis in memory), dtype).transpose(inverse)


def _forward_memory(X):
    """The memory order of a sequence op's forward arrays for the input X (T, B, I)."""
    return FEATURE_MAJOR if feature_major(X) and X.shape[1] > 1 else BATCH_MAJOR


def _projections(X, W_ih, biases, memory=BATCH_MAJOR):
    """x_t W_ih^T (+ the biases) for every step t at once: (T, B, I) -> (T, B, G*H), one
    matmul; stored in `memory` order (see _empty_steps; default batch-major)."""
    T, B, inputs = X.shape
    if memory == FEATURE_MAJOR:  # A[t]^T = W_ih x_t^T, written straight into A's memory
        # (NumPy's batched matmul, T products in one call: this layout is CPU-only)
        xp = array_module(X)
        A = _empty_steps(xp, (T, B, W_ih.shape[0]), X.dtype, memory)
        xp.matmul(W_ih, X.transpose(0, 2, 1), out=A.transpose(0, 2, 1))
    else:
        A = matmul(X.reshape(T * B, inputs), W_ih.T).reshape(T, B, W_ih.shape[0])  # no -1: B may be 0
    if biases:
        A += _bias_sum(biases)
    return A


def _bias_sum(biases):
    """b_ih + b_hh (or the one bias given): added to the gates in one pass, not two."""
    return biases[0] if len(biases) == 1 else biases[0] + biases[1]


def _affine_backward(tensors, k, g_a_ih, g_a_hh, X, Hprev, W_ih, W_hh, g_h=None):
    """Gradients of a_ih = X W_ih^T + b_ih and a_hh = h W_hh^T + b_hh.

    Given g_a_ih and g_a_hh (the same array for cells that only use a_ih + a_hh):
    g_X = g_a_ih W_ih, g_h = g_a_hh W_hh, g_W_ih = g_a_ih^T X, g_W_hh = g_a_hh^T h,
    g_b = the rows summed. Returns them in the op's input order, None where the input
    does not require grad; the k states after x, of which only h gets a gradient here
    (the cell adds its own terms). A caller that already has h's gradient passes it as g_h.
    """
    need = [t.requires_grad for t in tensors]
    g_x = matmul(g_a_ih, W_ih) if need[0] else None
    if need[1] and g_h is None:
        g_h = matmul(g_a_hh, W_hh)
    grads = [g_x, g_h if need[1] else None] + [None] * (k - 1)
    grads.append(matmul(g_a_ih.T, X) if need[k + 1] else None)
    grads.append(matmul(g_a_hh.T, Hprev) if need[k + 2] else None)
    if len(tensors) > k + 3:
        g_b_ih = primitives.sum_axes(g_a_ih, (0,))
        grads += [g_b_ih, g_b_ih if g_a_hh is g_a_ih else primitives.sum_axes(g_a_hh, (0,))]
    return grads


def _sequence_backward(tensors, k, G_a_ih, G_a_hh, X, Hs, W_ih, W_hh, g_h0, reverse):
    """_affine_backward for T steps at once: G_a_ih and G_a_hh are (T, B, G*H), Hs is
    (T + 1, B, H) with Hs[t] the state entering step t + 1, g_h0 the gradient reaching h0,
    all in the order the steps ran (reverse: X is the input reversed in time). Every
    gradient comes back in its input's shape and order."""
    T, B = X.shape[:2]

    def rows(a):  # (T, B, n) -> (T*B, n): the steps as one batch
        return a.reshape(T * B, a.shape[-1])
    grads = _affine_backward(tensors, k, rows(G_a_ih), rows(G_a_hh), rows(X), rows(Hs[:-1]),
                             W_ih, W_hh, g_h=g_h0)
    if reverse and grads[0] is not None:
        grads[0] = grads[0].reshape(X.shape)[::-1]
    return [g if g is None else g.reshape(t.shape) for g, t in zip(grads, tensors)]


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
    """One step of an Elman RNN (PyTorch's RNNCell), one op on the tape (equations above).

    x: (B, I) or (I,)   h: (B, H) or (H,)   weight_ih: (H, I)   weight_hh: (H, H)
    bias_ih, bias_hh: (H,) or both None    ->   h': the shape of h
    """
    relu = _check_nonlinearity("rnn_cell", nonlinearity)
    tensors, (X, Hprev, W_ih, W_hh, *biases), unbatched = _cell_operands(
        "rnn_cell", 1, x, (h,), weight_ih, weight_hh, bias_ih, bias_hh)
    kind = "relu" if relu else "tanh"
    a = _gates(X, Hprev, W_ih, W_hh, biases)
    h_new = primitives.activation(a, kind, out=None if relu else a)  # tanh' needs only h': overwrite a

    def backward(g):
        g_a = primitives.activation_backward(g.reshape(h_new.shape), a if relu else h_new, kind)
        return _unbatch(_affine_backward(tensors, 1, g_a, g_a, X, Hprev, W_ih, W_hh),
                        tensors, unbatched)
    return record("rnn_cell", h_new[0] if unbatched else h_new, tensors, backward)


def lstm_cell(x, state, weight_ih, weight_hh, bias_ih=None, bias_hh=None):
    """One step of an LSTM (PyTorch's LSTMCell), one op on the tape with two outputs
    (equations above; the pointwise part is primitives.lstm_step).

    x: (B, I) or (I,)   state: (h, c), each (B, H) or (H,)
    weight_ih: (4H, I)   weight_hh: (4H, H)   biases: (4H,) or both None   ->   (h', c')
    """
    _check_state_pair("lstm_cell", state)
    tensors, (X, Hprev, Cprev, W_ih, W_hh, *biases), unbatched = _cell_operands(
        "lstm_cell", 4, x, state, weight_ih, weight_hh, bias_ih, bias_hh)
    act = _gates(X, Hprev, W_ih, W_hh, biases)  # activated in place by lstm_step
    h_new, c_new, tc = primitives.lstm_step(act, Cprev)
    shape = h_new.shape

    def backward(g):
        g_h, g_c = (t.reshape(shape) for t in g)
        g_a, g_c_prev = primitives.lstm_step_backward(g_h, g_c, act, Cprev, tc)
        grads = _affine_backward(tensors, 2, g_a, g_a, X, Hprev, W_ih, W_hh)
        if tensors[2].requires_grad:
            grads[2] = g_c_prev
        return _unbatch(grads, tensors, unbatched)
    if unbatched:
        return record("lstm_cell", (h_new[0], c_new[0]), tensors, backward)
    return record("lstm_cell", (h_new, c_new), tensors, backward)


def gru_cell(x, h, weight_ih, weight_hh, bias_ih=None, bias_hh=None):
    """One step of a GRU (PyTorch's GRUCell), one op on the tape (equations above; the
    pointwise part is primitives.gru_step).

    x: (B, I) or (I,)   h: (B, H) or (H,)   weight_ih: (3H, I)   weight_hh: (3H, H)
    biases: (3H,) or both None   ->   h': the shape of h
    """
    tensors, (X, Hprev, W_ih, W_hh, *biases), unbatched = _cell_operands(
        "gru_cell", 3, x, (h,), weight_ih, weight_hh, bias_ih, bias_hh)
    a_ih = matmul(X, W_ih.T)
    a_hh = matmul(Hprev, W_hh.T)
    if biases:
        a_ih += biases[0]
        a_hh += biases[1]
    h_new, rz, cand = primitives.gru_step(a_ih, a_hh, Hprev)

    def backward(g):
        g_a_ih, g_a_hh, g_h_direct = primitives.gru_step_backward(g.reshape(h_new.shape), a_hh,
                                                                  rz, cand, Hprev)
        grads = _affine_backward(tensors, 1, g_a_ih, g_a_hh, X, Hprev, W_ih, W_hh)
        if tensors[1].requires_grad:
            grads[1] += g_h_direct                   # h reaches h' directly, through z
        return _unbatch(grads, tensors, unbatched)
    return record("gru_cell", h_new[0] if unbatched else h_new, tensors, backward)


# -- T time steps ----------------------------------------------------------------------------
#
# Each sequence op keeps Hs, (T + 1, B, H): Hs[0] = h0 and Hs[t] = h_t, so Hs[1:] is the
# output and Hs[:-1] the states entering the steps (what g_W_hh needs). The backward walks
# the steps in reverse, as min-char-rnn does: G_h[t] starts as the gradient h_t+1 gets from
# the outputs, and each step's recurrent product g_a W_hh is added into G_h[t - 1].
#
# reverse=True (the second direction of a bidirectional layer) runs the same code on the
# input reversed in time, X[::-1], so that step t of the run is x_{T+1-t}: only the
# output, its gradient and the gradient of the input are turned back at the edges.

def _time_order(X, reverse):
    """X (T, B, I) in the order the steps run."""
    return X[::-1] if reverse else X


def _outputs(Hs, extra, unbatched, reverse):
    """(hs, h_T, *extra) as the op returns them: (T, B, H) and (B, H), or (T, H) and (H,);
    hs in the input's time order (a fresh array when reversed, so that it is contiguous)."""
    pick = (lambda a: a[..., 0, :]) if unbatched else (lambda a: a)
    hs = array_module(Hs).ascontiguousarray(Hs[:0:-1]) if reverse else Hs[1:]
    return (pick(hs), pick(Hs[-1])) + tuple(pick(e) for e in extra)


def _state_gradients(g, T, B, reverse, memory=BATCH_MAJOR):
    """G_h (T, B, H): G_h[t] = dL/dh_t+1 from the outputs (in the order the steps ran), with
    the last state's own gradient added to G_h[T - 1]. A copy the backward may write into
    (see above), in `memory` order."""
    g_hs, g_hT = g
    H = g_hT.shape[-1]  # not reshape(..., -1), which cannot size an empty batch (B = 0)
    G_h = _empty_steps(array_module(g_hT), (T, B, H), g_hT.dtype, memory)
    G_h[...] = _time_order(g_hs.reshape(T, B, H), reverse)
    G_h[T - 1] += g_hT.reshape(B, H)
    return G_h


def rnn(xs, h0, weight_ih, weight_hh, bias_ih=None, bias_hh=None, nonlinearity="tanh",
        reverse=False):
    """T steps of an Elman RNN (PyTorch's nn.RNN with one layer), one op on the tape:

        h_t = act(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh),   t = 1 .. T

    xs: (T, B, I) or (T, I)   h0: (B, H) or (H,)   weights and biases: as rnn_cell
    ->  (hs, h_T): hs (T, B, H) or (T, H) holds every h_t; h_T, the last, has h0's shape.
    The same numbers as T calls of rnn_cell, with fewer, larger array calls.
    reverse: run t = T .. 1 instead, from h_{T+1} = h0 (h_t = act(... + h_{t+1} W_hh^T ...));
    hs[t] is still the state computed at step t, and the last state is h_1.
    """
    relu = _check_nonlinearity("rnn", nonlinearity)
    tensors, (X, H0, W_ih, W_hh, *biases), unbatched = _cell_operands(
        "rnn", 1, xs, (h0,), weight_ih, weight_hh, bias_ih, bias_hh, sequence=True)
    X = _time_order(X, reverse)
    xp = array_module(X)
    T, B = X.shape[:2]
    H = W_hh.shape[1]
    memory = _forward_memory(X)
    A = _projections(X, W_ih, biases, memory)      # pre-activations, completed step by step
    Hs = _empty_steps(xp, (T + 1, B, H), X.dtype, memory)
    Hs[0] = H0
    primitives.elman_window(A, Hs, W_hh, relu)
    Hs = xp.ascontiguousarray(Hs)  # batch-major from here: the output, and the backward's
    A = xp.ascontiguousarray(A) if relu else None  # tanh' comes from the outputs: let A go
    need_h0 = tensors[1].requires_grad

    def backward(g):
        G_h = _state_gradients(g, T, B, reverse)
        G_a = xp.empty((T, B, H), X.dtype)  # written step by step
        g_h0 = primitives.elman_window_backward(G_h, Hs, A, W_hh, relu, G_a, need_h0)
        return _sequence_backward(tensors, 1, G_a, G_a, X, Hs, W_ih, W_hh, g_h0, reverse)
    return record("rnn", _outputs(Hs, (), unbatched, reverse), tensors, backward)


def lstm(xs, state, weight_ih, weight_hh, bias_ih=None, bias_hh=None, reverse=False):
    """T steps of an LSTM (PyTorch's nn.LSTM with one layer), one op on the tape; each step
    is lstm_cell's.

    xs: (T, B, I) or (T, I)   state: (h0, c0), each (B, H) or (H,)   weights: as lstm_cell
    ->  (hs, (h_T, c_T)): hs (T, B, H) or (T, H) holds every h_t; h_T and c_T the last state.
    reverse: the steps from the last to the first, as rnn's.
    """
    _check_state_pair("lstm", state)
    tensors, (X, H0, C0, W_ih, W_hh, *biases), unbatched = _cell_operands(
        "lstm", 4, xs, state, weight_ih, weight_hh, bias_ih, bias_hh, sequence=True)
    X = _time_order(X, reverse)
    xp = array_module(X)
    T, B = X.shape[:2]
    H = W_hh.shape[1]
    memory = _forward_memory(X)  # the backward's too
    A = _projections(X, W_ih, biases, memory)      # the gates, completed and activated step by step
    Hs = _empty_steps(xp, (T + 1, B, H), X.dtype, memory)
    Cs = _empty_steps(xp, (T + 1, B, H), X.dtype, memory)  # Cs[t] = c_t, as Hs
    TC = _empty_steps(xp, (T, B, H), X.dtype, memory)      # TC[t - 1] = tanh(c_t)
    Hs[0], Cs[0] = H0, C0
    primitives.lstm_window(A, Hs, Cs, TC, W_hh)
    Hs = xp.ascontiguousarray(Hs)  # batch-major: the output, and the rows g_W_hh needs
    need_h0, need_c0 = tensors[1].requires_grad, tensors[2].requires_grad

    def backward(g):
        G_h = _state_gradients(g[:2], T, B, reverse, memory)
        G_a = _empty_steps(xp, A.shape, A.dtype, GRADIENT_ROWS if memory == FEATURE_MAJOR else BATCH_MAJOR)
        g_c = xp.empty_like(Cs[0])  # in Cs's memory order: mixed orders make NumPy's passes slow
        g_c[...] = g[2].reshape(B, H)
        g_h0, g_c0 = primitives.lstm_window_backward(G_h, g_c, A, Cs, TC, W_hh, G_a, need_h0)
        grads = _sequence_backward(tensors, 2, G_a, G_a, X, Hs, W_ih, W_hh, g_h0, reverse)
        if need_c0:
            grads[2] = xp.ascontiguousarray(g_c0).reshape(tensors[2].shape)
        return grads
    c_T = xp.ascontiguousarray(Cs[-1])
    hs, h_T, c_T = record("lstm", _outputs(Hs, (c_T,), unbatched, reverse), tensors, backward)
    return hs, (h_T, c_T)


def gru(xs, h0, weight_ih, weight_hh, bias_ih=None, bias_hh=None, reverse=False):
    """T steps of a GRU (PyTorch's nn.GRU with one layer), one op on the tape; each step is
    gru_cell's.

    xs: (T, B, I) or (T, I)   h0: (B, H) or (H,)   weights: as gru_cell
    ->  (hs, h_T): hs (T, B, H) or (T, H) holds every h_t; h_T, the last, has h0's shape.
    reverse: the steps from the last to the first, as rnn's.
    """
    tensors, (X, H0, W_ih, W_hh, *biases), unbatched = _cell_operands(
        "gru", 3, xs, (h0,), weight_ih, weight_hh, bias_ih, bias_hh, sequence=True)
    X = _time_order(X, reverse)
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
        primitives.gru_step(A_ih[t], matmul_add(Hs[t], W_hhT, A_hh[t]), Hs[t],
                            out=(Hs[t + 1], RZ[t], N[t]))
    need_h0 = tensors[1].requires_grad

    def backward(g):
        G_h = _state_gradients(g, T, B, reverse)
        G_a_ih, G_a_hh = xp.empty_like(A_ih), xp.empty_like(A_hh)
        g_h0 = None
        for t in range(T - 1, -1, -1):
            # h_t-1 reaches h_t directly, through z (added into G_h[t - 1] by the primitive),
            # and through the gates' recurrent product (added by one matmul).
            _, _, g_h_direct = primitives.gru_step_backward(
                G_h[t], A_hh[t], RZ[t], N[t], Hs[t], g_a_ih=G_a_ih[t], g_a_hh=G_a_hh[t],
                g_h=G_h[t - 1] if t else None)
            if t:
                matmul_add(G_a_hh[t], W_hh, G_h[t - 1])
            elif need_h0:
                g_h0 = matmul(G_a_hh[0], W_hh) + g_h_direct
        return _sequence_backward(tensors, 1, G_a_ih, G_a_hh, X, Hs, W_ih, W_hh, g_h0, reverse)
    return record("gru", _outputs(Hs, (), unbatched, reverse), tensors, backward)


__all__ = ["rnn_cell", "lstm_cell", "gru_cell", "rnn", "lstm", "gru"]
