"""The `minigrad` command: `minigrad demo` differentiates a small unrolled RNN and checks it.

Errors are one line on stderr and a non-zero exit, never a traceback.
"""
import argparse
import os
import sys
import tempfile

import numpy as np

import minigrad as mg
from minigrad.nn import functional as F


def rnn_loss(x, h0, targets, w_ih, w_hh, b):
    """An Elman RNN unrolled over the steps of x, and its squared error against targets.

    x: (T, batch, input)   h0: (batch, hidden)   targets: (T, batch, hidden)
    h_t = tanh(x_t W_ih^T + h_(t-1) W_hh^T + b);  loss = sum_t mean((h_t - y_t)^2)
    """
    h, loss = h0, None
    for t in range(x.shape[0]):
        h = (F.linear(x[t], w_ih) + F.linear(h, w_hh, b)).tanh()
        step_loss = F.mse_loss(h, targets[t])
        loss = step_loss if loss is None else loss + step_loss
    return loss


def demo(args):
    """Build, print, differentiate and gradcheck a 3-step RNN; optionally write its graph."""
    rng = np.random.default_rng(args.seed)
    steps, batch, n_in, n_hidden = 3, 2, 3, 4
    x = mg.tensor(rng.standard_normal((steps, batch, n_in)))
    h0 = mg.zeros(batch, n_hidden, dtype="float64")
    targets = mg.tensor(rng.uniform(-1, 1, (steps, batch, n_hidden)))
    params = [mg.tensor(rng.uniform(-0.5, 0.5, shape), requires_grad=True)
              for shape in [(n_hidden, n_in), (n_hidden, n_hidden), (n_hidden,)]]

    loss = rnn_loss(x, h0, targets, *params)
    print(f"An Elman RNN unrolled over {steps} steps: loss = {loss.item():.6f}\n")
    print(mg.get_tape())
    if args.dot:
        write_atomically(args.dot, mg.viz.to_dot(loss))
        print(f"\nGraph written to {args.dot} (render it with: dot -Tsvg {args.dot} -o graph.svg)")
    loss.backward()
    print("\nGradients after loss.backward():")
    for name, p in zip(["W_ih", "W_hh", "b"], params):
        print(f"  d loss / d {name:<4} shape {str(p.grad.shape):<7} norm {np.linalg.norm(p.grad):.6f}")
    mg.gradcheck(lambda *ps: rnn_loss(x, h0, targets, *ps), params)
    print("\ngradcheck: every entry matches central differences (float64).")
    return 0


def write_atomically(path, text):
    """Write text to path through a temporary file and a rename: never a half-written file."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".minigrad-")
    except OSError as e:
        raise OSError(f"cannot write {path}: {e.strerror}") from None
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.exit(2, f"minigrad: error: {message}\n")


def main(argv=None):
    parser = _Parser(prog="minigrad", description="minigrad: autodiff for recurrent networks.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = commands.add_parser("demo", help="differentiate a small unrolled RNN and gradcheck it")
    p.add_argument("--seed", type=int, default=0, help="seed of the random data and weights")
    p.add_argument("--dot", metavar="FILE", help="also write the graph as Graphviz DOT text")
    p.set_defaults(run=demo)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return args.run(args)
    except (OSError, ValueError, TypeError, RuntimeError) as e:
        print(f"minigrad {args.command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"minigrad {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
