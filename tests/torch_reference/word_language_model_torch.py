"""PyTorch's examples/word_language_model (an LSTM language model), compact and tiny: the
reference that word_language_model.py, the same script for minigrad, must match.

The example's RNNModel, batchify, get_batch, repackage_hidden, train and evaluate, with an
LSTM only, Adam for the update (the example steps by hand), cross_entropy on the decoder's
logits (the example: log_softmax, then NLLLoss; the same maths), float64, and a synthetic
corpus from a NumPy seed in place of Wikitext-2.

    PYTHONPATH=. /path/to/python-with-torch tests/torch_reference/word_language_model_torch.py

prints the losses of 20 updates. With --write-fixture (and PYTHONPATH=. from the repository
root, for make_modules.save's atomic write) it also writes word_language_model.npz, which
tests/test_word_language_model.py holds minigrad to: the initial state_dict (state/<name>),
the 20 losses with dropout 0 (losses) and the loss on held-out text after them (eval_loss).
"""
import os
import sys

import numpy as np
import torch
from torch import nn, optim
from torch.nn import functional as F

DTYPE = torch.float64  # float64, so that minigrad can match these losses to 1e-10
NTOKEN, NINP, NHID, NLAYERS = 50, 16, 16, 2  # vocabulary, embedding size, hidden units, layers
BPTT, BATCH_SIZE, EVAL_BATCH_SIZE = 5, 4, 2  # sequence length, streams in training, in evaluation
LR, CLIP, SEED = 0.01, 0.25, 1111            # Adam's learning rate, gradient clipping, random seed
TRAIN_TOKENS = 4 * 98 + 3                    # 98 rows of 4 streams (3 tokens trimmed): 20 updates


class RNNModel(nn.Module):
    """Container module with an encoder, a recurrent module, and a decoder."""

    def __init__(self, ntoken, ninp, nhid, nlayers, dropout=0.5):
        super().__init__()
        self.ntoken = ntoken
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.Embedding(ntoken, ninp, dtype=DTYPE)
        self.rnn = nn.LSTM(ninp, nhid, nlayers, dropout=dropout, dtype=DTYPE)
        self.decoder = nn.Linear(nhid, ntoken, dtype=DTYPE)
        self.init_weights()
        self.nhid = nhid
        self.nlayers = nlayers

    def init_weights(self):
        initrange = 0.1
        nn.init.uniform_(self.encoder.weight, -initrange, initrange)
        nn.init.zeros_(self.decoder.bias)
        nn.init.uniform_(self.decoder.weight, -initrange, initrange)

    def forward(self, input, hidden):
        emb = self.drop(self.encoder(input))
        output, hidden = self.rnn(emb, hidden)
        output = self.drop(output)
        decoded = self.decoder(output)
        return decoded.view(-1, self.ntoken), hidden

    def init_hidden(self, bsz):
        weight = next(self.parameters())
        return (weight.new_zeros(self.nlayers, bsz, self.nhid),
                weight.new_zeros(self.nlayers, bsz, self.nhid))


def synthetic_corpus(ntoken, length, seed):
    """Token ids of a random Markov chain: each token is followed by one of 3 others."""
    rng = np.random.default_rng(seed)
    successors = rng.integers(0, ntoken, (ntoken, 3))
    ids = [0]
    for choice in rng.integers(0, 3, length - 1):
        ids.append(successors[ids[-1], choice])
    return np.array(ids)


def batchify(data, bsz):
    # Work out how cleanly we can divide the dataset into bsz parts.
    nbatch = data.size(0) // bsz
    # Trim off any extra elements that wouldn't cleanly fit (remainders).
    data = data.narrow(0, 0, nbatch * bsz)
    # Evenly divide the data across the bsz batches.
    return data.view(bsz, -1).t().contiguous()


def repackage_hidden(h):
    """Wraps hidden states in new Tensors, to detach them from their history."""
    if isinstance(h, torch.Tensor):
        return h.detach()
    return tuple(repackage_hidden(v) for v in h)


def get_batch(source, i):
    seq_len = min(BPTT, len(source) - 1 - i)
    data = source[i:i + seq_len]
    target = source[i + 1:i + 1 + seq_len].view(-1)
    return data, target


def train(model, train_data, optimizer):
    """One epoch; returns the loss of every update."""
    # Turn on training mode which enables dropout.
    model.train()
    losses = []
    hidden = model.init_hidden(BATCH_SIZE)
    for i in range(0, train_data.size(0) - 1, BPTT):
        data, targets = get_batch(train_data, i)
        # Starting each batch, we detach the hidden state from how it was previously produced.
        # If we didn't, the model would try backpropagating all the way to start of the dataset.
        hidden = repackage_hidden(hidden)
        model.zero_grad()
        output, hidden = model(data, hidden)
        loss = F.cross_entropy(output, targets)
        loss.backward()
        # `clip_grad_norm` helps prevent the exploding gradient problem in RNNs / LSTMs.
        nn.utils.clip_grad_norm_(model.parameters(), CLIP)
        optimizer.step()
        losses.append(loss.item())
    return losses


def evaluate(model, data_source):
    # Turn on evaluation mode which disables dropout.
    model.eval()
    total_loss = 0.
    hidden = model.init_hidden(EVAL_BATCH_SIZE)
    with torch.no_grad():
        for i in range(0, data_source.size(0) - 1, BPTT):
            data, targets = get_batch(data_source, i)
            output, hidden = model(data, hidden)
            hidden = repackage_hidden(hidden)
            total_loss += len(data) * F.cross_entropy(output, targets).item()
    return total_loss / (len(data_source) - 1)


def corpus():
    """The synthetic corpus, batchified: (training data, held-out data)."""
    ids = torch.tensor(synthetic_corpus(NTOKEN, TRAIN_TOKENS + 105, SEED))
    return batchify(ids[:TRAIN_TOKENS], BATCH_SIZE), batchify(ids[TRAIN_TOKENS:], EVAL_BATCH_SIZE)


def main(dropout=0.0, state_dict=None):
    """Train a new RNNModel (with state_dict's weights, if given) for one epoch of 20 updates;
    returns (the model, its 20 losses)."""
    torch.manual_seed(SEED)
    model = RNNModel(NTOKEN, NINP, NHID, NLAYERS, dropout)
    if state_dict is not None:
        model.load_state_dict(state_dict)
    optimizer = optim.Adam(model.parameters(), lr=LR)
    return model, train(model, corpus()[0], optimizer)


def write_fixture(path):
    """The initial state_dict, the 20 losses (dropout 0) and the held-out loss after them."""
    from make_modules import save  # atomically, and the same bytes on every run
    torch.manual_seed(SEED)
    initial = RNNModel(NTOKEN, NINP, NHID, NLAYERS, 0.0).state_dict()
    model, losses = main(0.0, initial)
    arrays = {f"state/{name}": value.numpy() for name, value in initial.items()}
    save({**arrays, "losses": np.array(losses), "eval_loss": np.array(evaluate(model, corpus()[1]))}, path)


if __name__ == "__main__":
    print("losses:", " ".join(f"{loss:.4f}" for loss in main()[1]))
    if "--write-fixture" in sys.argv[1:]:
        write_fixture(os.path.join(os.path.dirname(os.path.abspath(__file__)), "word_language_model.npz"))
