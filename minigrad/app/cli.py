"""The `minigrad` command: `minigrad train` trains a recurrent network, `minigrad sample`
generates from a trained character model, `minigrad demo` differentiates a small unrolled
RNN and checks it.

Errors are one line on stderr and a non-zero exit, never a traceback.
"""
import argparse
import os
import re
import sys

import numpy as np

import minigrad as mg
from minigrad.io import atomic_file
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
    with atomic_file(path) as f:
        f.write(text)


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.exit(2, f"minigrad: error: {message}\n")


def _train_parser(commands):
    p = commands.add_parser(
        "train", help="train a small recurrent network with BPTT or TBPTT(k1, k2)",
        description="Train stacked recurrent layers (PyTorch's nn.RNN, nn.LSTM or nn.GRU) and a "
                    "linear readout on a built-in task (default: delayed recall, which needs k2 > "
                    "--delay to learn) or on a text file, a segment of steps at a time. Each unit "
                    "of a built-in task is a fresh sequence (one train_sequence call); a text's "
                    "units (--length steps of its streams) feed one TBPTT stream per pass, so "
                    "windows reach across units. Checkpoints are written between units.")
    data = p.add_argument_group("data")
    data.add_argument("--task", choices=["delay", "adding"], default=None,
                      help="built-in task: delay (output the symbol from --delay steps ago; default) "
                           "or adding (the sum of two marked numbers among --length)")
    data.add_argument("--delay", type=int, default=5, help="memory need of the delay task (default 5)")
    data.add_argument("--length", type=int, default=None,
                      help="steps per sequence (delay: 50, adding: 20) or per unit of --text (100)")
    data.add_argument("--text", metavar="FILE", help="train a character model on a UTF-8 text file")
    data.add_argument("--val-fraction", type=float, default=None, metavar="F",
                      help="with --text: the share of the text, at its end, held out for validation "
                           "and never trained on (default 0.05; 0: none)")
    data.add_argument("--sample", type=int, default=None, metavar="N",
                      help="with --text: characters to generate at the end (default 200; 0: none)")
    data.add_argument("--temperature", type=float, default=0.8, help="sampling temperature (default 0.8)")
    model = p.add_argument_group("model and training")
    model.add_argument("--cell", choices=["rnn", "lstm", "gru"], default="lstm", help="default lstm")
    model.add_argument("--hidden", type=int, default=32, help="hidden units (default 32)")
    model.add_argument("--layers", type=int, default=1, help="stacked recurrent layers (default 1)")
    model.add_argument("--dropout", type=float, default=0.0, metavar="P",
                       help="dropout between the layers and before the readout (default 0)")
    model.add_argument("--batch", type=int, default=32, help="sequences or streams per step (default 32)")
    model.add_argument("--policy", choices=["bptt", "tbptt"], default=None,
                       help="bptt: one update per unit, through all of it; tbptt: TBPTT(k1, k2) (default)")
    model.add_argument("--k1", type=int, default=None,
                       help="TBPTT: forward steps between updates (default 5; --text: 50)")
    model.add_argument("--k2", type=int, default=None,
                       help="TBPTT: steps of backpropagation (default 10; --text: 50)")
    model.add_argument("--recompute", action="store_true", default=None,
                       help="TBPTT: re-run each window with the current weights (unfold-and-average)")
    model.add_argument("--optimizer", choices=["sgd", "adam", "adamw", "adagrad"], default="adam",
                       help="default adam (adamw: Adam with decoupled weight decay 0.01)")
    model.add_argument("--lr", type=float, default=None,
                       help="learning rate (default: sgd 0.1, adam and adamw 0.01, adagrad 0.05)")
    model.add_argument("--lr-schedule", choices=["none", "cosine", "step"], default=None,
                       help="none (default); cosine: down to 0 at the end; step: x0.1 at half the "
                            "run and at three quarters")
    model.add_argument("--warmup", type=int, default=None, metavar="N",
                       help="raise the learning rate linearly over the first N steps (default 0)")
    model.add_argument("--clip", type=float, default=None, help="clip the gradient norm (default 1.0)")
    length = model.add_mutually_exclusive_group()
    length.add_argument("--steps", type=int, default=None, help="time steps to train (default 15000)")
    length.add_argument("--epochs", type=int, default=None,
                        help="with --text: passes over the text (default 1)")
    model.add_argument("--seed", type=int, default=None, help="seed of data, weights and sampling (default 0)")
    model.add_argument("--dtype", choices=["float32", "float64"], default="float32", help="default float32")
    model.add_argument("--device", type=_device, default="auto", metavar="{auto,cpu,cuda,cuda:N}",
                       help="auto: the GPU when one is usable, else the CPU (default); cuda is cuda:0")
    files = p.add_argument_group("files and output")
    files.add_argument("--save", metavar="PATH", help="write checkpoints (.npz) here, atomically")
    files.add_argument("--resume", metavar="PATH", help="continue exactly from this checkpoint")
    files.add_argument("--plot", metavar="FILE",
                       help="write the loss curve, its format from the extension: .png, .svg, .pdf, ... "
                            "(needs matplotlib)")
    files.add_argument("--log", metavar="FILE",
                       help="append one JSON object per unit (step, loss, val_loss, lr, elapsed, "
                            "steps_per_s) to this file")
    files.add_argument("--quiet", action="store_true",
                       help="no progress display (off a terminal it is a line every 10 s)")
    p.set_defaults(run=_train)


def _device(text):
    """--device's value: auto, cpu, cuda or cuda:N (checked when training starts)."""
    if text not in ("auto", "cpu", "cuda") and not re.fullmatch(r"cuda:[0-9]+", text):
        raise argparse.ArgumentTypeError(f"expected auto, cpu, cuda or cuda:N, got {text!r}")
    return text


def _sample_parser(commands):
    p = commands.add_parser(
        "sample", help="generate text from a character model saved by `minigrad train --text`",
        description="Generate characters, one at a time, from a checkpoint of `minigrad train "
                    "--text ... --save PATH` (PATH, or the best validation model PATH.best).")
    p.add_argument("checkpoint", metavar="CHECKPOINT")
    p.add_argument("--prime", default="", metavar="TEXT",
                   help="text to start from (default: a random character)")
    p.add_argument("--length", type=int, default=200, metavar="N",
                   help="characters to generate (default 200)")
    p.add_argument("--temperature", type=float, default=0.8, help="sampling temperature (default 0.8)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampling (default 0)")
    p.set_defaults(run=_sample)


def _train(args):
    from .train import run  # here: `minigrad demo` should not pay for the trainer's imports
    return run(args)


def _sample(args):
    from .train import sample_command
    return sample_command(args)


def main(argv=None):
    parser = _Parser(prog="minigrad", description="minigrad: autodiff for recurrent networks.")
    parser.add_argument("--version", action="version", version=f"minigrad {mg.__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = commands.add_parser("demo", help="differentiate a small unrolled RNN and gradcheck it")
    p.add_argument("--seed", type=int, default=0, help="seed of the random data and weights")
    p.add_argument("--dot", metavar="FILE", help="also write the graph as Graphviz DOT text")
    p.set_defaults(run=demo)
    _train_parser(commands)
    _sample_parser(commands)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return args.run(args)
    except BrokenPipeError:  # the output's reader went away (e.g. `| head`): stop quietly
        sys.stdout = open(os.devnull, "w")
        return 1
    except (OSError, ValueError, TypeError, RuntimeError, Warning) as e:  # Warning: under -W error
        print(f"minigrad {args.command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"minigrad {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
