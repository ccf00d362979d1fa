"""PyTorch's examples/word_language_model in minigrad: word_language_model_torch.py, the
PyTorch script, with only the changes that a port needs. `diff word_language_model_torch.py
word_language_model.py` lists them; those that are more than a new name say why in a
comment that starts "minigrad:". Run it from the repository root, in minigrad's environment,
to print the losses of 20 updates:

    python tests/torch_reference/word_language_model.py

tests/test_word_language_model.py loads PyTorch's initial weights into it (main's
state_dict) and holds its losses to PyTorch's, to 1e-10.
"""
import numpy as np

import minigrad
from minigrad import nn, optim
from minigrad.nn import functional as F

DTYPE = minigrad.float64  # float64, so that minigrad can match these losses to 1e-10
NTOKEN, NINP, NHID, NLAYERS = 50, 16, 16, 2  # vocabulary, embedding size, hidden units, layers
BPTT, BATCH_SIZE, EVAL_BATCH_SIZE = 5, 4, 2  # sequence length, streams in training, in evaluation
LR, CLIP, SEED = 0.01, 0.25, 1111            # Adam's learning rate, gradient clipping, random seed
TRAIN_TOKENS = 4 * 98 + 3                    # 98 rows of 4 streams (3 tokens trimmed): 20 updates


class RNNModel(nn.Module):
    """Container module with an encoder, a recurrent module, and a decoder."""

    def __init__(self, ntoken, ninp, nhid, nlayers, dropout=0.5, rng=None):
        super().__init__()
        self.ntoken = ntoken
        rng = np.random.default_rng(rng)  # minigrad: no global seed; a generator is passed (rng=)
        self.drop = nn.Dropout(dropout, rng=rng)
        self.encoder = nn.Embedding(ntoken, ninp, dtype=DTYPE, rng=rng)
        self.rnn = nn.LSTM(ninp, nhid, nlayers, dropout=dropout, dtype=DTYPE, rng=rng)
        self.decoder = nn.Linear(nhid, ntoken, dtype=DTYPE, rng=rng)
        self.init_weights(rng)
        self.nhid = nhid
        self.nlayers = nlayers

    def init_weights(self, rng):
        initrange = 0.1
        # minigrad: no nn.init; the new values are drawn by NumPy and replace the arrays
        self.encoder.weight.data = rng.uniform(-initrange, initrange, self.encoder.weight.shape).astype(DTYPE)
        self.decoder.bias.data = np.zeros(self.decoder.bias.shape, DTYPE)
        self.decoder.weight.data = rng.uniform(-initrange, initrange, self.decoder.weight.shape).astype(DTYPE)

    def forward(self, input, hidden):
        emb = self.drop(self.encoder(input))
        output, hidden = self.rnn(emb, hidden)
        output = self.drop(output)
        decoded = self.decoder(output)
        return decoded.reshape(-1, self.ntoken), hidden

    def init_hidden(self, bsz):
        weight = self.parameters()[0]  # minigrad: parameters() is a list; no new_zeros
        return (minigrad.zeros(self.nlayers, bsz, self.nhid, dtype=weight.dtype, device=weight.device),
                minigrad.zeros(self.nlayers, bsz, self.nhid, dtype=weight.dtype, device=weight.device))


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
    nbatch = data.shape[0] // bsz
    # Trim off any extra elements that wouldn't cleanly fit (remainders).
    data = data[:nbatch * bsz]
    # Evenly divide the data across the bsz batches.
    return data.reshape(bsz, -1).T


def repackage_hidden(h):
    """Wraps hidden states in new Tensors, to detach them from their history."""
    if isinstance(h, minigrad.Tensor):
        return h.detach()
    return tuple(repackage_hidden(v) for v in h)


def get_batch(source, i):
    seq_len = min(BPTT, len(source) - 1 - i)
    data = source[i:i + seq_len]
    target = source[i + 1:i + 1 + seq_len].reshape(-1)
    return data, target


def train(model, train_data, optimizer):
    """One epoch; returns the loss of every update."""
    # Turn on training mode which enables dropout.
    model.train()
    losses = []
    hidden = model.init_hidden(BATCH_SIZE)
    for i in range(0, train_data.shape[0] - 1, BPTT):
        data, targets = get_batch(train_data, i)
        # Starting each batch, we detach the hidden state from how it was previously produced.
        # If we didn't, the model would try backpropagating all the way to start of the dataset.
        hidden = repackage_hidden(hidden)
        model.zero_grad()
        output, hidden = model(data, hidden)
        loss = F.cross_entropy(output, targets)
        loss.backward()
        # `clip_grad_norm` helps prevent the exploding gradient problem in RNNs / LSTMs.
        optim.clip_grad_norm_(model.parameters(), CLIP)
        optimizer.step()
        losses.append(loss.item())
    return losses


def evaluate(model, data_source):
    # Turn on evaluation mode which disables dropout.
    model.eval()
    total_loss = 0.
    hidden = model.init_hidden(EVAL_BATCH_SIZE)
    with minigrad.no_grad():
        for i in range(0, data_source.shape[0] - 1, BPTT):
            data, targets = get_batch(data_source, i)
            output, hidden = model(data, hidden)
            hidden = repackage_hidden(hidden)
            total_loss += len(data) * F.cross_entropy(output, targets).item()
    return total_loss / (len(data_source) - 1)


def corpus():
    """The synthetic corpus, batchified: (training data, held-out data)."""
    ids = minigrad.tensor(synthetic_corpus(NTOKEN, TRAIN_TOKENS + 105, SEED))
    return batchify(ids[:TRAIN_TOKENS], BATCH_SIZE), batchify(ids[TRAIN_TOKENS:], EVAL_BATCH_SIZE)


def main(dropout=0.0, state_dict=None):
    """Train a new RNNModel (with state_dict's weights, if given) for one epoch of 20 updates;
    returns (the model, its 20 losses)."""
    model = RNNModel(NTOKEN, NINP, NHID, NLAYERS, dropout, rng=SEED)
    if state_dict is not None:
        model.load_state_dict(state_dict)
    optimizer = optim.Adam(model.parameters(), lr=LR)
    return model, train(model, corpus()[0], optimizer)


if __name__ == "__main__":
    print("losses:", " ".join(f"{loss:.4f}" for loss in main()[1]))
